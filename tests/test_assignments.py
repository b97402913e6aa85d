"""The graded assignment (issue 16), end to end: build, release contents, feedback, grading with otter.

One build into a temporary folder serves every test. It uses a copy of assignments/points.toml whose
capstone is scored on 16 val images instead of 120 (the same code path, a smaller sample), and the
capstone's model is the shipped demo detector (data/checkpoints/demo.pt: the cpu preset's detector,
trained longer), which assignments/autograder.py puts into the solution's submission: CI trains nothing.

  * the release holds no line of solution code, no hidden case, no instructor file;
  * the Gradescope zip is built, with the tests, grade.py and the grading code;
  * grading takes only the code between a submission's markers, and says why when it cannot;
  * `otter run` grades, with every unit and the capstone: the solution (100%), the untouched release
    (0 on every unit, no crash), the solution with unit 'iou' broken on purpose (exactly iou's points lost:
    'nms' and 'rpn_loss', which call it, keep theirs);
  * each unit alone, solved in an otherwise untouched release, passes all its cases, visible and hidden:
    no unit's grade depends on another unit (one subprocess runs them all, without otter);
  * `check` says in words what is wrong, and points.toml mistakes stop the build with one line.

About 50 s on 2 idle cores (75 s beside other jobs), most of it the three gradings (a Jupyter kernel each).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nbformat
import pytest

from assignments.config import POINTS, REPO, SUBMITTED, read_points
from assignments.grading import paste_unit, splice
from assignments.testfiles import case_names
from fpnlab.errors import FpnlabError
from fpnlab.grading import UNITS, regions

with warnings.catch_warnings():  # otter's imports warn about traitlets' deprecated style, which is not ours
    warnings.filterwarnings("ignore", "Traits should be given as instances", DeprecationWarning)
    from otter.run import main as otter_run

    from assignments.build import build

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop")  # otter run's summary
CAPSTONE_IMAGES = 16
BROKEN = "iou"
WORKER = r"""
import contextlib, io, json, os, sys
from pathlib import Path
os.environ["FPNLAB_UNITS_FALLBACK"] = "0"
results = {}
for job in json.loads(sys.argv[1]):
    for name in [m for m in sys.modules if m == "fpnlab" or m.startswith("fpnlab.")]:
        del sys.modules[name]
    sys.path.insert(0, job["package"])
    from fpnlab import grading as units
    if job["mode"] == "check":
        with contextlib.redirect_stdout(io.StringIO()) as out:
            units.check(job["unit"], job["tests"])
        results[job["name"]] = out.getvalue()
    else:
        failed = []
        for case in units.load_cases(Path(job["tests"]) / f"{job['unit']}.py"):
            try:
                case.call_func({})
            except Exception as err:
                failed.append(f"{case.name}: {units.explain(err)}")
        results[job["name"]] = failed
    sys.path.pop(0)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assignment")
    points = POINTS.read_text(encoding="utf-8").replace("val_images = 120", f"val_images = {CAPSTONE_IMAGES}")
    assert f"val_images = {CAPSTONE_IMAGES}" in points
    (folder / "points.toml").write_text(points, encoding="utf-8")
    build(folder / "dist", folder / "points.toml")
    return folder / "dist"


def grade(dist: Path, submission: Path):
    """`otter run` of one submission with the built autograder zip: otter's GradingResults."""
    with contextlib.redirect_stdout(io.StringIO()):
        return otter_run(str(submission), autograder=str(dist / "autograder.zip"), output_dir=None, no_logo=True)


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


def zip_folder(root: Path, out: Path, names: tuple[str, ...] = SUBMITTED) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            if (root / name).is_file():
                archive.write(root / name, name)
    return out


# --- the release ------------------------------------------------------------------------------------------


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


