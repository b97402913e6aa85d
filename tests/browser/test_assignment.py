"""The graded assignment as a student does it: the built release opened in JupyterLab, the notebook's
setup run, then, unit by unit, the lab's reference pasted into the student's copy of fpnlab (as if they
had written it) and the unit's `check` cell run again, until every check is green.

The release's own setup cell finds its copy of fpnlab and turns on autoreload, so a file changed on disk
is what the next `check` runs, as when a student edits `fpnlab/model/boxes.py` beside the notebook.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from assignments.build import build
from assignments.grading import paste_unit
from fpnlab.grading import UNITS
from tests.browser.conftest import ROOT, jupyterlab, new_page, open_notebook

NOTEBOOK = "notebooks/fpn_assignment.ipynb"
CELL_TIMEOUT_S = 300

# The cell at `index`: its execution count, the text of its outputs, and the kernel's status.
CELL_JS = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cell = panel.content.widgets[index];
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const text = cell.model.outputs.toJSON().map(o => o.output_type === 'stream' ? o.text
    : o.output_type === 'error' ? o.ename + ': ' + o.evalue : (o.data && o.data['text/plain']) || '').join('');
  return {count: cell.model.executionCount, text: text, status: kernel ? kernel.status : 'none'};
}"""
SOURCES_JS = "() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.sharedModel.getSource())"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The student release, built by the instructor's command from this checkout."""
    out = tmp_path_factory.mktemp("assignment") / "dist"
    build(out, zip_=False)
    return out / "student"


@pytest.fixture(scope="module")
def release_url(release: Path, browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with jupyterlab(tmp_path_factory.mktemp("assignment-lab"), release) as url:
        yield url


@pytest.fixture()
def page(browser) -> Iterator[Page]:
    yield from new_page(browser)


def run_cell(page: Page, index: int) -> str:
    """Run the notebook's cell `index` as Shift+Enter would (without moving on); the text it printed."""
    before = page.evaluate(CELL_JS, index)["count"]
    page.evaluate("(i) => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = i; }", index)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
    deadline = time.monotonic() + CELL_TIMEOUT_S
    while time.monotonic() < deadline:
        state = page.evaluate(CELL_JS, index)
        if state["count"] not in (None, before) and state["status"] == "idle":
            return state["text"]
        time.sleep(0.5)
    pytest.fail(f"cell {index} did not finish within {CELL_TIMEOUT_S} s: {page.evaluate(CELL_JS, index)}")


def test_each_check_turns_green_as_the_units_are_written(page, release_url, release):
    open_notebook(page, release_url, NOTEBOOK)
    sources = page.evaluate(SOURCES_JS)
    checks = {unit: sources.index(f'check("{unit}")') for unit in UNITS}  # one check cell per unit
    setup = next(i for i, source in enumerate(sources) if "%autoreload 2" in source)
    assert "Error" not in run_cell(page, setup)
    before = run_cell(page, checks["iou"])
    assert before.startswith("iou: 0 of 2 visible cases pass.") and "unit 'iou' is not done yet" in before
    green = {}
    for unit, found in UNITS.items():  # in the notebook's order, as a student works through it
        path = release / "fpnlab" / found.module
        reference = (ROOT / "fpnlab" / found.module).read_text(encoding="utf-8")
        path.write_text(paste_unit(path.read_text(encoding="utf-8"), reference, unit), encoding="utf-8")
        text = run_cell(page, checks[unit])
        passed = re.match(rf"{unit}: (\d+) of (\d+) visible cases pass\.", text)
        green[unit] = bool(passed) and passed[1] == passed[2] and int(passed[2]) >= 1 and "✗" not in text
        assert green[unit], text
    assert len(green) == len(UNITS) >= 12
    assert page.get_by_text("Error displaying widget").count() == 0 and page.console_errors == []
