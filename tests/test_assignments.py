"""The graded assignment (issues 16 and 24), end to end: build, release contents, grading.

One build per session (tests/conftest.py `dist`, with a secret of its own) serves every test. Its capstone
is scored on 16 val images instead of 120 (the same code path), and the capstone's model is the shipped demo
detector (data/checkpoints/demo.pt), which the build puts into the solution's submission: CI trains nothing.

  * the release holds no line of solution code, no hidden case, no hidden seed, no instructor file;
  * the Gradescope zip is built with the tests, grade.py, the grading code, and a lean image (no browser,
    CPU-only torch); the instructor folder holds what students must not see;
  * the whole autograder (assignments.runner) grades the solution 67/67 and the untouched release 0 on
    every unit; a submission whose training units are broken fails the capstone's training part;
  * `check` says in words what is wrong, and points.toml mistakes stop the build with one line.

tests/test_cheats.py tries to get points without the work. About 3 minutes on 2 idle cores, most of it
the solution's grading (a fresh process per unit, and the training run).
"""

from __future__ import annotations

import ast
import json
import shutil
import zipfile

import nbformat
import pytest

from assignments.config import POINTS, REPO, read_points
from assignments.grading import paste_unit
from assignments.testfiles import case_names, seed_of
from fpnlab.errors import FpnlabError
from fpnlab.grading import UNITS, check, regions, remote
from fpnlab.grading.process import Setup
from tests.assignment_support import grade, graded_units, release_folder, replace_unit, solution_folder, visible_text
from tests.conftest import SECRET

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop")  # otter's summary
TRAINING_UNITS = ("encode", "matcher", "sampler", "rpn_loss", "roi_loss")


def code_lines(source: str) -> set[str]:
    """The lines of `source` that hold code, without comments and indentation."""
    return {
        line.split("  #")[0].strip()
        for line in source.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }


def solution_code() -> tuple[set[str], set[str]]:
    """Code lines inside the units' markers in the lab, and code lines of the lab outside them."""
    inside, outside = set(), set()
    for path in sorted((REPO / "fpnlab").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        spans = regions("\n".join(lines), str(path)).values()
        marked = {i for begin, end in spans for i in range(begin + 1, end)}
        inside |= code_lines("\n".join(line for i, line in enumerate(lines) if i in marked))
        outside |= code_lines("\n".join(line for i, line in enumerate(lines) if i not in marked))
    return inside, outside


# --- the release, the autograder, the instructor's folder -----------------------------------------------


def test_release_holds_no_solution_code(dist):
    inside, outside = solution_code()
    solution_only = {line for line in inside - outside if len(line) > 8}
    assert len(solution_only) > 100  # the check has something to find
    leaked = []
    for path in sorted((dist / "student").rglob("*")):
        if path.suffix in (".py", ".ipynb", ".md", ".toml"):
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".ipynb":
                text = "\n".join(cell["source"] for cell in nbformat.reads(text, as_version=4).cells)
            leaked += [f"{path.relative_to(dist)}: {line}" for line in sorted(code_lines(text) & solution_only)]
    assert leaked == []


def test_release_holds_no_hidden_case_no_hidden_seed_and_no_instructor_file(dist):
    student, autograder = dist / "student", dist / "autograder"
    for name in [*UNITS, "capstone", "training", "analysis"]:
        full = (autograder / "tests" / f"{name}.py").read_text(encoding="utf-8")
        visible = (student / "tests" / f"{name}.py").read_text(encoding="utf-8")
        assert "hidden=True" not in visible and case_names(visible, hidden=True) == []
        assert case_names(visible, hidden=False) == case_names(full, hidden=False) != []
        assert not any(f"def {case}(" in visible for case in case_names(full, hidden=True)), name
        assert "SEED" not in visible, name  # the hidden draws' seed stays with the autograder
        if name in UNITS:  # ...which holds the one derived from the build's secret
            assert f"SEED = {seed_of(SECRET, name)}  #" in full and seed_of(SECRET, name) != seed_of("other", name)
    hidden_cases = sum(len(case_names((autograder / "tests" / f"{u}.py").read_text(), hidden=True)) for u in UNITS)
    assert hidden_cases >= 2 * len(UNITS)
    with zipfile.ZipFile(dist / "fpn-assignment.zip") as archive:  # the same release, as one zip
        assert sorted(archive.namelist()) == sorted(
            f"fpn-assignment/{p.relative_to(student).as_posix()}" for p in student.rglob("*") if p.is_file()
        )
    names = {path.name for path in student.rglob("*")}
    assert not names & {"answers.md", "model_analysis.md", "solution.zip", "grade.py", "grading.py", "points.toml"}
    assert {"README.md", "rubric.md", "pyproject.toml", "registry.py", "fpn_assignment.ipynb", "train.json"} <= names
    instructor = {path.name for path in (dist / "instructor").iterdir()}
    assert instructor == {"answers.md", "rubric.md", "model_analysis.md", "solution.zip", "grading_report.md"}
    report = (dist / "instructor" / "grading_report.md").read_text(encoding="utf-8")
    assert "float64 boxes against torchvision" in report and "the instructor's SECRET" in report


def test_stubs_keep_signature_and_docstring_and_run_the_fallback(dist):
    stubbed = (dist / "student" / "fpnlab" / "model" / "boxes.py").read_text(encoding="utf-8")
    tree = ast.parse(stubbed)
    iou = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "_iou")
    assert [a.arg for a in iou.args.args] == ["boxes1", "boxes2"] and "(N, M)" in ast.get_docstring(iou)
    assert 'return units.todo("iou", boxes1, boxes2)' in stubbed and "from fpnlab import grading as units" in stubbed
    assert "#   (N, M, 2)" in stubbed  # the lab's shape comments stay as hints


