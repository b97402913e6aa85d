"""The grader's rules on their own, without a process or a build: fast, one rule a test.

What a unit's code may use (fpnlab.grading.markers), how a submitted unit is spliced only as statements of
its function (assignments.grading), what a submission is reduced to (assignments.submission), what a
student sees of a hidden case (assignments.report), the hidden seeds, the lab notebooks' "build it
yourself" text and the similarity report.
"""

from __future__ import annotations

import ast
import zipfile

import pytest

from assignments import report
from assignments.grading import splice, structure_problem
from assignments.report import hidden_message, visible_message
from assignments.similarity import references, similarity
from assignments.submission import reduce_submission
from assignments.testfiles import seed_of, visible_only
from fpnlab.grading import build_it_yourself, regions, remote
from fpnlab.grading.expect import DETAIL
from fpnlab.grading.frames import GRADERS_OWN
from fpnlab.grading.markers import outdented_line, uses
from fpnlab.grading.remote import YOURS

RELEASE = '''import torch


def box_area(x):
    """Doc."""
    # BEGIN UNIT area
    return x
    # END UNIT area


class BoxCoder:
    def encode(self, x):
        # BEGIN UNIT encode
        return x
        # END UNIT encode
'''


def student(area: list[str], encode: list[str] | None = None) -> str:
    """RELEASE with the lines of unit area (and encode) replaced, as a student's file."""
    lines = RELEASE.splitlines()
    spans = regions(RELEASE)
    if encode is not None:
        lines[spans["encode"][0] + 1 : spans["encode"][1]] = encode
    lines[spans["area"][0] + 1 : spans["area"][1]] = area
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "code, what",
    [
        ('f.__globals__["torchvision"]', "'__globals__'"),
        ('__builtins__["__import__"]("os")', "'__builtins__'"),
        ('vars(torch)["ops"]', "'vars'"),
        ("torch.ops.torchvision.nms(a, b, 0.5)", "'ops'"),
        ("getattr(torch, 'ops')", "'getattr'"),
        ("open('/autograder/source/tests/iou.py').read()", "'open'"),
        ("torch.load('tests/iou.pt')", "'load'"),
        ("x.read_text()", "'read_text'"),
        ("'{0.__class__}'.format(x)", "a dunder string"),
        ("import os", "an import"),
        ("def f():\n    global box_iou", "global/nonlocal"),
        ("gen.gi_frame.f_globals", "'f_globals'"),
        ("torchvision.ops.box_iou(a, b)", "'torchvision'"),
        ("box_iou(a, b)", "'box_iou'"),
    ],
)
def test_a_way_around_the_work_is_refused(code, what):
    assert what in [found for _, found, _ in uses(ast.parse(code), ("box_iou",))]


def test_plain_torch_code_is_not_refused():
    code = "inter = (torch.min(a[:, None, 2:], b[:, 2:]) - torch.max(a[:, None, :2], b[:, :2])).clamp(min=0)\n"
    code += "def helper(t):\n    return t.prod(dim=-1)\nreturn helper(inter) / F.relu(area)\n"
    assert uses(ast.parse(code), ("box_iou",)) == []


def test_a_line_left_of_the_marker_is_found_but_not_a_multiline_strings_lines():
    assert outdented_line(["    x = 1", "y = 2"], 4) == 1
    assert outdented_line(['    s = """', "text at column 0", '"""', "    return s"], 4) is None


def test_a_unit_is_spliced_as_statements_of_its_function():
    good, notes = splice(RELEASE, student(["    y = x * 2", "    return y"]), "m.py")
    assert notes == {} and "    y = x * 2" in good
    # a student's markers at another indentation: the code moves with them
    shifted = student([" y = x", " return y"]).replace("    # BEGIN UNIT area", " # BEGIN UNIT area")
    assert "    y = x" in splice(RELEASE, shifted, "m.py")[0]


@pytest.mark.parametrize(
    "area, why",
    [
        (["PWNED = open('x', 'w')", "    return x"], "sits left of its '# BEGIN UNIT' marker"),
        (["    return x", "def box_area(x):", "    return 1"], "sits left of its '# BEGIN UNIT' marker"),
        (["    return x +"], "does not compile"),
    ],
)
def test_code_outside_the_function_or_broken_is_not_taken(area, why):
    graded, notes = splice(RELEASE, student(area), "m.py")
    assert why in notes["area"] and "encode" not in notes
    assert "PWNED" not in graded and "    return x\n" in graded  # the release's stub stays


