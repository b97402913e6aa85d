"""What the assignment's tests share: one build per session, submissions made from the solution, grading.

`graded_units` grades some units of a submission the way the autograder does, without otter's kernel: the
upload reduced and spliced (assignments.grading.prepare_grading), each unit's test file run with otter's
own ExceptionTestFile (its messages, its points), and what a student would see of it
(assignments.report.unit_summary). `grade` is the whole autograder (assignments.runner) on one upload.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otter.test_files import ExceptionTestFile

from assignments.config import SUBMITTED
from assignments.grading import prepare_grading
from assignments.report import unit_summary
from assignments.runner import grade_locally
from fpnlab.grading import regions, remote

CAPSTONE_IMAGES = 16  # the tests score the capstone on 16 val images instead of 120: the same code path


def solution_folder(dist: Path, out: Path) -> Path:
    """The solution's submission (dist/instructor/solution.zip), unpacked into `out`."""
    with zipfile.ZipFile(dist / "instructor" / "solution.zip") as archive:
        archive.extractall(out)
    return out


def release_folder(dist: Path, out: Path) -> Path:
    """An untouched release's submission: the expected files of dist/student, as the notebook zips them."""
    for name in SUBMITTED:
        if (dist / "student" / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dist / "student" / name, out / name)
    return out


def replace_unit(folder: Path, unit_file: str, unit: str, lines: list[str]) -> None:
    """Put `lines` (as written, indentation included) between `unit`'s markers in folder/unit_file."""
    path = folder / unit_file
    source = path.read_text(encoding="utf-8").splitlines()
    begin, end = regions("\n".join(source))[unit]
    source[begin + 1 : end] = lines
    path.write_text("\n".join(source) + "\n", encoding="utf-8")


def edit(folder: Path, name: str, change: Callable[[str], str]) -> None:
    path = folder / name
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


def zip_of(folder: Path, out: Path) -> Path:
    """Every file of `folder` in a zip, paths relative to it."""
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return out


def graded_units(dist: Path, upload: Path, units: list[str], work: Path) -> dict[str, Any]:
    """{unit: (score, possible, what the student sees, otter's full messages)} for `units` of the upload."""
    autograde = work / "autograde"
    if not autograde.exists():
        with zipfile.ZipFile(dist / "autograder.zip") as archive:
            members = [name for name in archive.namelist() if name.startswith("files/autograde/")]
            archive.extractall(work / "zip", members)
        shutil.move(str(work / "zip" / "files" / "autograde"), str(autograde))
    setup, found = prepare_grading(upload, autograde, work / "graded")
    results = {}
    try:
        for unit in units:
            test_file = ExceptionTestFile.from_file(str(dist / "autograder" / "tests" / f"{unit}.py"))
            with contextlib.redirect_stdout(io.StringIO()):
                test_file.run({})
            full = "\n".join(result.message or "" for result in test_file.test_case_results)
            results[unit] = (test_file.score, test_file.possible, unit_summary(test_file), full)
    finally:
        remote.configure(None)
    results["notes"] = found.notes() + [f"{u}: {why}" for u, why in setup.not_graded.items()]
    return results


def grade(dist: Path, upload: Path) -> dict[str, Any]:
    """The whole autograder on `upload` (a zip or a folder): Gradescope's results.json as the runner writes it."""
    try:
        return grade_locally(dist / "autograder.zip", upload)
    finally:
        remote.configure(None)


def visible_text(results: dict[str, Any]) -> str:
    """Everything a student sees of a results.json."""
    parts = [results.get("output", "")] + [t["output"] for t in results["tests"] if t.get("visibility") == "visible"]
    return "\n".join(parts)
