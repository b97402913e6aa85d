"""A run folder: where one training run keeps its files, checked before any work and held by one run at a time.

    runs/cpu/
      fpnlab-run.json  the marker, written first: this folder is the lab's
      checkpoint.pt    the training state, rewritten atomically (fpnlab.engine.checkpoint)
      metrics.csv      one row per log_every iterations (fpnlab.engine.runlog)
      config.json      the TrainConfig of the run
      metrics.json     COCO metrics on val at the end (eval_at_end)
      .lock            held while a run trains here, so a second run in the same folder is refused

A folder is the lab's only when it holds the marker: a new or empty folder gets one, and a folder that
holds other files and no marker is refused with the list of what is there (the user's own config.json
is never replaced). Every file is written through fpnlab.outputs: never through a link.

The lock is an OS file lock (flock on Linux and macOS, msvcrt on Windows): the operating system
releases it when the process ends, however it ends, so a crashed run never leaves a stale lock.
Temporary files a killed run left behind (`.checkpoint.pt.<random>.fpnlab-tmp`) are removed by the
next run that holds the lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fpnlab.errors import FpnlabError
from fpnlab.outputs import (
    TEMP_SUFFIX,
    always,
    check_replaceable,
    check_writable_folder,
    folder_entries,
    is_regular,
    listing,
    make_folder,
    open_lock,
    remove_lab_file,
    write_atomic,
    write_new,
)

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

MARKER = "fpnlab-run.json"
LAB_FILES = {  # what a run writes in its folder, by name
    "checkpoint.pt": "checkpoint",
    "metrics.csv": "metrics log",
    "config.json": "config.json",
    "metrics.json": "metrics.json",
    ".lock": "run folder lock",
}


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder."""

    path: Path

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def check(self) -> None:
        """FpnlabError unless the folder can hold a run's files and is new, empty or the lab's (nothing is
        created yet)."""
        check_writable_folder(self.path, "run folder")
        if not self.path.is_dir():
            return
        if is_regular(self.marker):
            for name, what in LAB_FILES.items():  # no link, pipe or folder where the lab writes
                check_replaceable(self.path / name, what, may_replace=always)
            return
        entries = folder_entries(self.path)
        if entries:
            raise FpnlabError(
                f"run folder {self.path} holds files fpnlab did not make ({listing(entries, self.path)}) and no "
                f"{MARKER}; pick a new or empty --run-dir (nothing in it was changed)."
            )

    def claim(self) -> None:
        """Make the folder if needed and mark it as the lab's (after `check`)."""
        self.check()
        make_folder(self.path, "run folder")
        if not is_regular(self.marker):
            try:
                write_new(self.marker, json.dumps({"made_by": "fpnlab train"}) + "\n", "run folder marker")
            except FpnlabError:
                if not is_regular(self.marker):  # not another run marking it at the same moment
                    raise

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Claim the folder and hold its lock inside a ``with`` block; FpnlabError when another run holds it."""
        self.claim()
        with open_lock(self.path / ".lock", "run folder lock") as handle:
            if not try_lock(handle):
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise FpnlabError(
                    f"run folder {self.path} is in use by another training run ({owner}); wait "
                    "for it to finish, stop it, or pick another --run-dir."
                )
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            self.remove_leftovers()
            yield

    def remove_leftovers(self) -> None:
        """Delete the temporary files of a killed run (only the lab's own, while holding the lock)."""
        for path in self.path.iterdir():
            if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX) and is_regular(path):
                remove_lab_file(path, "temporary file")

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        """Write `name` (config.json, metrics.json) in the folder atomically."""
        return write_atomic(self.path / name, json.dumps(data, indent=2) + "\n", name, may_replace=always)


def try_lock(handle: IO[str]) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True
