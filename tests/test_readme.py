"""Every command line the README shows is one the command line accepts (its own parser, its own options)."""

from __future__ import annotations

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
