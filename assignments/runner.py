"""Run the autograder on one submission: on Gradescope (its run_autograder calls this) or locally.

    python -m assignments.runner dist/autograder.zip submission.zip [--out graded/alice]   # locally
    python -m assignments.runner --gradescope                                             # in the image

First the upload is moved out of the folder otter executes (autograder/submission/ -> autograder/upload/),
so otter's kernel runs the grader's grade.py and nothing of the student's: not a notebook put at the top
of the zip, not a module named like one the grader imports. grade.py reads the upload as data
(assignments.submission) and each unit runs in a process of its own (fpnlab.grading.remote). Then
otter grades, and its results.json is rewritten for what students may see (assignments.report).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import dill
from otter.run.run_autograder import main as otter_main

from assignments.layout import NOTES, UPLOAD
from assignments.report import student_results

GRADESCOPE = Path("/autograder")


def quarantine(autograder: Path) -> None:
    """Move everything the student uploaded from submission/ to upload/, leaving submission/ empty."""
    submission, upload = autograder / "submission", autograder / UPLOAD
    upload.mkdir(exist_ok=True)
    for path in list(submission.iterdir()) if submission.is_dir() else []:
        shutil.move(str(path), str(upload / path.name))
    submission.mkdir(exist_ok=True)


def grade(autograder: Path, otter_run: bool) -> dict:
    """Quarantine the upload, run otter's autograder, rewrite results/results.json; returns what it holds."""
    quarantine(autograder)
    (autograder / "results").mkdir(exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # otter's own summary: every case, hidden ones too
        otter_main(str(autograder), otter_run=otter_run, logo=False)
    with open(autograder / "results" / "results.pkl", "rb") as handle:
        results = dill.load(handle)  # written by otter's runner from the grader's own kernel
    notes_path = autograder / "results" / NOTES
    notes = json.loads(notes_path.read_text(encoding="utf-8")) if notes_path.is_file() else []
    output = student_results(results, notes)
    (autograder / "results" / "results.json").write_text(json.dumps(output, indent=2), encoding="utf-8")
    return output


def grade_locally(autograder_zip: Path, submission: Path) -> dict:
    """Grade `submission` (a zip or a folder) with `autograder_zip` in a temporary copy of Gradescope's layout."""
    with tempfile.TemporaryDirectory(prefix="fpnlab-grade-") as tmp:
        root = Path(tmp) / "autograder"
        for folder in ("source", "submission", "results"):
            (root / folder).mkdir(parents=True)
        (root / "submission_metadata.json").write_text("{}", encoding="utf-8")
        with zipfile.ZipFile(autograder_zip) as archive:
            archive.extractall(root / "source")
        if submission.is_dir():
            shutil.copytree(submission, root / "submission", dirs_exist_ok=True)
        else:
            shutil.copy2(submission, root / "submission" / submission.name)  # as Gradescope keeps an upload
        return grade(root, otter_run=True)


def summary(output: dict) -> str:
    """What the student sees, as text: the notes, then each visible entry."""
    parts = [output["output"]] if output.get("output") else []
    parts += [test["output"] for test in output["tests"] if test.get("visibility") == "visible"]
    return "\n\n".join(parts) + f"\n\nTotal: {output['score']:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignments.runner", description=__doc__.splitlines()[0])
    parser.add_argument("autograder", nargs="?", type=Path, help="the autograder zip (dist/autograder.zip)")
    parser.add_argument("submission", nargs="?", type=Path, help="a submission zip, or its unpacked folder")
    parser.add_argument("--out", type=Path, help="folder to write results.json into (it must not hold one)")
    parser.add_argument("--gradescope", action="store_true", help="grade /autograder (inside Gradescope's image)")
    args = parser.parse_args(argv)
    if args.gradescope:
        grade(GRADESCOPE, otter_run=False)
        return 0
    if args.autograder is None or args.submission is None:
        parser.error("give the autograder zip and a submission, or --gradescope")
    output = grade_locally(args.autograder, args.submission)
    print(summary(output))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        target = args.out / "results.json"
        if target.exists():
            print(f"error: {target} exists; pick another --out.", file=sys.stderr)
            return 2
        target.write_text(json.dumps(output, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
