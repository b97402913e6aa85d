"""The notebooks as committed: without outputs (nbstripout-clean), and every checked cell has an expected output.

Running a notebook must never dirty the checkout: `make lab` installs nbstripout as the git filter, so
git sees the committed form (no outputs) whatever the file on disk holds; the last test here proves
the filter does that, in a scratch repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fpnlab.teaching.jupyter_setup import install_notebook_filter
from tests.notebook_outputs import EXPECTED, NOTEBOOKS, checked_cells, load_expected, source_hash

PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_committed_notebooks_hold_no_outputs():
    result = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--verify", *map(str, PATHS)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"run `nbstripout notebooks/*.ipynb`: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_every_checked_cell_has_a_fresh_expected_output(path):
    expected = load_expected(path)
    cells = checked_cells(nbformat.read(path, as_version=4))
    assert len(cells) >= 2  # every notebook guards its claims
    stale = [i for i, cell in cells.items() if expected.get(str(i), {}).get("source") != source_hash(cell.source)]
    assert stale == [], f"cells {stale} changed since their outputs were recorded: run `make notebook-outputs`"
    assert set(expected) == {str(i) for i in cells}  # nothing recorded for cells that are gone
    assert (EXPECTED / f"{path.stem}.json").is_file()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_the_filter_keeps_a_run_notebook_out_of_git_status(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(PATHS[0], repo / "notebooks" / PATHS[0].name)
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "notebooks without outputs")
    assert install_notebook_filter(repo)
    notebook = nbformat.read(repo / "notebooks" / PATHS[0].name, as_version=4)
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="what the student saw\n")]
    code.execution_count = 7
    nbformat.write(notebook, repo / "notebooks" / PATHS[0].name)
    assert "what the student saw" in (repo / "notebooks" / PATHS[0].name).read_text()  # kept on disk
    assert git(repo, "diff") == ""  # git sees the notebook as committed: no change to diff, stash or commit
    git(repo, "add", "-A")  # (git status may list the file until then: its size changed, its content did not)
    assert git(repo, "status", "--porcelain") == ""
