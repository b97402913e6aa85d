"""Measured figures live in `results/*.json`, stamped with how and where they were made.

Notebooks and the README read figures from here; nobody types a number by hand.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from fpnlab.env import REPO, device_name, now_iso, versions

RESULTS_DIR = REPO / "results"


def results_dir() -> Path:
    """`$FPNLAB_RESULTS`, else the repository's `results/` folder."""
    return Path(os.environ.get("FPNLAB_RESULTS", RESULTS_DIR))


def write_result(
    name: str,
    data: dict[str, Any],
    device: torch.device | str | None = None,
    command: str | None = None,
    folder: Path | None = None,
) -> Path:
    """Write `results/<name>.json` with the command, device, versions and date around `data`."""
    folder = Path(folder) if folder is not None else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command or process_command(),
        "device": device_name(device),
        "versions": versions(),
        "date": now_iso(),
        **data,
    }
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def process_command() -> str:
    """This process's command line (a result's default `command`)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def read_result(name: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The stored record, or None when that result has not been produced yet."""
    path = (Path(folder) if folder is not None else results_dir()) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
