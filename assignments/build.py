"""Build the assignment: `python -m assignments.build --out dist` (what `make assignments SECRET=...` runs).

    dist/student/              the student release (assignments/release.py): push it to a repository
    dist/fpn-assignment.zip    the same release as one zip, for Colab or a course page
    dist/autograder/           every test case and the grading code (instructors only)
    dist/autograder.zip        the Gradescope autograder, also what `python -m assignments.runner` takes
    dist/instructor/           answers, rubric, model analysis, solution, grading report (instructors only)

The hidden cases' random draws come from the instructor's secret (--secret, or $SECRET): without one,
from DEFAULT_SECRET, which anyone with the public lab can reproduce. Everything is made afresh: an
existing --out folder is emptied only when it holds a previous build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from assignments.autograder import gradescope_zip, write_autograder
from assignments.config import POINTS, read_points
from assignments.instructor import write_instructor
from assignments.release import release_zip, test_sources, write_release
from fpnlab.errors import FpnlabError

MADE_HERE = ("student", "fpn-assignment.zip", "autograder", "autograder.zip", "instructor")
DEFAULT_SECRET = "fpnlab-public-default"  # for trying the build locally: a course sets its own


def build(out: Path, points_file: Path = POINTS, zip_: bool = True, secret: str | None = None) -> dict[str, Path]:
    """Build everything into `out`, the hidden cases' seeds from `secret`; returns what was made, by name."""
    points = read_points(points_file)
    clear(out)
    tests = test_sources(points, secret or DEFAULT_SECRET)
    release = write_release(out / "student", points, tests)
    autograder = write_autograder(out / "autograder", release, tests)
    made = {
        "student": release,
        "fpn-assignment.zip": release_zip(release, out / "fpn-assignment.zip"),
        "autograder": autograder,
        "instructor": write_instructor(out / "instructor", release, points, tests, default_secret=not secret),
    }
    if zip_:
        made["autograder.zip"] = gradescope_zip(autograder, out / "autograder.zip")
    return made


def clear(out: Path) -> None:
    """Remove a previous build from `out`; refuse a folder that holds anything else."""
    if not out.exists():
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in MADE_HERE)
    if not out.is_dir() or others:
        raise FpnlabError(
            f"{out} holds files the build did not make ({', '.join(others[:3]) or out.name}); "
            "pick another --out or empty it."
        )
    for name in MADE_HERE:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    """The command line: build, print what was made; exit code 2 and one line on a problem."""
    parser = argparse.ArgumentParser(prog="python -m assignments.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"), help="folder to build into (default: dist)")
    parser.add_argument("--points", type=Path, default=POINTS, help="points file (default: assignments/points.toml)")
    parser.add_argument("--no-zip", action="store_true", help="skip the Gradescope zip (otter generate)")
    parser.add_argument(
        "--secret", default=os.environ.get("SECRET") or None, help="seeds the hidden cases (default: $SECRET)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.secret:
        print(
            f"SECRET not set: the hidden cases' seeds come from the public default {DEFAULT_SECRET!r}; "
            "set one for a course."
        )
    try:
        made = build(args.out, args.points, zip_=not args.no_zip, secret=args.secret)
    except FpnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, path in made.items():
        print(f"{name:<19} {path}")
    print(f"built in {time.perf_counter() - started:.1f} s; assignments/README.md says what to do with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
