"""The code between a unit's markers: found, parsed, and refused when it leans on what would do its work.

regions(source)       {"iou": (begin, end)}: 0-based lines of '# BEGIN UNIT iou' / '# END UNIT iou'
unit_code("iou")      the dedented code between them in the fpnlab that is imported, and its first line
refusal("iou")        None, or why the code cannot earn points (torchvision, the fallbacks, an import...)
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

from fpnlab.errors import FpnlabError
from fpnlab.grading.registry import UNITS

PACKAGE = Path(__file__).resolve().parent.parent  # the fpnlab that is imported (a student's release, or the lab)
MARKER = re.compile(r"^\s*# (BEGIN|END) UNIT (\w+)\s*$")
# Names no unit's code may use: torchvision, the fallback machinery, ways around both (`units.todo` is allowed).
BANNED = frozenset(
    {
        "torchvision",
        "units",
        "grading",
        "__import__",
        "importlib",
        "exec",
        "eval",
        "compile",
        "globals",
        "getattr",
        "setattr",
        "sys",
        "os",
        "subprocess",
    }
)


def regions(source: str, path: str = "source") -> dict[str, tuple[int, int]]:
    """Unit name -> 0-based line numbers of its '# BEGIN UNIT name' and '# END UNIT name' lines in `source`."""
    found: dict[str, tuple[int, int]] = {}
    open_unit: tuple[str, int] | None = None
    for number, line in enumerate(source.splitlines()):
        match = MARKER.match(line)
        if match is None:
            continue
        kind, name = match.groups()
        if kind == "BEGIN" and (open_unit is not None or name in found):
            raise FpnlabError(f"{path}, line {number + 1}: unit {name!r} begins inside another unit or twice.")
        if kind == "END" and (open_unit is None or open_unit[0] != name):
            raise FpnlabError(f"{path}, line {number + 1}: '# END UNIT {name}' has no '# BEGIN UNIT {name}' above it.")
        if kind == "BEGIN":
            open_unit = (name, number)
        else:
            found[name], open_unit = (open_unit[1], number), None
    if open_unit is not None:
        raise FpnlabError(f"{path}: '# BEGIN UNIT {open_unit[0]}' has no '# END UNIT {open_unit[0]}' below it.")
    return found


def unit_code(unit: str) -> tuple[str, int]:
    """The code between `unit`'s markers in the fpnlab that is imported, dedented, and the line number of its
    BEGIN marker: line n of the code is line n + that of the file."""
    lines = (PACKAGE / UNITS[unit].module).read_text(encoding="utf-8").splitlines()
    found = regions("\n".join(lines), f"fpnlab/{UNITS[unit].module}")
    if unit not in found:
        raise AssertionError(
            f"the markers of unit {unit!r} are missing from fpnlab/{UNITS[unit].module}; put "
            f"'# BEGIN UNIT {unit}' and '# END UNIT {unit}' back around its code."
        )
    begin, end = found[unit]
    return textwrap.dedent("\n".join(lines[begin + 1 : end])), begin + 1


def refusal(unit: str) -> str | None:
    """Why the code of `unit` cannot earn points, or None: it uses torchvision, the fallback machinery or the lab's
    own version of the same computation (any of which would do the work), or it imports something."""
    code, offset = unit_code(unit)
    where = f"fpnlab/{UNITS[unit].module}"
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        return f"unit {unit!r} does not parse: {err.msg} ({where}, line {offset + (err.lineno or 0)})."
    allowed = {
        id(node.value)
        for node in ast.walk(tree)  # units.todo: what an untouched stub returns
        if isinstance(node, ast.Attribute) and node.attr == "todo" and getattr(node.value, "id", "") == "units"
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return (
                f"unit {unit!r} imports inside its code ({where}, line {offset + node.lineno}); only the code "
                "between the markers is graded, so use what its module imports already (torch, F, math...)."
            )
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if id(node) not in allowed and (name in BANNED or name in UNITS[unit].forbidden):
            found.append((name not in BANNED, node.lineno, name))
    if not found:
        return None
    lab, line, name = min(found)
    why = "the lab's own version of this computation" if lab else "torchvision and the fallback may not do its work"
    return (
        f"unit {unit!r} uses {name!r} ({where}, line {offset + line}): {why}; write it with torch operations. "
        "As it is, the unit earns no points."
    )
