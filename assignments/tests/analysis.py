"""The written ablation analysis, graded by hand with rubric.md: this check only says it is there.

It reads the notebook's cell tagged "analysis" (notebooks/fpn_assignment.ipynb, the cell under "Your
analysis") and counts its words; the points are given on Gradescope, not here.
"""

import json
import os
from pathlib import Path

from otter.test_files import test_case

from fpnlab import grading as units

OK_FORMAT = False
name = "analysis"
points = 0
NOTEBOOK = "notebooks/fpn_assignment.ipynb"
PLACEHOLDER = "Write your analysis here"
MIN_WORDS = 120


@test_case(name="the notebook holds your written ablation analysis (graded by hand)", points=0)
def analysis_written():
    root = Path(os.environ.get("FPNLAB_SUBMISSION") or Path(units.__file__).resolve().parents[1])
    path = root / NOTEBOOK
    assert path.is_file(), f"there is no {NOTEBOOK} in the submission; submit the zip the notebook's last cell makes."
    cells = [
        cell
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
        if "analysis" in cell.get("metadata", {}).get("tags", [])
    ]
    assert cells, f"{NOTEBOOK} has no cell tagged 'analysis': write your analysis in the cell under 'Your analysis'."
    text = "".join(cells[0]["source"])
    words = len(text.split())
    assert PLACEHOLDER not in text and words >= MIN_WORDS, (
        f"the analysis has {words} words{' and still the placeholder' if PLACEHOLDER in text else ''}; "
        f"write at least {MIN_WORDS} (rubric.md says what is graded)."
    )
