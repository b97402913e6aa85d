"""Cheat submissions: points without the work, tried the ways a student would (issue 24).

Each cheat sits in the unit it targets of an otherwise correct submission (the solution's). It must score
0 on that unit, leave every other unit's score as the solution's, and show the student no hidden case, no
test file, no path of the grader. The whole autograder (assignments.runner) grades one submission holding
them all, with an extra notebook and files named like the grader's own at the top of the zip; the units'
isolation is tried once more with the static refusals switched off.
"""

from __future__ import annotations

import shutil
import textwrap

import pytest
import torch

from fpnlab.grading import UNITS, expect_close
from fpnlab.grading.markers import refusal
from fpnlab.grading.process import Setup, UnitProcess
from tests.assignment_support import grade, replace_unit, solution_folder, visible_text, zip_of

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop")
COLUMN_0 = "^"  # a cheat's line that starts at column 0, left of its unit's markers
CHEATS = {  # unit -> (what it tries, its lines between the markers, indented like them unless COLUMN_0)
    "area": ("module-level code through the markers", ["^PWNED = True", "return units.todo('area', boxes)"]),
    "iou": (
        "patching otter's test runner through __builtins__",
        [
            'otter = __builtins__["__import__"]("otter.test_files", fromlist=["ExceptionTestFile"])',
            "otter.ExceptionTestFile.run = lambda self, env: None",
            "return torch.zeros(len(boxes1), len(boxes2))",
        ],
    ),
    "encode": ("a global escape", ["global box_iou", "box_iou = None", "return deltas"]),
    "nms": (
        "torchvision's kernel through torch.ops",
        ["return torch.ops.torchvision.nms(boxes, scores, iou_threshold)"],
    ),
    "flatten_objectness": (
        "torchvision through a function's __globals__",
        ['return check_boxes.__globals__["torch"].flatten(logits.permute(0, 2, 3, 1), 1)'],
    ),
    "flatten_deltas": ("an error message that prints the inputs", ["raise ValueError(repr(deltas.tolist()))"]),
    "matcher": ("torch.ops through vars()", ['return vars(torch)["ops"].torchvision.nms(iou, iou, 0.5)']),
    "assign_levels": (
        "reading the installed sources",
        ["text = open(torch.__file__.replace('torch', 'fpnlab')).read()", "return torch.zeros(len(boxes))"],
    ),
    "roi_loss": (
        "patching the comparison",
        ["import fpnlab.grading.expect as expect", "expect.expect_close = print", "return {}"],
    ),
}
EXTRA = {  # files at the top of the zip: run by otter's kernel if it executed the upload, shadowing if imported
    "cheat.ipynb": '{"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": "open(%r, \'w\')"}], '
    '"metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
    "otter/__init__.py": "open(%r, 'w')\n",
    "tests/iou.py": "open(%r, 'w')\n",
}


def body(unit: str, lines: list[str]) -> list[str]:
    """The cheat's lines at the indentation of `unit`'s markers (one more level for a method), or at column 0."""
    indent = "        " if "." in UNITS[unit].function else "    "
    return [line[1:] if line.startswith(COLUMN_0) else indent + line for line in lines]


@pytest.fixture(scope="module")
def cheated(dist, tmp_path_factory):
    """(results, the marker file any executed upload would create) of the whole autograder on the cheats."""
    root = tmp_path_factory.mktemp("cheats")
    upload, marker = solution_folder(dist, root / "upload"), root / "executed"
    for unit, (_, lines) in CHEATS.items():
        replace_unit(upload, f"fpnlab/{UNITS[unit].module}", unit, body(unit, lines))
    for name, text in EXTRA.items():
        (upload / name).parent.mkdir(parents=True, exist_ok=True)
        (upload / name).write_text(text % str(marker), encoding="utf-8")
    return grade(dist, zip_of(upload, root / "cheats.zip")), marker


def scores(results):
    return {test["name"]: test["score"] for test in results["tests"] if "score" in test}


