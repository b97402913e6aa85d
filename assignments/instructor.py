"""The instructor's folder (dist/instructor/): everything a student must not see, apart from their release.

    answers.md          worked answers to the lab notebooks' exercises (instructor/answers.md)
    rubric.md           how the written analysis is graded (its points from points.toml)
    model_analysis.md   a model answer to the analysis
    solution.zip        a submission made of the solution: it must score full marks
    grading_report.md   what is graded: every unit's cases, visible and hidden, their points, the capstone

The public lab is the reference solution itself; what keeps grades honest is this folder, the autograder
and the secret the hidden cases' seeds come from (assignments/README.md).
"""

from __future__ import annotations

import ast
import shutil
import zipfile
from pathlib import Path

import nbformat

from assignments.config import ASSIGNMENTS, CAPSTONE_MODEL, NOTEBOOK, REPO, SUBMITTED, Points
from assignments.release import rubric
from assignments.testfiles import case_names
from fpnlab.grading import UNITS

DEMO_MODEL = REPO / "data" / "checkpoints" / "demo.pt"


def write_instructor(out: Path, release: Path, points: Points, tests: dict[str, str], default_secret: bool) -> Path:
    """Write the instructor's folder into `out` (which must not exist) and return it."""
    out.mkdir(parents=True)
    shutil.copy2(REPO / "instructor" / "answers.md", out / "answers.md")
    (out / "rubric.md").write_text(rubric(points), encoding="utf-8")
    shutil.copy2(ASSIGNMENTS / "model_analysis.md", out / "model_analysis.md")
    solution_submission(release, out / "solution.zip")
    (out / "grading_report.md").write_text(grading_report(points, tests, default_secret), encoding="utf-8")
    return out


def solution_submission(release: Path, out: Path, model: Path = DEMO_MODEL) -> Path:
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


def case_titles(source: str, hidden: bool) -> list[str]:
    """The `name=` of each visible (or hidden) case of a test file, in file order."""
    wanted = set(case_names(source, hidden))
    titles = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            call = node.decorator_list[0]
            keyword = next((k for k in getattr(call, "keywords", []) if k.arg == "name"), None)
            titles.append(keyword.value.value if keyword is not None else node.name)
    return titles


def grading_report(points: Points, tests: dict[str, str], default_secret: bool) -> str:
    """The grading plan: each unit's points and cases (a unit's points are split evenly over its cases)."""
    secret = (
        "the public default secret: **set SECRET for a course** (`make assignments SECRET=...`)"
        if default_secret
        else "the instructor's SECRET (not stored here)"
    )
    lines = [
        "# Grading report (instructors only)",
        "",
        f"Autograded: {points.autograded:g} points; the written analysis: {points.analysis:g} by hand. "
        f"Hidden cases' random draws come from {secret}.",
        "",
        "| unit | points | visible cases | hidden cases |",
        "|---|---|---|---|",
    ]
    for unit in UNITS:
        visible, hidden = case_titles(tests[unit], False), case_titles(tests[unit], True)
        lines.append(f"| `{unit}` | {points.units[unit]:g} | {'<br>'.join(visible)} | {'<br>'.join(hidden)} |")
    lines += [
        "",
        f"* **capstone** ({points.capstone.points:g}): the submitted model reaches AP50 >= {points.capstone.ap50:g} on "
        f"{points.capstone.val_images} shapes-mini val images, its detections made by the student's units.",
        f"* **training** ({points.training.points:g}): {points.training.iterations} fixed-seed iterations of the "
        f"student's units on {points.training.images} images: finite gradients in every part, the loss falling as "
        "the lab's (results/assignment_training.json).",
        "* **analysis** (0, a check only): the notebook's analysis cell is written; graded by hand with rubric.md.",
    ]
    return "\n".join(lines) + "\n"
