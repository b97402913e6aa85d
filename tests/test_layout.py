"""The house rules of the package, checked on its source: no import cycle, no hidden imports, short pieces.

- the graph of fpnlab's module-level imports has no cycle (and every module imports in a fresh
  interpreter on its own);
- no import inside a function, except of optional extras (OPTIONAL) and the CLI's lazy dispatch;
- no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fpnlab"
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 50
OPTIONAL = {"torch.utils.tensorboard"}  # imported only when installed


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """fpnlab module name -> file."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, node: ast.AST, known: dict[str, Path]) -> list[str]:
    """The fpnlab modules an import statement in module `name` brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("fpnlab")]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from .coco import x (level 1), from ..errors import y (level 2)
        package = name if known[name].name == "__init__.py" else name.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        base = f"{package}.{base}" if base else package
    if not base.startswith("fpnlab"):
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def graph() -> dict[str, set[str]]:
    """Module -> the fpnlab modules it imports at module level (not inside functions)."""
    edges, known = {}, modules()
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        edges[name] = {target for node in tree.body for target in imported(name, node, known) if target != name}
    return edges


def test_module_imports_form_no_cycle():
    edges, state, stack = graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name)


def test_no_import_hides_inside_a_function():
    hidden = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        target = inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name
                        if target not in OPTIONAL:
                            hidden.append(f"{name}.{node.name} imports {target}")
    assert hidden == []


@pytest.mark.parametrize(
    "name",
    [
        "fpnlab.cli",
        "fpnlab.engine.loop",
        "fpnlab.commands.train",
        "fpnlab.ablation.runner",
        "fpnlab.teaching.questions",
        "fpnlab.teaching.widgets",
    ],
)
def test_each_entry_module_imports_alone_in_a_fresh_interpreter(name):
    result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_modules_and_functions_are_short():
    long_modules = {
        name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    long_functions = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert long_modules == {} and long_functions == []
