"""The autograder: its folder (instructors only) and the Gradescope zip that `otter generate` makes of it.

autograder/tests/<unit>.py        every case, visible and hidden; capstone.py, analysis.py
autograder/files/grade.py         what otter runs as the submission (assignments/grade.py)
autograder/files/autograde/       release/fpnlab (the student release's package, the base of grading),
                                  data/shapes-mini, assignments/ (the grading code)
autograder/otter_config.json, requirements.txt
autograder/rubric.md, model_analysis.md     for grading the written analysis by hand
autograder/solution.zip           a submission made of the solution: it must score 100%
autograder.zip                    beside the folder: upload it to Gradescope, or grade with `otter run`
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nbformat
from otter.generate import main as otter_generate
from otter.utils import chdir

from assignments.config import ASSIGNMENTS, CAPSTONE_MODEL, NOTEBOOK, REPO, SUBMITTED, Points
from assignments.release import rubric

OTTER_CONFIG = {"lang": "python", "show_stdout": True, "show_hidden": False, "print_summary": True}
PYTHON = "3.11"
REQUIREMENTS = """\
# The grading image: fpnlab's dependencies, CPU-only torch (Gradescope has no GPU).
--extra-index-url https://download.pytorch.org/whl/cpu
torch>=2.3
torchvision>=0.18
numpy>=1.24
pillow>=9.0
matplotlib>=3.7
ipywidgets>=8.0
pycocotools>=2.0.7
tqdm>=4.64
"""
GRADING_CODE = ("__init__.py", "grading.py")  # of assignments/, what grade.py imports


def write_autograder(out: Path, release: Path, points: Points, tests: dict[str, str]) -> Path:
    """Write the autograder folder into `out` from the student `release` and all `tests`; return it."""
    (out / "tests").mkdir(parents=True)
    for name, source in tests.items():
        (out / "tests" / f"{name}.py").write_text(source, encoding="utf-8")
    files = out / "files"
    files.mkdir()
    shutil.copy2(ASSIGNMENTS / "grade.py", files / "grade.py")
    shutil.copytree(release / "fpnlab", files / "autograde" / "release" / "fpnlab")
    shutil.copytree(release / "data", files / "autograde" / "data")
    (files / "autograde" / "assignments").mkdir()
    for name in GRADING_CODE:
        shutil.copy2(ASSIGNMENTS / name, files / "autograde" / "assignments" / name)
    (out / "otter_config.json").write_text(json.dumps(OTTER_CONFIG, indent=2) + "\n", encoding="utf-8")
    (out / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    (out / "rubric.md").write_text(rubric(points), encoding="utf-8")
    shutil.copy2(ASSIGNMENTS / "model_analysis.md", out / "model_analysis.md")
    solution_submission(release, out / "solution.zip")
    return out


def gradescope_zip(autograder: Path, zip_path: Path) -> Path:
    """`otter generate` on the autograder folder: the zip Gradescope builds its grading image from."""
    folder, target = autograder.resolve(), zip_path.resolve()  # otter generate runs inside files/
    with chdir(folder / "files"):
        otter_generate(
            tests_dir=str(folder / "tests"),
            output_path=str(target),
            config=str(folder / "otter_config.json"),
            requirements=str(folder / "requirements.txt"),
            no_environment=True,
            files=["grade.py", "autograde"],
            python_version=PYTHON,
        )
    return zip_path


def solution_submission(release: Path, out: Path, model: Path = REPO / "data" / "checkpoints" / "demo.pt") -> Path:
    """A submission made of the solution: the lab's own stage modules, the release's notebook with the model
    analysis in its analysis cell, and `model` (the shipped demo detector) as the capstone's model."""
    notebook = nbformat.read(release / NOTEBOOK, as_version=4)
    answer = (ASSIGNMENTS / "model_analysis.md").read_text(encoding="utf-8")
    for cell in notebook.cells:
        if "analysis" in cell.metadata.get("tags", []):
            cell.source = answer
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in SUBMITTED:
            if name.startswith("fpnlab/"):
                archive.write(REPO / name, name)
        archive.writestr(NOTEBOOK, nbformat.writes(notebook))
        archive.write(model, CAPSTONE_MODEL)
    return out
