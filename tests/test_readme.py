"""Every command line the README shows is one the command line accepts (its own parser, its own options)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from fpnlab.cli import COMMANDS, command_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[list[str]]:
    """The fpnlab invocations in the README's bash blocks, as argument lists after `fpnlab`."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line.split("#")[0])
            if "fpnlab" in words:
                start = words.index("fpnlab") + 1
                if words[start - 2 : start] == ["-m", "fpnlab"] or words[0] == "fpnlab":
                    commands.append(words[start:])
    return commands


def test_the_readme_shows_every_command():
    assert {args[0] for args in readme_commands()} == set(COMMANDS)


@pytest.mark.parametrize("args", readme_commands(), ids=lambda args: " ".join(args)[:60])
def test_each_readme_command_line_parses(args):
    command_parser(args[0]).parse_args(args[1:])  # argparse exits (a test failure) on anything unknown


def test_the_mask_checkpoint_records_were_made_by_the_makefile_lines():
    """`make checkpoint-mask` runs exactly the commands its two records stamp (the records add only the one-thread
    setting the run was made with), and fpnlab's parser takes both lines."""
    root = README.parent
    recipe = (root / "Makefile").read_text().split("checkpoint-mask:")[1].split("\n\n")[0]
    lines = [line.split("-m fpnlab ", 1)[1] for line in recipe.splitlines() if "-m fpnlab " in line]
    for line, name in zip(lines, ("demo_mask_training", "demo_mask_checkpoint"), strict=True):
        stamped = json.loads((root / "results" / f"{name}.json").read_text())["command"]
        assert stamped.removeprefix("OMP_NUM_THREADS=1 ") == f"fpnlab {line}"
        args = shlex.split(line)
        command_parser(args[0]).parse_args(args[1:])
