"""The `fpnlab` command line: one sub-command per job, each a module of fpnlab.commands.

A command's module is imported only when that command runs, so `fpnlab --help` answers at once.
Any FpnlabError (a bad path, file, option or setting), and any OSError no module wrapped (it names its
file), is printed as one line naming the problem and the command exits with code 2; `--debug` shows
the traceback as well. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import traceback

from fpnlab.errors import FpnlabError

COMMANDS: dict[str, tuple[str, str]] = {
    "make-data": ("fpnlab.commands.make_data", "generate the synthetic multi-scale shapes dataset"),
    "download": ("fpnlab.commands.download", "download a small real dataset and convert it to COCO"),
    "train": ("fpnlab.commands.train", "train a detector (or resume a run)"),
    "eval": ("fpnlab.commands.eval", "COCO metrics and proposal recall of a checkpoint"),
    "detect": ("fpnlab.commands.detect", "draw a checkpoint's detections on an image"),
    "ablate": ("fpnlab.commands.ablate", "train and score the paper's FPN ablations"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: `fpnlab COMMAND ...`."""
    parser = argparse.ArgumentParser(prog="fpnlab", description="Feature Pyramid Network lab.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command, with its own options and --debug."""
    parser = argparse.ArgumentParser(prog=f"fpnlab {name}", description=COMMANDS[name][1])
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback too")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv or ["--help"])  # prints help or a clear "invalid choice"
        return 2
    name = argv[0]
    args = command_parser(name).parse_args(argv[1:])
    args.command_line = typed_command(argv)
    try:
        return int(importlib.import_module(COMMANDS[name][0]).run(args) or 0)
    except (FpnlabError, OSError) as err:  # an OSError is always about a path: said in one line too
        if args.debug:
            traceback.print_exc()
        print(f"fpnlab {name}: error: {err if isinstance(err, FpnlabError) else os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def os_error(err: OSError) -> str:
    """An OSError no module wrapped, in one line naming the file: "photos/x.jpg: File name too long"."""
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    where = f"{' -> '.join(names)}: " if names else ""
    return f"{where}{err.strerror or type(err).__name__} ({type(err).__name__})."


def typed_command(argv: list[str]) -> str:
    """The command as a user would type it (stored in results/*.json), with the thread setting when one was made."""
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    return threads + shlex.join(["fpnlab", *argv])
