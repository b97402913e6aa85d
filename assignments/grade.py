"""What otter's kernel executes as "the submission" (files/grade.py in the autograder zip): the grader's own.

assignments.runner has moved the student's upload out of the folder otter executes (to ../upload), so
this file is the only one otter finds there. It puts the autograder's code first on the import path (the
release's fpnlab, stubs only, and assignments/), reduces the upload to the expected files, splices the
units into the graded package (assignments.grading) and points fpnlab.grading.remote at it: each test
case then runs the student's code in a process of its own and compares here. Nothing of the student's is
imported in this kernel.
"""

import json
import os
import sys
from pathlib import Path

AUTOGRADER = Path.cwd().parent  # otter runs this file in <autograder>/submission
AUTOGRADE = AUTOGRADER / "source" / "files" / "autograde"
sys.path[:0] = [str(AUTOGRADE / "release"), str(AUTOGRADE)]  # the grader's code before anything else

from assignments.grading import prepare_grading  # noqa: E402
from assignments.layout import NOTES, UPLOAD, WORK  # noqa: E402 (needs the path above)

upload = AUTOGRADER / UPLOAD
setup, found = prepare_grading(upload if upload.is_dir() else Path.cwd(), AUTOGRADE, AUTOGRADER / WORK)
if not upload.is_dir():  # run by plain `otter run`, not assignments.runner: the upload is here, beside ours
    found.extra = [name for name in found.extra if name.split("/")[0] not in ("grade.py", "autograde", "tests")]
os.environ.update(setup.env)  # the data and the submitted notebook, for the capstone's and analysis' checks here
notes = found.notes() + [f"unit {unit!r} was not graded: {why}" for unit, why in setup.not_graded.items()]
(AUTOGRADER / "results").mkdir(exist_ok=True)
(AUTOGRADER / "results" / NOTES).write_text(json.dumps(notes), encoding="utf-8")
