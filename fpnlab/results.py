"""Measured figures live in `results/*.json`, stamped with how and where they were made.

Notebooks and the README read figures from here; nobody types a number by hand. A record's name is a
plain file name (letters, digits, `_`, `-`, `.`), checked before any work (`check_result_name`), and a
record replaces only an earlier record (a JSON file with the stamp), never another file.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

from fpnlab.env import REPO, device_name, now_iso, versions
from fpnlab.errors import DataError, FpnlabError
from fpnlab.outputs import check_replaceable, make_folder, write_atomic

RESULTS_DIR = REPO / "results"
STAMP = ("command", "device", "versions", "date")  # what write_result adds to every record
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


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
    check_result_name(name, "result name")
    folder = make_folder(Path(folder) if folder is not None else results_dir(), "results folder")
    record = {
        "command": command or process_command(),
        "device": device_name(device),
        "versions": versions(),
        "date": now_iso(),
        **data,
    }
    text = json.dumps(record, indent=2, sort_keys=False) + "\n"
    return write_atomic(folder / f"{name}.json", text, "result record", may_replace=is_record)


def check_result_name(name: str, option: str, folder: Path | None = None) -> None:
    """FpnlabError unless `name` is a plain file name (no folder, no leading dot) and, given `folder`,
    its record there could be written: before any work, not after it."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None or name.endswith(".json"):
        raise FpnlabError(
            f"{option} {name!r} is not a plain record name: use letters, digits, '_', '-' and '.', "
            "at most 100, without a folder or '.json' (e.g. demo_training)."
        )
    if folder is not None:
        check_replaceable(Path(folder) / f"{name}.json", option, may_replace=is_record)


def is_record(path: Path) -> bool:
    """Whether `path` holds a record write_result wrote (a JSON object with its stamp)."""
    try:
        record = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and all(key in record for key in STAMP)


def process_command() -> str:
    """This process's command line (a result's default `command`)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def read_result(name: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The stored record, or None when that result has not been produced yet; DataError for a damaged file."""
    path = (Path(folder) if folder is not None else results_dir()) / f"{name}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as err:
        raise DataError(
            f"result record {path} cannot be read ({type(err).__name__}); move it away or fix it."
        ) from None
    if not isinstance(record, dict):
        raise DataError(f"result record {path} is not a JSON object; move it away or fix it.")
    return record