def test_release_holds_no_hidden_case_and_no_instructor_file(dist):
    student, autograder = dist / "student", dist / "autograder"
    for name in [*UNITS, "capstone", "analysis"]:
        full = (autograder / "tests" / f"{name}.py").read_text(encoding="utf-8")
        visible = (student / "tests" / f"{name}.py").read_text(encoding="utf-8")
        assert "hidden=True" not in visible and case_names(visible, hidden=True) == []
        assert case_names(visible, hidden=False) == case_names(full, hidden=False) != []
        assert not any(f"def {case}(" in visible for case in case_names(full, hidden=True)), name
    hidden_cases = sum(len(case_names((autograder / "tests" / f"{u}.py").read_text(), hidden=True)) for u in UNITS)
    assert hidden_cases >= 2 * len(UNITS)
    with zipfile.ZipFile(dist / "fpn-assignment.zip") as archive:  # the same release, as one zip
        assert sorted(archive.namelist()) == sorted(
            f"fpn-assignment/{p.relative_to(student).as_posix()}" for p in student.rglob("*") if p.is_file()
        )
    names = {path.name for path in student.rglob("*")}
    assert not names & {"answers.md", "model_analysis.md", "solution.zip", "grade.py", "grading.py", "points.toml"}
    assert {"README.md", "rubric.md", "pyproject.toml", "registry.py", "fpn_assignment.ipynb", "train.json"} <= names


def test_stubs_keep_signature_and_docstring_and_run_the_fallback(dist):
    stubbed = (dist / "student" / "fpnlab" / "model" / "boxes.py").read_text(encoding="utf-8")
    tree = ast.parse(stubbed)
    iou = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "_iou")
    assert [a.arg for a in iou.args.args] == ["boxes1", "boxes2"] and "(N, M)" in ast.get_docstring(iou)
    assert 'return units.todo("iou", boxes1, boxes2)' in stubbed and "from fpnlab import grading as units" in stubbed
    assert "#   (N, M, 2)" in stubbed  # the lab's shape comments stay as hints


def test_gradescope_zip_holds_tests_grading_code_and_release(dist):
    with zipfile.ZipFile(dist / "autograder.zip") as archive:
        names = set(archive.namelist())
    assert {f"tests/{u}.py" for u in [*UNITS, "capstone", "analysis"]} <= names
    assert {
        "files/grade.py",
        "files/autograde/assignments/grading.py",
        "files/autograde/release/fpnlab/grading/registry.py",
        "files/autograde/data/shapes-mini/val.json",
        "otter_config.json",
        "environment.yml",
        "run_autograder",
        "setup.sh",
    } <= names


def test_points_file_mistakes_stop_the_build(tmp_path):
    points = tmp_path / "points.toml"
    points.write_text(POINTS.read_text(encoding="utf-8").replace("\niou = 2\n", "\nious = 2\n"), encoding="utf-8")
    with pytest.raises(FpnlabError, match="missing: iou; unknown: ious"):
        read_points(points)
    points.write_text(POINTS.read_text(encoding="utf-8").replace("ap50 = 0.20", "ap50 = 20"), encoding="utf-8")
    with pytest.raises(FpnlabError, match="capstone.ap50"):
        read_points(points)


def test_grading_takes_only_the_units_code_and_says_why_not(dist):
    release = (dist / "student" / "fpnlab" / "model" / "levels.py").read_text(encoding="utf-8")
    solution = (REPO / "fpnlab" / "model" / "levels.py").read_text(encoding="utf-8")
    tampered = solution.replace("LEVEL_EPS = 1e-6", "LEVEL_EPS = 0.5  # outside the markers: ignored")
    graded, notes = splice(release, tampered, "fpnlab/model/levels.py")
    assert notes == {} and "LEVEL_EPS = 1e-6" in graded and "scale = torch.sqrt(box_area(boxes))" in graded
    assert 'if units.stand_in("assign_levels")' in graded  # the release's guard stays
    broken = solution.replace("scale = torch.sqrt(box_area(boxes))", "scale = torch.sqrt(box_area(boxes)")
    graded, notes = splice(release, broken, "fpnlab/model/levels.py")
    assert "does not compile" in notes["assign_levels"] and "raise NotImplementedError(" in graded
    compile(graded, "levels.py", "exec")
    half_marked = solution.replace("# BEGIN UNIT assign_levels", "")
    assert "has no '# BEGIN UNIT" in splice(release, half_marked, "fpnlab/model/levels.py")[1]["assign_levels"]
    unmarked = half_marked.replace("# END UNIT assign_levels", "")
    assert "markers" in splice(release, unmarked, "fpnlab/model/levels.py")[1]["assign_levels"]
    assert "not in the submission" in splice(release, None, "fpnlab/model/levels.py")[1]["assign_levels"]