def test_a_method_unit_cannot_add_a_method():
    encode = ["        return x", "", "    def decode(self, x):", "        return x"]
    assert "sits left of its" in splice(RELEASE, student(["    return x"], encode), "m.py")[1]["encode"]


def test_only_the_units_function_body_may_differ_from_the_release():
    assert (
        structure_problem(RELEASE, RELEASE.replace("    return x\n", "    y = 1\n    return y\n", 1), "area", "m")
        is None
    )
    assert "reaches outside" in structure_problem(RELEASE, RELEASE + "PWNED = 1\n", "area", "m.py")
    assert "changes what surrounds" in structure_problem(
        RELEASE, RELEASE.replace("def box_area", "def other"), "area", "m"
    )


def test_a_submission_is_reduced_to_the_expected_files(tmp_path):
    upload = tmp_path / "upload"
    (upload / "fpnlab" / "model").mkdir(parents=True)
    (upload / "fpnlab" / "model" / "boxes.py").write_text("x = 1\n")
    (upload / "cheat.ipynb").write_text("{}")
    (upload / "fpnlab" / "model" / "levels.py").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "secret.txt").write_text("the grader's")
    found = reduce_submission(upload)
    assert found.files == {"fpnlab/model/boxes.py": b"x = 1\n"}
    assert "fpnlab/model/levels.py" in found.missing and "cheat.ipynb" in found.extra
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "submission.zip", "w") as archive:  # an upload Gradescope did not unpack
        archive.writestr("fpn-assignment/fpnlab/model/boxes.py", "y = 2\n")
    assert reduce_submission(zipped).files == {"fpnlab/model/boxes.py": b"y = 2\n"}


def test_a_hidden_case_shows_the_graders_words_only():
    otter = "❌ Test case failed\nError at line 9 in test iou:\n  units.expect_close(got, secret_line)\n"
    values = otter + f"AssertionError: IoU of 13 boxes: 3 of 9 values differ{DETAIL}got 0.51, expected 0.5."
    assert hidden_message(values) == "IoU of 13 boxes: 3 of 9 values differ"
    raised = otter + f"AssertionError: your code raised ValueError (fpnlab/model/boxes.py, line 3){YOURS}[[1, 2]]"
    assert hidden_message(raised) == "your code raised ValueError (fpnlab/model/boxes.py, line 3)"
    assert hidden_message(otter + "TypeError: in /autograder/source/tests/iou.py") == (
        "the case stopped with an error (its details stay hidden)."
    )
    assert visible_message(otter + f"AssertionError: x{YOURS}see /autograder/source/tests/iou.py") == "x: see <path>"


def test_the_runners_markers_are_the_graders():
    assert (report.YOURS, report.DETAIL) == (YOURS, DETAIL)


def test_hidden_seeds_come_from_the_secret_and_stay_out_of_the_release():
    assert seed_of("s", "iou") == seed_of("s", "iou") != seed_of("t", "iou") != seed_of("s", "nms")
    source = "SEED = 12345  # set by the build\n\n@test_case(name='a', hidden=True)\ndef a():\n    pass\n"
    assert visible_only(source).strip() == ""


def test_build_it_yourself_names_the_units_of_each_stage():
    text = build_it_yourself(0)
    assert text.startswith("### Build it yourself") and "5 units, in section 0" in text
    assert '**0.2 Intersection over union**: `_iou` in `fpnlab/model/boxes.py`, checked with `check("iou")`' in text
    assert '`check("assign_levels")`' in build_it_yourself(5) and build_it_yourself(7) == ""
    assert "yourself: one unit, in section 1 " in build_it_yourself(1)


def test_the_lab_is_its_own_closest_match():
    lab, theirs = references("iou")
    assert similarity(lab, lab) == 1.0 and 0.1 < similarity(lab, theirs) < 0.9
    assert similarity("return units.todo('iou', boxes1, boxes2)", lab) < 0.3


def test_only_the_grader_can_speak_as_the_grader():
    """An exception class a student names like the grader's marker still has its message set apart."""
    assert (
        remote.failure({"type": GRADERS_OWN, "message": "unit 'iou' is not done yet"}) == "unit 'iou' is not done yet"
    )
    raised = remote.failure({"type": "Grader", "where": "fpnlab/model/boxes.py, line 3", "message": "[[1, 2]]"})
    assert raised == f"your code raised Grader (fpnlab/model/boxes.py, line 3){YOURS}[[1, 2]]"
