"""The expected outputs of the notebooks' `# NBVAL_CHECK_OUTPUT` cells, kept beside the notebooks.

The notebooks are committed without outputs, and nbval compares a checked cell with the outputs stored
in the notebook: with none stored it would check nothing. So the expected text of every checked cell
lives in notebooks/expected/<notebook>.json, keyed by the cell's index and the hash of its source,
and tests/conftest.py hands it to nbval. After changing a checked cell, record them again:

    make notebook-outputs            # python tests/notebook_outputs.py notebooks/*.ipynb

Only text is kept (streams and text/plain results); figures and widgets are not compared.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

MARK = "# NBVAL_CHECK_OUTPUT"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = NOTEBOOKS / "expected"


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def checked_cells(notebook: nbformat.NotebookNode) -> dict[int, nbformat.NotebookNode]:
    """The code cells marked NBVAL_CHECK_OUTPUT, by index."""
    return {
        i: cell
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and cell.source.lstrip().startswith(MARK)
    }


def text_outputs(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outputs nbval compares as text: streams (merged per name) and text/plain results."""
    kept: list[dict[str, Any]] = []
    for output in outputs:
        if output["output_type"] == "stream":
            if kept and kept[-1]["output_type"] == "stream" and kept[-1]["name"] == output["name"]:
                kept[-1]["text"] += output["text"]
            else:
                kept.append({"output_type": "stream", "name": output["name"], "text": output["text"]})
        elif output["output_type"] == "execute_result" and "text/plain" in output.get("data", {}):
            kept.append(
                {
                    "output_type": "execute_result",
                    "metadata": {},
                    "execution_count": None,
                    "data": {"text/plain": output["data"]["text/plain"]},
                }
            )
    return kept


def expected_path(notebook_path: Path) -> Path:
    return EXPECTED / f"{Path(notebook_path).stem}.json"


def load_expected(notebook_path: Path) -> dict[str, Any]:
    """{str(cell index): {"source": hash, "outputs": [...]}} of one notebook ({} when none was recorded)."""
    path = expected_path(notebook_path)
    return json.loads(path.read_text()) if path.is_file() else {}


class PatientClient(NotebookClient):
    """nbclient waits for a cell's reply in one long poll of the shell channel, which now and then misses a reply
    that has arrived (nbclient#312: a cell that shows a widget then ends only when the cell's timeout is up).
    This client waits in one-second polls, so a missed reply is found a second later."""

    async def _async_poll_for_reply(
        self, msg_id: str, cell: Any, timeout: int | None, task_poll_output_msg: Any, task_poll_kernel_alive: Any
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1.0))
            except Empty:
                if deadline is not None and time.monotonic() > deadline:
                    task_poll_kernel_alive.cancel()
                    raise CellTimeoutError.error_from_timeout_and_cell("Cell timed out", timeout, cell) from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)  # the outputs, up to "idle"
                task_poll_kernel_alive.cancel()
                return msg


def record(notebook_path: Path, timeout: int = 1200) -> Path:
    os.environ["FPNLAB_QUICK_RUNS"] = "1"  # as in the test suite (conftest.py): checked cells never depend on it
    """Execute the notebook in its folder and store the text outputs of its checked cells."""
    notebook = nbformat.read(notebook_path, as_version=4)
    PatientClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(notebook_path).parent)}},
    ).execute()
    expected = {
        str(i): {"source": source_hash(cell.source), "outputs": text_outputs(cell.outputs)}
        for i, cell in checked_cells(notebook).items()
    }
    EXPECTED.mkdir(exist_ok=True)
    path = expected_path(notebook_path)
    path.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"recorded {record(Path(name))}")
