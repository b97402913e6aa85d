"""One stage numbering everywhere: stage N is notebook N, the stage module's docstring and assignment section N."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

from fpnlab.grading import UNITS
from tests.test_layout import PACKAGE


def model_stages() -> dict[str, int]:
    """module file -> stage number, from the table of fpnlab/model/README.md (modules without a stage left out)."""
    stages = {}
    for line in (PACKAGE / "model" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if cells and cells[0].startswith("`") and cells[1].isdigit():
            stages[cells[0].strip("`")] = int(cells[1])
    return stages


def test_the_table_gives_a_stage_to_every_stage_module():
    assert set(model_stages()) == {
        "boxes.py",
        "backbone.py",
        "fpn.py",
        "anchors.py",
        "rpn.py",
        "matching.py",
        "levels.py",
        "poolers.py",
        "roi_heads.py",
        "res5_head.py",  # the C4 baseline's conv5 head, also stage 6
        "masks.py",
        "mask_head.py",
        "segment_proposals.py",  # stage 9: the masks of notebook 09
    }


@pytest.mark.parametrize("module, stage", sorted(model_stages().items()))
def test_each_stage_module_says_its_stage_in_its_first_line(module, stage):
    docstring = ast.get_docstring(ast.parse((PACKAGE / "model" / module).read_text()))
    assert re.search(rf"\(stages? {stage}\b", docstring.splitlines()[0]), docstring.splitlines()[0]


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_each_units_section_is_numbered_by_its_modules_stage(unit):
    found = UNITS[unit]
    stage = model_stages()[found.module.removeprefix("model/")]
    assert found.section.split(".")[0] == str(stage), f"{unit}: section {found.section}, module stage {stage}"


@pytest.mark.parametrize("stage", sorted(set(model_stages().values())))
def test_notebook_n_teaches_stage_n(stage):
    path = next((PACKAGE.parent / "notebooks").glob(f"{stage:02d}_*.ipynb"))
    title = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
    assert title.startswith(f"# {stage:02d} ·"), title
