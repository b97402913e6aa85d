"""The code between a unit's markers: found, parsed, and refused when it leans on what would do its work.

regions(source)       {"iou": (begin, end)}: 0-based lines of '# BEGIN UNIT iou' / '# END UNIT iou'
unit_code("iou")      the dedented code between them in the fpnlab that is imported, and its first line
refusal("iou")        None, or why the code cannot earn points (torchvision, the fallbacks, an import...)

A unit's code is statements inside its function, nothing more: no line indented less than its BEGIN
marker, no `global` or `nonlocal`, no import. Refused, because each would do the unit's work or reach
past it (torchvision, the lab's own version, the grader, the files on disk): the names in BANNED, the
attributes in BANNED_ATTRIBUTES, any dunder name, attribute or string ('__globals__', '__builtins__'...).
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from pathlib import Path

from fpnlab.errors import FpnlabError
from fpnlab.grading.registry import UNITS

PACKAGE = Path(__file__).resolve().parent.parent  # the fpnlab that is imported (a student's release, or the lab)
MARKER = re.compile(r"^\s*# (BEGIN|END) UNIT (\w+)\s*$")
DUNDER = re.compile(r"__\w+__")
SKIPPED_TOKENS = (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
# Names no unit's code may use: torchvision, the fallback machinery, and ways around both or to the files
# (`units.todo` is allowed: it is what an untouched stub returns).
BANNED = frozenset(
    {
        *("torchvision", "units", "grading", "importlib", "builtins", "sys", "os", "subprocess", "shutil"),
        *("exec", "eval", "compile", "globals", "locals", "vars", "getattr", "setattr", "delattr", "type"),
        *("open", "input", "breakpoint", "help", "exit", "quit", "memoryview", "object", "super"),
        *("io", "pathlib", "Path", "inspect", "gc", "ctypes", "pickle", "marshal", "operator", "linecache"),
        *("types", "weakref", "threading", "multiprocessing", "socket", "signal", "atexit", "code", "codeop"),
    }
)
# Attributes no unit's code may use: torch's operator registry (torchvision's kernels live there), its C
# internals, compilers and hubs, reading or writing files, frames and their globals.
BANNED_ATTRIBUTES = frozenset(
    {
        *("ops", "_ops", "_C", "classes", "library", "hub", "cpp_extension", "load_inline", "jit", "compile"),
        *("load", "loads", "save", "from_file", "fromfile", "loadtxt", "genfromtxt", "memmap", "tofile"),
        *("read", "readline", "readlines", "read_text", "read_bytes", "write", "write_text", "write_bytes"),
        *("open", "unlink", "remove", "rmtree", "system", "popen", "environ", "modules"),
        *("f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "gi_frame"),
        *("gi_code", "cr_frame", "ag_frame", "func_globals"),
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


def unit_code(unit: str, package: Path = PACKAGE) -> tuple[str, int]:
    """The code between `unit`'s markers in `package` (the fpnlab that is imported), dedented, and the line
    number of its BEGIN marker: line n of the code is line n + that of the file. AssertionError in words when
    the markers are gone or a line sits left of the BEGIN marker (outside the function)."""
    lines = (package / UNITS[unit].module).read_text(encoding="utf-8").splitlines()
    found = regions("\n".join(lines), f"fpnlab/{UNITS[unit].module}")
    if unit not in found:
        raise AssertionError(
            f"the markers of unit {unit!r} are missing from fpnlab/{UNITS[unit].module}; put "
            f"'# BEGIN UNIT {unit}' and '# END UNIT {unit}' back around its code."
        )
    begin, end = found[unit]
    indent = len(lines[begin]) - len(lines[begin].lstrip())
    if (line := outdented_line(lines[begin + 1 : end], indent)) is not None:
        raise AssertionError(
            f"unit {unit!r}: line {begin + 2 + line} of fpnlab/{UNITS[unit].module} sits left of its "
            "'# BEGIN UNIT' marker, outside the function; a unit's code is statements inside its function."
        )
    return textwrap.dedent("\n".join(lines[begin + 1 : end])), begin + 1


def outdented_line(lines: list[str], indent: int) -> int | None:
    """The 0-based index of the first line in `lines` whose code starts left of column `indent` (the lines of a
    multi-line string aside), or None."""
    starts: dict[int, int] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if token.type not in SKIPPED_TOKENS:
                starts.setdefault(token.start[0] - 1, token.start[1])
    except (tokenize.TokenError, IndentationError, SyntaxError):  # then line by line, strings or not
        starts = {n: len(line) - len(line.lstrip()) for n, line in enumerate(lines) if line.strip()}
    return next((line for line, column in sorted(starts.items()) if column < indent), None)


def refusal(unit: str, package: Path = PACKAGE) -> str | None:
    """Why the code of `unit` cannot earn points, or None: it is not plain statements of its function, or uses
    torchvision, the fallback machinery, the lab's own version of the same computation, an import, or a way
    around them (see BANNED)."""
    try:
        code, offset = unit_code(unit, package)
    except AssertionError as err:
        return str(err)
    where = f"fpnlab/{UNITS[unit].module}"
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        return f"unit {unit!r} does not parse: {err.msg} ({where}, line {offset + (err.lineno or 0)})."
    found = sorted(uses(tree, UNITS[unit].forbidden))
    if not found:
        return None
    line, _, why = found[0]
    names = " and ".join(dict.fromkeys(name for at, name, _ in found if at == line))  # all of that line, in order
    return (
        f"unit {unit!r} uses {names} ({where}, line {offset + line}): {why}; write it with torch operations. "
        "As it is, the unit earns no points."
    )


def uses(tree: ast.AST, forbidden: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """(line, what, why) for each refused thing in `tree`: imports, global/nonlocal, banned and dunder names."""
    allowed = {
        id(node.value)
        for node in ast.walk(tree)  # units.todo: what an untouched stub returns
        if isinstance(node, ast.Attribute) and node.attr == "todo" and getattr(node.value, "id", "") == "units"
    }
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((line, "an import", "use what its module imports already (torch, F, math...)"))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            found.append((line, "global/nonlocal", "a unit's code changes nothing outside its function"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DUNDER.search(node.value):
            found.append((line, "a dunder string", "a way around the rules"))
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name is None or id(node) in allowed:
            continue
        if name in forbidden:
            found.append((line, repr(name), "the lab's own version of this computation"))
        elif (
            name in BANNED or (isinstance(node, ast.Attribute) and name in BANNED_ATTRIBUTES) or DUNDER.fullmatch(name)
        ):
            found.append((line, repr(name), "torchvision, the grader and the files may not do its work"))
    return found
