"""The `fpnlab` command line: one sub-command per job, each implemented next to the code it runs.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; it is imported only
when its command is used, so `fpnlab --help` answers instantly.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from .errors import FpnlabError

COMMANDS: dict[str, tuple[str, str]] = {
    "make-data": ("fpnlab.data.synthetic", "generate the synthetic multi-scale shapes dataset"),
    "download": ("fpnlab.data.pennfudan", "download a small real dataset and convert it to COCO"),
    "train": ("fpnlab.train", "train a detector (or resume a run)"),
    "eval": ("fpnlab.evaluate", "COCO metrics and proposal recall of a checkpoint"),
    "detect": ("fpnlab.detect", "draw a checkpoint's detections on an image"),
    "ablate": ("fpnlab.ablation", "train and score the paper's FPN ablations"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fpnlab", description="Feature Pyramid Network lab.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv or ["--help"])  # prints help or a clear "invalid choice"
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"fpnlab {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    args.command_line = typed_command(argv)
    try:
        return int(module.run(args) or 0)
    except FpnlabError as err:
        print(f"fpnlab {name}: error: {err}", file=sys.stderr)
        return 2


def typed_command(argv: list[str]) -> str:
    """The command as a user would type it (stored in results/*.json), with the thread setting when one was made."""
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    return threads + shlex.join(["fpnlab", *argv])