def test_each_cheat_scores_zero_on_its_unit_and_changes_no_other_score(cheated, solution_results):
    results, marker = cheated
    expected = {name: 0 if name in CHEATS else score for name, score in scores(solution_results).items()}
    expected["capstone"] = expected["training"] = 0  # a detector built of cheats is not the student's own
    assert scores(results) == expected
    assert not marker.exists()  # nothing of the upload outside the units ever ran


def test_the_extra_files_are_named_and_the_cheats_explained(cheated):
    results, _ = cheated
    seen = visible_text(results)
    assert "not graded, not run (only the expected files are): cheat.ipynb, otter/__init__.py, tests/iou.py" in seen
    assert "unit 'area' was not graded: line" in seen and "sits left of its '# BEGIN UNIT' marker" in seen
    for unit, why in (("iou", "'__builtins__'"), ("encode", "global/nonlocal"), ("nms", "'nms'")):
        assert f"unit {unit!r} uses {why}" in seen, unit
    assert "unit 'roi_loss' uses an import" in seen and "unit 'matcher' uses 'torchvision' and 'vars'" in seen


def test_no_hidden_case_or_grader_path_is_shown(cheated, dist):
    results, _ = cheated
    seen = visible_text(results)
    hidden_sources = []
    for unit in CHEATS:
        source = (dist / "autograder" / "tests" / f"{unit}.py").read_text(encoding="utf-8")
        hidden_sources += [line.strip() for line in source.split("hidden=True")[1:] for line in line.splitlines()[2:6]]
    assert [line for line in hidden_sources if len(line) > 25 and line in seen] == []
    for grader in ("autograde", "source/tests", "/tmp", "source/files", "grade.py", "Error at line", "SEED", "/work"):
        assert grader not in seen, grader
    # flatten_deltas printed its inputs: the visible cases' in full, the hidden cases' nowhere
    deltas = next(t for t in results["tests"] if t["name"] == "flatten_deltas")["output"]
    hidden_part = deltas.split("hidden cases that fail:")[1]
    assert "your code raised ValueError (fpnlab/model/rpn.py, line" in hidden_part and "[[" not in hidden_part
    assert "your code's message" not in hidden_part and ": [[[[" in deltas.split("hidden cases that fail:")[0]


def test_a_unit_that_slips_past_the_refusals_still_cannot_touch_the_verdict(dist, tmp_path):
    """With the static refusals switched off in a copy of the package, a unit's code patches the grader's
    comparison and otter's runner and writes a file: all in its own process, so the verdict stands."""
    package = tmp_path / "package"
    shutil.copytree(dist / "student" / "fpnlab", package / "fpnlab")
    markers = package / "fpnlab" / "grading" / "markers.py"
    markers.write_text(
        markers.read_text(encoding="utf-8") + "\n\ndef refusal(unit, package=PACKAGE):\n    return None\n"
    )
    lines = textwrap.dedent(
        f"""\
        import fpnlab.grading.expect as expect
        import otter.test_files
        expect.expect_close = expect.expect_equal = lambda *args, **kwargs: None
        otter.test_files.ExceptionTestFile.run = lambda self, env: None
        open({str(tmp_path / "written")!r}, "w").write("the unit ran, in its own process")
        return torch.zeros(len(boxes1), len(boxes2))"""
    ).splitlines()
    replace_unit(package, "fpnlab/model/boxes.py", "iou", ["    " + line for line in lines])
    assert refusal("iou", package / "fpnlab") is not None  # the real refusals would have stopped it
    worker = UnitProcess("iou", Setup(package=package, isolated=True, show_output=False))
    try:
        request = {"mode": "unit", "call": {"function": "fpnlab.model.boxes:_iou"}, "kwargs": {}, "grad": []}
        answer = worker.ask({**request, "args": [torch.zeros(2, 4), torch.ones(3, 4)]})
    finally:
        worker.close()
    assert (tmp_path / "written").read_text() == "the unit ran, in its own process"
    got = answer["ok"]
    assert torch.equal(got, torch.zeros(2, 3))
    with pytest.raises(AssertionError, match="values differ"):  # this side's comparison, untouched
        expect_close(got, torch.full((2, 3), 0.5), "IoU")
