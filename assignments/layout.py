"""Where the autograder keeps things at grading time, in the autograder folder (/autograder on Gradescope).

Nothing here imports fpnlab (or torch): the runner, which only moves files and rewrites results, stays light.
"""

UPLOAD = "upload"  # beside submission/: the student's upload, set aside before otter runs, never executed
NOTES = "submission_notes.json"  # in results/: what grade.py found about the submission's files
WORK = "work"  # the graded package and the submitted data