def test_gradescope_zip_holds_the_grader_and_a_lean_image(dist):
    with zipfile.ZipFile(dist / "autograder.zip") as archive:
        names = set(archive.namelist())
        setup, run = archive.read("setup.sh").decode(), archive.read("run_autograder").decode()
        config = json.loads(archive.read("otter_config.json"))
    assert {f"tests/{u}.py" for u in [*UNITS, "capstone", "training", "analysis"]} <= names
    assert {
        "files/grade.py",
        "files/autograde/assignments/grading.py",
        "files/autograde/assignments/runner.py",
        "files/autograde/release/fpnlab/grading/worker.py",
        "files/autograde/data/shapes-mini/val.json",
        "otter_config.json",
        "run_autograder",
        "setup.sh",
    } <= names
    assert not any("solution" in name or "instructor" in name for name in names)
    assert "playwright" not in setup and "chromium" not in setup and "texlive" not in setup
    assert "download.pytorch.org/whl/cpu" in setup and "assignments.runner --gradescope" in run
    assert config["show_stdout"] is False and config["show_hidden"] is False


def test_points_file_mistakes_stop_the_build(tmp_path):
    points = tmp_path / "points.toml"
    points.write_text(POINTS.read_text(encoding="utf-8").replace("\niou = 2\n", "\nious = 2\n"), encoding="utf-8")
    with pytest.raises(FpnlabError, match="missing: iou; unknown: ious"):
        read_points(points)
    points.write_text(POINTS.read_text(encoding="utf-8").replace("ap50 = 0.20", "ap50 = 20"), encoding="utf-8")
    with pytest.raises(FpnlabError, match="capstone.ap50"):
        read_points(points)
    points.write_text(POINTS.read_text(encoding="utf-8").replace("iterations = 40", "iterations = 0"), encoding="utf-8")
    with pytest.raises(FpnlabError, match="training.iterations"):
        read_points(points)


# --- check() in the notebook -----------------------------------------------------------------------------


