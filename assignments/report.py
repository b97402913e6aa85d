"""What a student sees of a grading, and what only the instructor does (Gradescope's results.json).

Otter's own results hold every case's message, hidden or not, with the line of the test file it came from.
`student_results` rewrites them: one visible entry per unit with its points, its visible cases' messages,
and for its hidden cases only how many pass and, for those that fail, the grader's own assertion message
(never the text of an error the student's code raised, never a test file's line, name or path); the full
detail goes to one entry hidden from students. The notes on the submission's files lead the output.
"""

from __future__ import annotations

import re
from typing import Any

# The markers of fpnlab.grading.remote.YOURS and fpnlab.grading.expect.DETAIL, spelled out: the runner imports
# neither fpnlab nor torch (tests/test_grading_rules.py checks that they agree).
YOURS = " | your code's message: "  # what follows it in a failure was written by the student's code
DETAIL = " | details: "  # what follows it holds values: shown for visible cases only
PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[\\/][\w.@~+-]+){2,}")  # an absolute path, on any system
MESSAGE_LIMIT = 600  # characters of one visible case's message


def student_results(results: Any, notes: list[str]) -> dict[str, Any]:
    """Gradescope's results.json from otter's GradingResults `results` and the submission `notes`."""
    tests, detail = [], []
    for name in results.test_files:
        test_file = results.get_result(name)
        tests.append(
            {
                "name": name,
                "score": round(test_file.score, 5),
                "max_score": round(test_file.possible, 5),
                "visibility": "visible",
                "output": unit_summary(test_file),
            }
        )
        detail.append(test_file.summary())
    tests.append({"name": "Instructor detail (every case)", "visibility": "hidden", "output": "\n\n".join(detail)})
    total = sum(test["score"] for test in tests if "score" in test)
    return {"score": round(total, 5), "output": "\n".join(notes), "stdout_visibility": "hidden", "tests": tests}


def unit_summary(test_file: Any) -> str:
    """A unit's visible cases with their messages; its hidden cases as a count and the grader's messages."""
    visible = [r for r in test_file.test_case_results if not r.test_case.hidden]
    hidden = [r for r in test_file.test_case_results if r.test_case.hidden]
    counts = f"{sum(r.passed for r in visible)} of {len(visible)} visible cases pass"
    if hidden:
        counts += f"; {sum(r.passed for r in hidden)} of {len(hidden)} hidden cases pass"
    lines = [f"{test_file.name}: {counts} ({test_file.score:g} of {test_file.possible:g} points)."]
    for result in visible:
        mark = "✓" if result.passed else "✗"
        lines.append(f"  {mark} {result.test_case.name}")
        if not result.passed:
            lines.append(f"      {visible_message(result.message)}")
    failed = [hidden_message(r.message) for r in hidden if not r.passed]
    if failed:
        lines.append("  hidden cases that fail:")
        lines += [f"      {message}" for message in failed]
    return "\n".join(lines)


def last_line(message: str | None) -> str:
    """The error line of otter's message for a failed case ("AssertionError: ..."), without the test's source."""
    lines = [line for line in (message or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def visible_message(message: str | None) -> str:
    """A visible case's failure: the grader's words, then the student's own message with paths left out."""
    text = last_line(message).removeprefix("AssertionError: ")
    return PATH.sub("<path>", text.replace(DETAIL, "; ").replace(YOURS, ": "))[:MESSAGE_LIMIT]


def hidden_message(message: str | None) -> str:
    """A hidden case's failure: only the grader's own assertion message, up to where values (DETAIL) or the
    student's text (YOURS) would begin; an error of any other kind is not described."""
    line = last_line(message)
    if not line.startswith("AssertionError: "):
        return "the case stopped with an error (its details stay hidden)."
    text = line.removeprefix("AssertionError: ").split(YOURS)[0].split(DETAIL)[0]
    return PATH.sub("<path>", text)[:MESSAGE_LIMIT]
