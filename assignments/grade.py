"""The program the autograder runs as the submission, before the tests (files/grade.py in the autograder zip).

Otter executes the one Python file at the top of the submission folder, so the autograder puts this one
there; the student's files are in the same folder (fpnlab/, notebooks/, runs/), the autograder's own in
../source/files/autograde. It builds the package the tests import: the autograder's copy of the student
release with the code between each unit's markers taken from the submission (assignments/grading.py).
"""

import sys
from pathlib import Path

AUTOGRADE = Path.cwd().parent / "source" / "files" / "autograde"
sys.path[:0] = [str(AUTOGRADE / "release"), str(AUTOGRADE)]  # the autograder's code before anything submitted

from assignments.grading import prepare_grading  # noqa: E402 (needs the path above)

prepare_grading(Path.cwd(), AUTOGRADE)