def test_check_says_in_words_what_is_wrong(dist, tmp_path, capsys):
    release = tmp_path / "release"
    shutil.copytree(dist / "student" / "fpnlab", release / "fpnlab")  # a student's copy, edited as they go
    remote.configure(Setup(package=release))
    try:
        assert not check("iou", tests=dist / "student" / "tests")
        untouched = capsys.readouterr().out
        boxes = release / "fpnlab" / "model" / "boxes.py"
        solution = (REPO / "fpnlab" / "model" / "boxes.py").read_text(encoding="utf-8")
        wrong = paste_unit(boxes.read_text(encoding="utf-8"), solution, "iou").replace(
            "area2[None, :] - inter)", "area2[None, :])"
        )
        boxes.write_text(
            wrong.replace("    inter = wh[..", '    print("debugging")\n    inter = wh[..'), encoding="utf-8"
        )
        assert not check("iou", tests=dist / "student" / "tests")  # the edit counts at once: no kernel restart
        wrong_text = capsys.readouterr().out
    finally:
        remote.configure(None)
    assert untouched.startswith("iou: 0 of 2 visible cases pass.")
    assert "unit 'iou' is not done yet: write the body of _iou in fpnlab/model/boxes.py (notebook section 0.2" in (
        untouched
    )
    assert wrong_text.startswith("iou: 0 of 2 visible cases pass.") and "✗ by hand" in wrong_text
    assert "What your code printed:\n  | debugging" in wrong_text
    assert (
        "IoU of [0, 0, 2, 2] with three boxes: 2 of 3 values differ by more than a relative 0.0001; the worst, "
        "at [0, 1]: got 0.5, expected 1."
    ) in wrong_text, wrong_text


# --- grading ----------------------------------------------------------------------------------------------


def test_solution_grades_full_marks(dist, solution_results):
    points = read_points(dist.parent / "points.toml")
    assert solution_results["score"] == pytest.approx(points.autograded) == 67
    scores = {t["name"]: (t["score"], t["max_score"]) for t in solution_results["tests"] if "score" in t}
    assert {name: got for name, (got, most) in scores.items() if got != most} == {}
    assert set(scores) == {*UNITS, "capstone", "training", "analysis"}
    assert solution_results["output"] == "" and solution_results["stdout_visibility"] == "hidden"


def test_untouched_release_grades_zero_on_every_unit(dist, tmp_path):
    results = grade(dist, release_folder(dist, tmp_path / "untouched"))
    scores = {t["name"]: t["score"] for t in results["tests"] if "score" in t}
    assert scores == dict.fromkeys([*UNITS, "capstone", "training", "analysis"], 0)
    assert "iou: 0 of 2 visible cases pass; 0 of 3 hidden cases pass" in visible_text(results)
    assert "unit 'iou' is not done yet" in visible_text(results)


def test_broken_training_units_fail_the_training_part(dist, tmp_path):
    upload = solution_folder(dist, tmp_path / "upload")
    for unit in TRAINING_UNITS:
        replace_unit(upload, f"fpnlab/{UNITS[unit].module}", unit, ['        raise RuntimeError("broken on purpose")'])
    results = graded_units(dist, upload, ["training", "iou"], tmp_path / "work")
    assert results["training"][:2] == (0, 5) and results["iou"][:2] == (2, 2)
    assert "broken on purpose" in results["training"][2]  # a visible case: the student's own message shows


def test_an_epsilon_free_assign_levels_fails_the_boundary_cases(dist, tmp_path):
    upload = solution_folder(dist, tmp_path / "upload")
    path = upload / "fpnlab" / "model" / "levels.py"
    text = path.read_text(encoding="utf-8")
    assert "k = torch.floor(k + torch.tensor(LEVEL_EPS, dtype=k.dtype))" in text
    path.write_text(text.replace("torch.floor(k + torch.tensor(LEVEL_EPS, dtype=k.dtype))", "torch.floor(k)"))
    score, possible, seen, full = graded_units(dist, upload, ["assign_levels"], tmp_path / "work")["assign_levels"]
    assert possible == pytest.approx(2) and score == pytest.approx(2 * 5 / 6)  # all but the boundary case pass
    assert "levels of boxes on the boundaries" in full and "hidden cases that fail" in seen
