"""The otter test files of a release: all cases for the autograder, the visible ones for the students.

assignments/tests/<unit>.py holds one unit's cases, each an otter exception-style `@test_case`; a case
with `hidden=True` goes to the autograder only. Cut out of the student's copy are the whole function,
its decorator and the blank lines after it, so neither a hidden case's code nor its data ships; anything
a hidden case needs lives inside it. Its random draws start from `SEED`, which the build derives from the
instructor's secret (`seed_of`): the public lab holds the cases' code, not their values. Settings the
build fills in are plain assignments at the top of a file (`points = ...`, `AP50 = ...`), replaced by the
values of points.toml.
"""

from __future__ import annotations

import ast
import hashlib
import re
from typing import Any

from fpnlab.errors import FpnlabError


def is_hidden(node: ast.AST) -> bool:
    """True for a function decorated with `test_case(..., hidden=True)`."""
    if not isinstance(node, ast.FunctionDef):
        return False
    return any(
        isinstance(d, ast.Call)
        and getattr(d.func, "id", None) == "test_case"
        and any(k.arg == "hidden" and isinstance(k.value, ast.Constant) and k.value.value is True for k in d.keywords)
        for d in node.decorator_list
    )


def case_names(source: str, hidden: bool) -> list[str]:
    """The function names of the hidden (or the visible) cases of a test file."""
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.decorator_list and is_hidden(node) == hidden
    ]


def visible_only(source: str) -> str:
    """The test file without its hidden cases (decorators, bodies and the blank lines after them) and without
    the seed of their random draws (the `SEED = ...` line the build fills in from the instructor's secret)."""
    lines = [line for line in source.splitlines() if not line.startswith("SEED = ")]
    source = "\n".join(lines) + "\n"
    for node in sorted((n for n in ast.parse(source).body if is_hidden(n)), key=lambda n: -n.lineno):
        first = min(d.lineno for d in node.decorator_list) - 1
        last = node.end_lineno
        while last < len(lines) and not lines[last].strip():
            last += 1
        del lines[first:last]
    return "\n".join(lines).rstrip("\n") + "\n"


def fill_settings(source: str, values: dict[str, Any], path: str) -> str:
    """Replace the top-level lines `NAME = ...` of each setting with its value; each must be there once."""
    for name, value in values.items():
        pattern = re.compile(rf"^{re.escape(name)} = .*$", re.MULTILINE)
        if len(pattern.findall(source)) != 1:
            raise FpnlabError(f"{path} needs exactly one line '{name} = ...' for the build to fill in.")
        line = f"{name} = {value!r}  # set by the build (assignments/points.toml)"
        source = pattern.sub(lambda _, line=line: line, source)
    return source


def seed_of(secret: str, unit: str) -> int:
    """The seed of `unit`'s hidden random draws: 31 bits of SHA-256 of the secret and the unit's name."""
    return int.from_bytes(hashlib.sha256(f"{secret}\0{unit}".encode()).digest()[:4], "big") >> 1
