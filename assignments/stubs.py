"""The student's copy of a stage module: every unit's code replaced by a stub, nothing else changed.

A unit's function keeps its signature and docstring (they are outside the markers); between the markers
the solution's code gives way to

    # BEGIN UNIT iou
    # Unit 'iou', notebook section 0.2 Intersection over union.
    # Replace these lines with your code, then run check("iou") in the notebook.
    # The lab's comments on its own code, in order:
    #   (N, M, 2)
    #   (N, M, 2)
    return units.todo("iou", boxes1, boxes2)
    # END UNIT iou

The lab's own comments stay as hints (shapes, the order of steps); no code does. A unit torchvision has
an equivalent of gets two lines above its markers that let torchvision stand in for it while another
unit is checked (fpnlab.grading.stand_in), so each unit is graded on its own.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize

from fpnlab.errors import FpnlabError
from fpnlab.grading import FALLBACKS, UNITS, regions

IMPORT = "from fpnlab import grading as units"


def stub_module(source: str, path: str) -> str:
    """`source` of fpnlab/`path` with each unit's code replaced by its stub; `units` imported once."""
    tree, lines = ast.parse(source), source.splitlines()
    found = regions(source, path)
    if not found:
        return source
    for name, (begin, end) in sorted(found.items(), key=lambda item: -item[1][0]):  # bottom up: numbers hold
        function, qualname = enclosing_function(tree, begin + 1)
        if name not in UNITS or UNITS[name].module != path.removeprefix("fpnlab/") or UNITS[name].function != qualname:
            raise FpnlabError(
                f"{path}: the markers of unit {name!r} surround code of {qualname}, but fpnlab.grading "
                f"places that unit elsewhere; fix the markers or the UNITS table."
            )
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        arguments = ", ".join(parameters(function, path))
        lines[begin + 1 : end] = stub_lines(name, arguments, comments("\n".join(lines[begin + 1 : end])), indent)
        if name in FALLBACKS:
            lines[begin:begin] = [
                f'{indent}if units.stand_in("{name}"):  # another unit is being checked: torchvision stands in',
                f'{indent}    return units.fallback("{name}", {arguments})',
            ]
    lines.insert(import_line(tree), IMPORT)
    return "\n".join(lines) + "\n"


def import_line(tree: ast.Module) -> int:
    """Where `from fpnlab import grading as units` goes: before the module's first fpnlab import, else after its
    imports."""
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    ours = [node for node in imports if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fpnlab")]
    return ours[0].lineno - 1 if ours else max(node.end_lineno for node in imports)


def stub_lines(name: str, arguments: str, hints: list[str], indent: str) -> list[str]:
    """The lines a student replaces: what to write and where it is taught, the lab's comments, `units.todo`."""
    text = [
        f"# Unit {name!r}, notebook section {UNITS[name].section}.",
        f'# Replace these lines with your code, then run check("{name}") in the notebook.',
    ]
    if hints:
        text.append("# The lab's comments on its own code, in order:")
        text += [f"#   {hint}" for hint in hints]
    text.append(f'return units.todo("{name}", {arguments})')
    return [indent + line for line in text]


def enclosing_function(tree: ast.Module, line: int) -> tuple[ast.FunctionDef, str]:
    """The innermost function whose lines hold `line` (1-based), and its qualified name (Class.method)."""
    best: tuple[ast.FunctionDef, str] | None = None
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)) and child.lineno <= line <= child.end_lineno:
                qualname = f"{prefix}{child.name}"
                if isinstance(child, ast.FunctionDef):
                    best = (child, qualname)
                stack.append((child, qualname + "."))
    if best is None:
        raise FpnlabError(f"line {line}: a unit's markers must sit inside a function body.")
    return best


def parameters(function: ast.FunctionDef, path: str) -> list[str]:
    """The names of the function's parameters, in order; a stub passes them all to `units.todo`."""
    args = function.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise FpnlabError(
            f"{path}: {function.name} takes *args, **kwargs or keyword-only parameters, which a "
            "unit's stub cannot pass on; give it plain parameters."
        )
    return [arg.arg for arg in args.args]


def comments(code: str) -> list[str]:
    """The text of every comment in `code`, in order: the hints a stub keeps."""
    tokens = tokenize.generate_tokens(io.StringIO(textwrap.dedent(code).strip("\n") + "\n").readline)
    return [token.string.lstrip("#").strip() for token in tokens if token.type == tokenize.COMMENT]
