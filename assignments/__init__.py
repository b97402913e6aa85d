"""The graded assignment built from fpnlab's own code: student release, autograder, Gradescope zip.

    python -m assignments.build --out dist      # or: make assignments

The solution is the lab itself: each unit's code sits between `# BEGIN UNIT <name>` / `# END UNIT <name>`
in the stage modules (fpnlab.grading lists the units). assignments/README.md is the instructor's guide,
assignments/STUDENT.md the students' one page.
"""
