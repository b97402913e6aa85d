"""The floors of the package, checked on its imports: the detector is a closed core, and arrows only point down.

    base       fpnlab/*.py: errors, switch, overrides, env, outputs, results, progress, moved (and the CLI's entry)
    model      the detector's stages and their assembly: base, torch and torchvision only
    data       datasets: base, model
    engine     training, checkpoints, evaluation, inference: base, model, data
    plots      figures: base, model, data, engine
    ablation   the paper's tables: base, model, data, engine, plots
    grading    the assignment's machinery: base, model
    teaching   the notebooks' helpers and widgets: every floor but grading and commands
    commands   the command line: every floor; nothing imports it (fpnlab.cli names its modules as strings)

A wrong arrow fails with the file and the arrow, e.g.
"fpnlab/model/rpn.py imports fpnlab.engine.presets: the model floor may import base, model".
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

from tests.test_layout import PACKAGE, imported, modules

FLOORS: dict[str, set[str]] = {  # floor -> the floors its modules may import
    "base": {"base"},
    "model": {"base", "model"},
    "data": {"base", "model", "data"},
    "engine": {"base", "model", "data", "engine"},
    "plots": {"base", "model", "data", "engine", "plots"},
    "ablation": {"base", "model", "data", "engine", "plots", "ablation"},
    "grading": {"base", "model", "grading"},
    "teaching": {"base", "model", "data", "engine", "plots", "ablation", "teaching"},
    "commands": {"base", "model", "data", "engine", "plots", "ablation", "teaching", "grading", "commands"},
}
ENTRY = {"fpnlab.__main__"}  # `python -m fpnlab` runs the CLI: it may import fpnlab.cli
# Outside fpnlab: the only packages the model floor may import (besides the standard library).
MODEL_THIRD_PARTY = {"torch", "torchvision"}


def floor(module: str) -> str:
    """fpnlab.model.rpn -> model; fpnlab.errors -> base; fpnlab -> base."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOORS and parts[1] != "base") else "base"


def wrong_arrows(package: Path) -> list[str]:
    """Every module-level import of an fpnlab module that points to a floor its own floor may not use."""
    known = modules(package)
    found = []
    for name, path in known.items():
        source = floor(name)
        for node in ast.parse(path.read_text()).body:
            for target in imported(name, node, known):
                if name in ENTRY and target == "fpnlab.cli":
                    continue
                if floor(target) not in FLOORS[source]:
                    allowed = ", ".join(sorted(FLOORS[source], key=list(FLOORS).index))
                    found.append(
                        f"{path.relative_to(package.parent)} imports {target}: the {source} floor may import {allowed}"
                    )
    return found


def foreign_imports(package: Path) -> list[str]:
    """Imports of the model floor outside the standard library, torch and torchvision."""
    found = []
    for path in sorted((package / "model").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for top in {n.split(".")[0] for n in names}:
                if top not in MODEL_THIRD_PARTY and top != "fpnlab" and top not in sys.stdlib_module_names:
                    found.append(f"{path.relative_to(package.parent)} imports {top}")
    return found


def test_every_module_is_on_a_known_floor():
    assert {floor(name) for name in modules(PACKAGE)} <= set(FLOORS)


def test_imports_point_only_down_the_floors():
    assert wrong_arrows(PACKAGE) == []


def test_the_model_floor_needs_only_torch_and_torchvision():
    assert foreign_imports(PACKAGE) == []


@pytest.mark.parametrize(
    "module, line, arrow",
    [
        (
            "model/rpn.py",
            "from fpnlab.engine.presets import PRESETS",
            "fpnlab/model/rpn.py imports fpnlab.engine.presets",
        ),
        ("engine/loop.py", "from fpnlab.teaching import questions", "fpnlab/engine/loop.py imports fpnlab.teaching"),
        ("data/coco.py", "import fpnlab.commands.train", "fpnlab/data/coco.py imports fpnlab.commands.train"),
    ],
)
def test_an_arrow_added_the_wrong_way_is_named(tmp_path, module, line, arrow):
    copy = tmp_path / "fpnlab"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text().replace("\nimport torch\n", f"\nimport torch\n{line}\n", 1))
    found = wrong_arrows(copy)
    assert len(found) == 1 and found[0].startswith(arrow), found


def test_a_foreign_package_in_the_model_floor_is_named(tmp_path):
    copy = tmp_path / "fpnlab"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "model" / "levels.py"
    path.write_text(
        path.read_text().replace("\nimport torch\n", "\nimport torch\nimport matplotlib.pyplot as plt\n", 1)
    )
    assert foreign_imports(copy) == ["fpnlab/model/levels.py imports matplotlib"]


# --- the README tables describe the tree ------------------------------------------------------------------

FOLDERS = ["model", "data", "engine", "plots", "ablation", "teaching", "teaching/widgets", "grading", "commands"]


def listed(readme: Path) -> set[str]:
    """The names in the first column of a README's tables: `boxes.py`, `widgets/`, ..."""
    names = set()
    for line in readme.read_text().splitlines():
        if line.startswith("| `"):
            names |= {name.strip().strip("`") for name in line.split("|")[1].split(",")}
    return names


def present(folder: Path) -> set[str]:
    """A folder's modules and sub-packages, as a README names them."""
    files = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
    return files | {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()}


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_readme_lists_exactly_its_modules(folder):
    assert listed(PACKAGE / folder / "README.md") == present(PACKAGE / folder)


def test_the_package_readme_lists_every_base_module_and_floor():
    readme = PACKAGE / "README.md"
    base = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert listed(readme) == base
    rows = [line.split("|") for line in readme.read_text().splitlines() if line.startswith("| ")]
    assert set(FLOORS) <= {row[1].strip() for row in rows}
    assert {f"[`{f}/`]({f}/README.md)" for f in FOLDERS if "/" not in f} <= {row[2].strip() for row in rows}


def test_the_main_readme_layout_names_every_floor_folder():
    text = (PACKAGE.parent / "README.md").read_text()
    layout = text[text.index("## Layout") :]
    assert all(f"`fpnlab/{f}/`" in layout for f in FOLDERS if "/" not in f)
