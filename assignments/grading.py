"""Grading one submission: the student's units spliced, as statements of their functions, into the grader's
copy of the release; the units' processes import that package and nothing else of the submission.

    setup = prepare_grading(Path("upload"), Path("autograde"), Path("work"))   # also configures the grader

Only the code between each unit's markers comes from the submission, and only once it is known to be
statements inside the unit's function: no line left of the BEGIN marker, and the module's syntax tree,
that function's body aside, is the release's own (so nothing runs at import, no function or class is
added or replaced). Every other line of fpnlab, and fpnlab/grading/ whole, is the autograder's copy. A
unit that cannot be taken (its file missing, its markers gone, its code outside its function or not
compiling) keeps its stub and earns nothing, with the reason; the other units are graded as usual.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from assignments.submission import Submitted, reduce_submission
from fpnlab.errors import FpnlabError
from fpnlab.grading import UNITS, regions, remote
from fpnlab.grading.markers import outdented_line
from fpnlab.grading.process import Setup

GRADED = "graded"  # under the work folder: graded/fpnlab is the package the units' processes import
SUBMITTED_DATA = "submitted"  # the notebook and the model, as data


def prepare_grading(upload: Path, autograde: Path, work: Path) -> tuple[Setup, Submitted]:
    """Reduce the upload, build the graded package in `work`, and make `units.run` use it from now on.

    `autograde` holds the grader's copy of the release (release/fpnlab), the grading code and the data.
    """
    found = reduce_submission(upload)
    if work.exists():
        shutil.rmtree(work)
    not_graded = graded_package(found, autograde / "release" / "fpnlab", work / GRADED / "fpnlab")
    for name, data in found.files.items():
        if not name.startswith("fpnlab/"):
            (work / SUBMITTED_DATA / name).parent.mkdir(parents=True, exist_ok=True)
            (work / SUBMITTED_DATA / name).write_bytes(data)
    setup = Setup(
        package=work / GRADED,
        extra_paths=(autograde,),
        isolated=True,
        show_output=False,
        env={"FPNLAB_DATA": str(autograde / "data"), "FPNLAB_SUBMISSION": str(work / SUBMITTED_DATA)},
        not_graded=not_graded,
        order=tuple(sorted(UNITS)),  # otter runs the test files in this order
        release=autograde / "release" / "fpnlab",
    )
    remote.configure(setup)
    return setup, found


def graded_package(found: Submitted, release: Path, out: Path) -> dict[str, str]:
    """Copy the release package to `out`, each unit's code taken from the submission where it can be; returns
    the units not taken, with the reason."""
    shutil.copytree(release, out, ignore=shutil.ignore_patterns("__pycache__"))
    not_graded: dict[str, str] = {}
    for module in sorted({unit.module for unit in UNITS.values()}):
        data = found.files.get(f"fpnlab/{module}")
        try:
            source = data.decode("utf-8") if data is not None else None
        except UnicodeDecodeError:
            source = None
        text, reasons = splice((release / module).read_text(encoding="utf-8"), source, f"fpnlab/{module}")
        (out / module).write_text(text, encoding="utf-8")
        not_graded.update(reasons)
    return not_graded


def splice(release: str, student: str | None, path: str) -> tuple[str, dict[str, str]]:
    """`release` with the code of each unit replaced by the `student`'s where it can be taken; the reasons for
    the units that could not (they keep the release's stub)."""
    lines, notes = release.splitlines(), {}
    try:
        theirs = regions(student, path) if student is not None else {}
    except FpnlabError as err:  # markers broken beyond use: no unit of this file can be found
        theirs, notes = {}, {name: str(err) for name in regions(release, path)}
    student_lines = student.splitlines() if student is not None else []
    for name, (begin, end) in sorted(regions(release, path).items(), key=lambda item: -item[1][0]):
        if name in notes:
            continue
        if student is None:
            notes[name] = f"{path} is not in the submission."
            continue
        if name not in theirs:
            notes[name] = f"its markers '# BEGIN UNIT {name}' and '# END UNIT {name}' are not in the submitted {path}."
            continue
        code, reason = reindented(student_lines, theirs[name], lines[begin], path)
        candidate = lines[: begin + 1] + code + lines[end:] if reason is None else lines
        reason = reason or structure_problem("\n".join(lines) + "\n", "\n".join(candidate) + "\n", name, path)
        if reason is None:
            lines = candidate
        else:
            notes[name] = reason
    return "\n".join(lines) + "\n", notes


def reindented(lines: list[str], span: tuple[int, int], marker: str, path: str) -> tuple[list[str], str | None]:
    """The student's lines between their markers, moved from their BEGIN marker's indentation to `marker`'s;
    a reason instead when a line sits left of their marker."""
    begin, end = span
    theirs = len(lines[begin]) - len(lines[begin].lstrip())
    ours = marker[: len(marker) - len(marker.lstrip())]
    code = lines[begin + 1 : end]
    if (line := outdented_line(code, theirs)) is not None:
        return [], (
            f"line {begin + 2 + line} of the submitted {path} sits left of its '# BEGIN UNIT' marker: a unit's "
            "code is statements inside its function."
        )
    return [ours + line[theirs:] if line.strip() else "" for line in code], None


def structure_problem(release: str, candidate: str, unit: str, path: str) -> str | None:
    """None when `candidate` compiles and differs from `release` only inside `unit`'s function body."""
    try:
        compile(candidate, path, "exec")
        spliced = ast.parse(candidate)
    except SyntaxError as err:
        return f"its code does not compile ({err.msg}, line {err.lineno} of the graded {path})."
    original = ast.parse(release)
    qualname = UNITS[unit].function
    if not (_empty_body(original, qualname) and _empty_body(spliced, qualname)):
        return f"its code changes what surrounds {qualname} in {path}: a unit's code is statements inside it."
    if ast.dump(original) != ast.dump(spliced):
        return f"its code reaches outside {qualname} in {path}: a unit's code is statements inside its function."
    return None


def _empty_body(tree: ast.Module, qualname: str) -> bool:
    """Replace the body of the function `qualname` (Class.method) in `tree` by `pass`; False when not found."""
    scope: list[ast.stmt] = tree.body
    *classes, function = qualname.split(".")
    for name in classes:
        found = [node for node in scope if isinstance(node, ast.ClassDef) and node.name == name]
        if len(found) != 1:
            return False
        scope = found[0].body
    found_functions = [node for node in scope if isinstance(node, ast.FunctionDef) and node.name == function]
    if len(found_functions) != 1:
        return False
    found_functions[0].body = [ast.Pass()]
    return True


def paste_unit(target: str, source: str, unit: str) -> str:
    """`target` (a module's text) with the code of `unit` taken from `source` (another version of it)."""
    target_lines, source_lines = target.splitlines(), source.splitlines()
    (begin, end), (s_begin, s_end) = regions(target)[unit], regions(source)[unit]
    return "\n".join(target_lines[: begin + 1] + source_lines[s_begin + 1 : s_end] + target_lines[end:]) + "\n"
