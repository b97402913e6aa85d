"""`check("iou")` in the notebook: run a unit's visible test cases and say, in words, what is wrong.

The cases live in otter exception-style test files (the release's tests/ folder). Each builds its inputs
here, runs the student's code in a fresh process of the unit's own (fpnlab.grading.remote: the files as
they are on disk now, so no kernel restart is needed after an edit) and compares the result with
fpnlab.grading.expect, exactly as the grader does.
"""

from __future__ import annotations

import os
import textwrap
import traceback
from pathlib import Path
from typing import Any

from fpnlab.errors import FpnlabError
from fpnlab.grading import remote
from fpnlab.grading.expect import DETAIL
from fpnlab.grading.markers import PACKAGE
from fpnlab.grading.registry import UNITS


def test_file(unit: str, tests: str | Path | None = None) -> Path:
    """The otter test file of `unit`, in `tests`, else $FPNLAB_UNIT_TESTS, else the release's tests/ folder."""
    path = Path(tests or os.environ.get("FPNLAB_UNIT_TESTS") or PACKAGE.parent / "tests") / f"{unit}.py"
    if not path.is_file():
        raise FpnlabError(
            f"there is no test file {path}; the units are {', '.join(UNITS)}, with 'capstone' and 'analysis'."
        )
    return path


def load_cases(path: Path) -> list[Any]:
    """The test cases of an otter exception-style test file (its `test_case` objects), in file order."""
    env: dict[str, Any] = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), env)
    return [value for value in env.values() if hasattr(value, "test_func") and hasattr(value, "hidden")]


def explain(err: BaseException) -> str:
    """One line for a failed case: an assertion's own words, or the error and where in fpnlab it was raised."""
    if isinstance(err, AssertionError):
        return str(err).replace(DETAIL, "; ").replace(remote.YOURS, ": ")
    ours = [f for f in traceback.extract_tb(err.__traceback__) if PACKAGE in Path(f.filename).resolve().parents]
    place = (
        f" (fpnlab/{Path(ours[-1].filename).resolve().relative_to(PACKAGE).as_posix()}, line {ours[-1].lineno})"
        if ours
        else ""
    )
    return f"{type(err).__name__}: {err}{place}"


def check(unit: str, tests: str | Path | None = None) -> bool:
    """Run `unit`'s visible test cases, with its fallback off, and print which pass and, in words, what is wrong
    in the others. True when all pass."""
    cases = [case for case in load_cases(test_file(unit, tests)) if not case.hidden]
    failed = {}
    try:
        for case in cases:
            try:
                case.call_func({})
            except Exception as err:  # the student's code may raise anything: each is a finding to report
                failed[case.name] = explain(err)
        printed = remote.output(unit)
    finally:
        remote.close(unit)
    lines = [f"{unit}: {len(cases) - len(failed)} of {len(cases)} visible cases pass."]
    for case in cases:
        why = failed.get(case.name)
        lines.append(f"  ✓ {case.name}" if why is None else f"  ✗ {case.name}\n" + textwrap.indent(why, " " * 6))
    if printed:
        lines.append("What your code printed:\n" + textwrap.indent(printed.rstrip(), "  | "))
    print("\n".join(lines))
    return not failed
