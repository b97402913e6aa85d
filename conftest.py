"""pytest: give nbval the expected outputs of the notebooks' checked cells (tests/notebook_outputs.py).

The notebooks are committed without outputs; without this hook nbval would have nothing to compare a
`# NBVAL_CHECK_OUTPUT` cell with, and every claim such a cell guards would go unchecked.

Notebooks 07 and 08 train in the test suite for seconds, not minutes: FPNLAB_QUICK_RUNS=1, inherited by every
kernel the tests start (nbval's, JupyterLab's in the browser tests).

Hypothesis (tests/test_properties.py) runs under one profile: derandomized (the same examples on every run,
no example database), no deadline (a shared CI machine's timing is not a property).

Progress bars in tests take a lock of their own process and run without tqdm's monitor thread. tqdm's
default lock is shared by every process forked from one parent (mutmut forks a test process per mutant):
one killed while holding it (a timeout) leaves it taken for all the others, and each of their bars hangs.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import nbformat
from hypothesis import HealthCheck, settings
from tqdm import tqdm

from tests.notebook_outputs import MARK, load_expected, source_hash

os.environ["FPNLAB_QUICK_RUNS"] = "1"  # notebooks 07 and 08 train for seconds in the test kernels (fpnlab.env)
# The demo detector's measurements (fpnlab.teaching.facts) are taken once per test session and shared with the
# notebooks' kernels and the browser's: they cost minutes, and every process would otherwise repeat them.
os.environ.setdefault("FPNLAB_FACTS_CACHE", tempfile.mkdtemp(prefix="fpnlab-facts-"))
tqdm.set_lock(threading.RLock())  # see above
tqdm.monitor_interval = 0  # no monitor thread, which could hold the lock when a test process forks

settings.register_profile(
    "fpnlab",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("fpnlab")


def pytest_collection_modifyitems(items: list) -> None:
    expected_by_notebook: dict[Path, dict] = {}
    for item in items:
        cell = getattr(item, "cell", None)
        if type(item).__name__ != "IPyNbCell" or cell is None or not cell.source.lstrip().startswith(MARK):
            continue
        path = Path(str(item.fspath))
        expected = expected_by_notebook.setdefault(path, load_expected(path))
        index = str(item.parent.nb.cells.index(cell))  # the cell's place among all cells, as recorded
        entry = expected.get(index)
        cell.execution_count = 1  # nbval compares only cells that look run
        if entry is not None and entry["source"] == source_hash(cell.source):
            cell.outputs = [nbformat.from_dict(output) for output in entry["outputs"]]
        else:  # stale or missing: compare with a note that says what to do
            cell.outputs = [
                nbformat.from_dict(
                    {
                        "output_type": "stream",
                        "name": "stdout",
                        "text": "no expected output recorded for this cell: run `make notebook-outputs`\n",
                    }
                )
            ]