# --- units on their own, and check() ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_results(dist, tmp_path_factory):
    """One subprocess: every unit alone solved in the release, with all its cases; check() on two releases."""
    root, release = tmp_path_factory.mktemp("units"), dist / "student"
    jobs = []
    for unit, found in UNITS.items():
        shutil.copytree(release / "fpnlab", root / unit / "fpnlab", ignore=shutil.ignore_patterns("__pycache__"))
        path = root / unit / "fpnlab" / found.module
        solution = (REPO / "fpnlab" / found.module).read_text(encoding="utf-8")
        path.write_text(paste_unit(path.read_text(encoding="utf-8"), solution, unit), encoding="utf-8")
        jobs.append(
            {
                "name": unit,
                "package": str(root / unit),
                "unit": unit,
                "mode": "all",
                "tests": str(dist / "autograder" / "tests"),
            }
        )
    wrong = root / "wrong_iou"
    shutil.copytree(root / "iou", wrong)
    boxes = wrong / "fpnlab" / "model" / "boxes.py"
    boxes.write_text(boxes.read_text().replace("area2[None, :] - inter)", "area2[None, :])"), encoding="utf-8")
    for name, package in (("check untouched", release), ("check wrong", wrong)):
        jobs.append(
            {"name": name, "package": str(package), "unit": "iou", "mode": "check", "tests": str(release / "tests")}
        )
    done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(jobs)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_each_unit_alone_passes_all_its_cases(worker_results):
    assert {unit: worker_results[unit] for unit in UNITS if worker_results[unit]} == {}


def test_check_says_in_words_what_is_wrong(worker_results):
    untouched, wrong = worker_results["check untouched"], worker_results["check wrong"]
    assert untouched.startswith("iou: 0 of 2 visible cases pass.")
    assert (
        "unit 'iou' is not done yet: write the body of _iou in fpnlab/model/boxes.py (notebook section 0.2" in untouched
    )
    assert wrong.startswith("iou: 0 of 2 visible cases pass.") and "✗ by hand" in wrong
    assert (
        "IoU of [0, 0, 2, 2] with three boxes: 2 of 3 values differ by more than a relative 0.0001; the worst, "
        "at [0, 1]: got 0.5, expected 1."
    ) in wrong, wrong


# --- grading with otter -----------------------------------------------------------------------------------


def test_solution_grades_full_marks(dist):
    results = grade(dist, dist / "autograder" / "solution.zip")
    points = read_points(dist.parent / "points.toml")
    assert (results.total, results.possible) == (points.autograded, points.autograded)


def test_untouched_release_grades_zero_on_every_unit(dist, tmp_path):
    results = grade(dist, zip_folder(dist / "student", tmp_path / "untouched.zip"))
    assert {name: results.get_score(name) for name in [*UNITS, "capstone"]} == dict.fromkeys([*UNITS, "capstone"], 0)
    assert results.possible == read_points(dist.parent / "points.toml").autograded


def test_one_broken_unit_loses_exactly_its_points(dist, tmp_path):
    submission = tmp_path / "submission"
    with zipfile.ZipFile(dist / "autograder" / "solution.zip") as archive:
        archive.extractall(submission)
    boxes = submission / "fpnlab" / "model" / "boxes.py"
    source = boxes.read_text(encoding="utf-8")
    begin, end = regions(source)[BROKEN]
    lines = source.splitlines()
    lines[begin + 1 : end] = ['    raise RuntimeError("broken on purpose")']
    boxes.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = grade(dist, zip_folder(submission, tmp_path / "broken.zip"))
    points = read_points(dist.parent / "points.toml")
    assert results.get_score(BROKEN) == 0
    assert results.total == pytest.approx(points.autograded - points.units[BROKEN])
