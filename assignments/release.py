"""The student release: what students get, as a folder (a repository to push, or a zip for Colab).

    README.md                 the one page for students (assignments/STUDENT.md)
    rubric.md                 how the written analysis is graded
    pyproject.toml            `pip install -e .` installs this copy of fpnlab, with otter-grader
    fpnlab/                   the lab's package, each unit's code replaced by its stub (assignments/stubs.py)
    notebooks/fpn_assignment.ipynb
    tests/<unit>.py           the visible test cases only (assignments/testfiles.py)
    data/shapes-mini/         the sample dataset the capstone trains on
    results/ablation_rpn_cpu.json    the lab's ablation, the analysis' material

Nothing else of the repository goes out: not the solution's code, not a hidden test, not instructor/.
`release_zip` packs the folder as fpn-assignment.zip (everything under fpn-assignment/).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import nbformat

from assignments.config import ASSIGNMENTS, CAPSTONE_MODEL, NOTEBOOK, REPO, SUBMITTED, UNIT_TESTS, Points
from assignments.notebook import assignment_notebook
from assignments.stubs import stub_module
from assignments.testfiles import fill_settings, seed_of, visible_only
from fpnlab.errors import FpnlabError
from fpnlab.grading import UNITS
from fpnlab.results import read_result

EXTRA_TESTS = ("capstone", "training", "analysis")  # test files beside the units' own
RESULTS = ("ablation_rpn_cpu.json",)
OTTER_REQUIREMENT = '"otter-grader>=7,<8"'
REFERENCE = "assignment_training"  # results/assignment_training.json: the training part's reference run
ZIP_FOLDER = "fpn-assignment"  # the folder a student gets when unpacking the release zip


def test_sources(points: Points, secret: str) -> dict[str, str]:
    """Every test file of the assignment, all cases, with the settings of points.toml filled in, the hidden
    cases' seeds derived from `secret`, and the training reference (results/assignment_training.json)."""
    sources = {}
    for name in [*UNITS, *EXTRA_TESTS]:
        path = UNIT_TESTS / f"{name}.py"
        if not path.is_file():
            raise FpnlabError(f"unit {name!r} has no test file {path}; every unit needs one.")
        values: dict[str, object] = (
            {"points": points.units[name], "SEED": seed_of(secret, name)} if name in UNITS else {}
        )
        if name == "capstone":
            values = {
                "points": points.capstone.points,
                "AP50": points.capstone.ap50,
                "VAL_IMAGES": points.capstone.val_images,
                "MODEL": CAPSTONE_MODEL,
            }
        if name == "training":
            values = training_settings(points)
        sources[name] = fill_settings(path.read_text(encoding="utf-8"), values, str(path))
    return sources


def training_settings(points: Points) -> dict[str, object]:
    """The training part's settings: its points and run, and the stored reference of that same run."""
    reference = read_result(REFERENCE)
    run = (points.training.iterations, points.training.images)
    if reference is None or (reference["iterations"], reference["images"]) != run:
        raise FpnlabError(
            f"results/{REFERENCE}.json does not hold the reference of a {run[0]}-iteration, {run[1]}-image run "
            "(assignments/points.toml [training]); make it with `python -m assignments.reference`."
        )
    return {
        "points": points.training.points,
        "ITERATIONS": run[0],
        "IMAGES": run[1],
        "REFERENCE_LOSSES": [round(reference["first_loss"], 6), round(reference["end_loss"], 6)],
        "REFERENCE_GRADIENTS": {part: round(value, 6) for part, value in reference["gradients"].items()},
    }


def write_release(out: Path, points: Points, tests: dict[str, str]) -> Path:
    """Write the student release into `out` (which must not exist) and return it."""
    out.mkdir(parents=True)
    shutil.copytree(REPO / "fpnlab", out / "fpnlab", ignore=shutil.ignore_patterns("__pycache__"))
    for module in sorted({unit.module for unit in UNITS.values()}):
        source = (REPO / "fpnlab" / module).read_text(encoding="utf-8")
        (out / "fpnlab" / module).write_text(stub_module(source, f"fpnlab/{module}"), encoding="utf-8")
    (out / "tests").mkdir()
    for name, source in tests.items():
        (out / "tests" / f"{name}.py").write_text(visible_only(source), encoding="utf-8")
    notebook = out / NOTEBOOK
    notebook.parent.mkdir(parents=True)
    nbformat.write(assignment_notebook(points, SUBMITTED, CAPSTONE_MODEL), notebook)
    shutil.copytree(REPO / "data" / "shapes-mini", out / "data" / "shapes-mini")
    (out / "results").mkdir()
    for name in RESULTS:
        shutil.copy2(REPO / "results" / name, out / "results" / name)
    (out / "README.md").write_text(student_readme(), encoding="utf-8")
    (out / "rubric.md").write_text(rubric(points), encoding="utf-8")
    (out / "pyproject.toml").write_text(pyproject(), encoding="utf-8")
    return out


def student_readme() -> str:
    """assignments/STUDENT.md with the measured size of a CPU-only install (results/venv_size.json)."""
    size = read_result("venv_size")
    if size is None:
        raise FpnlabError(
            "results/venv_size.json is missing; make it with `python benchmarks/venv_size.py --cpu-wheel ... --save`."
        )
    gigabytes = round(size["cpu_only_environment"] / 1e9, 1)
    return (ASSIGNMENTS / "STUDENT.md").read_text(encoding="utf-8").replace("{cpu_install_gb}", f"{gigabytes:g}")


def rubric(points: Points) -> str:
    """assignments/rubric.md with the analysis' points from points.toml."""
    return (ASSIGNMENTS / "rubric.md").read_text(encoding="utf-8").replace("{points}", f"{points.analysis:g}")


def pyproject() -> str:
    """The repository's pyproject.toml, with otter-grader among the dependencies (the tests need it)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    if "dependencies = [\n" not in text:
        raise FpnlabError("pyproject.toml has no 'dependencies = [' list to add otter-grader to.")
    return text.replace("dependencies = [\n", f"dependencies = [\n    {OTTER_REQUIREMENT},\n", 1)


def release_zip(release: Path, out: Path) -> Path:
    """The release as one zip (for Colab, or a course page), everything under fpn-assignment/."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(release.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, f"{ZIP_FOLDER}/{path.relative_to(release).as_posix()}")
    return out
