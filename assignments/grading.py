"""Grading one submission: the package the tests import is the release with the student's units spliced in.

Only the code between each unit's markers comes from the submission; every other line of fpnlab, and
fpnlab/grading/ (the switch, `refusal`, the comparisons) whole, is the autograder's own copy of the
student release. So nothing outside the units can be changed to pass a test, and the guards that let
torchvision stand in for the other units while one is graded are always there.

A unit that cannot be taken (its file is not in the submission, its markers are gone, its code does not
compile) keeps a line that raises NotImplementedError saying why: that unit earns nothing, the others
are graded as usual.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

from fpnlab.errors import FpnlabError
from fpnlab.grading import UNITS, regions

GRADED = "graded"  # beside the submission folder: graded/fpnlab is what the tests import


def prepare_grading(submission: Path, autograde: Path) -> dict[str, str]:
    """Build the graded package from `submission` and make the tests import it, with fallbacks off.

    `autograde` holds the autograder's copy of the release (release/fpnlab) and shapes-mini (data/).
    Returns the units not taken from the submission, with the reason.
    """
    root = student_root(submission)
    graded = submission.parent / GRADED
    if graded.exists():
        shutil.rmtree(graded)
    notes = graded_package(root / "fpnlab", autograde / "release" / "fpnlab", graded / "fpnlab")
    os.environ.update(FPNLAB_UNITS_FALLBACK="0", FPNLAB_SUBMISSION=str(root), FPNLAB_DATA=str(autograde / "data"))
    for name in [name for name in sys.modules if name == "fpnlab" or name.startswith("fpnlab.")]:
        del sys.modules[name]  # the release's fpnlab, imported to build this, makes way for the graded one
    sys.path.insert(0, str(graded))
    importlib.invalidate_caches()
    for unit, reason in notes.items():
        print(f"unit {unit!r} not graded: {reason}")
    return notes


def student_root(submission: Path) -> Path:
    """The folder holding the student's fpnlab/: the submission, or the one folder inside it that does (a zip
    of the release's folder); a zip still packed (an upload Gradescope did not unpack) is unpacked first."""
    if not (submission / "fpnlab").is_dir():
        for archive in sorted(submission.glob("*.zip")):
            with zipfile.ZipFile(archive) as packed:
                packed.extractall(submission)
    inner = [path.parent for path in submission.glob("*/fpnlab") if path.is_dir()]
    return inner[0] if not (submission / "fpnlab").is_dir() and len(inner) == 1 else submission


def graded_package(student: Path, release: Path, out: Path) -> dict[str, str]:
    """Copy the release package to `out`, each unit's code taken from the `student` package where it can be."""
    shutil.copytree(release, out, ignore=shutil.ignore_patterns("__pycache__"))
    notes: dict[str, str] = {}
    for module in sorted({unit.module for unit in UNITS.values()}):
        path = student / module
        try:
            source = path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError):
            source = None
        text, missing = splice((release / module).read_text(encoding="utf-8"), source, f"fpnlab/{module}")
        (out / module).write_text(text, encoding="utf-8")
        notes.update(missing)
    return notes


def splice(release: str, student: str | None, path: str) -> tuple[str, dict[str, str]]:
    """`release` with the code of each unit replaced by the `student`'s; for the units that could not be taken,
    a raising line and the reason."""
    lines, notes = release.splitlines(), {}
    try:
        theirs = regions(student, path) if student is not None else {}
    except FpnlabError as err:  # markers broken beyond use: no unit of this file can be found
        theirs, notes = {}, {name: str(err) for name in regions(release, path)}
    student_lines = student.splitlines() if student is not None else []
    for name, (begin, end) in sorted(regions(release, path).items(), key=lambda item: -item[1][0]):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        code = student_lines[theirs[name][0] + 1 : theirs[name][1]] if name in theirs else None
        reason = notes.get(name) or why_not(name, code, lines, (begin, end), path, student is None)
        if reason is None:
            lines[begin + 1 : end] = code
        else:
            notes[name] = reason
            lines[begin + 1 : end] = [
                f"{indent}raise NotImplementedError({f'unit {name!r} was not graded: {reason}'!r})"
            ]
    return "\n".join(lines) + "\n", notes


def paste_unit(target: str, source: str, unit: str) -> str:
    """`target` (a module's text) with the code of `unit` taken from `source` (another version of it)."""
    target_lines, source_lines = target.splitlines(), source.splitlines()
    (begin, end), (s_begin, s_end) = regions(target)[unit], regions(source)[unit]
    return "\n".join(target_lines[: begin + 1] + source_lines[s_begin + 1 : s_end] + target_lines[end:]) + "\n"


def why_not(
    name: str, code: list[str] | None, lines: list[str], span: tuple[int, int], path: str, no_file: bool
) -> str | None:
    """Why the student's `code` for unit `name` cannot go into the release's `lines`, or None when it can."""
    if no_file:
        return f"{path} is not in the submission."
    if code is None:
        return f"its markers '# BEGIN UNIT {name}' and '# END UNIT {name}' are not in the submitted {path}."
    candidate = lines[: span[0] + 1] + code + lines[span[1] :]
    try:
        compile("\n".join(candidate) + "\n", path, "exec")
    except SyntaxError as err:
        return f"its code does not compile ({err.msg}, line {err.lineno} of the graded {path})."
    return None
