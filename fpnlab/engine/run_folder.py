"""A run folder: where one training run keeps its files, checked before any work and held by one run at a time.

    runs/cpu/
      checkpoint.pt    the training state, rewritten atomically (fpnlab.engine.checkpoint)
      metrics.csv      one row per log_every iterations (fpnlab.engine.runlog)
      config.json      the TrainConfig of the run
      metrics.json     COCO metrics on val at the end (eval_at_end)
      .lock            held while a run trains here, so a second run in the same folder is refused

The lock is an OS file lock (flock on Linux and macOS, msvcrt on Windows): the operating system
releases it when the process ends, however it ends, so a crashed run never leaves a stale lock.
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
from fpnlab.outputs import check_writable_folder, write_text_atomic

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


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

    def check(self) -> None:
        """FpnlabError unless the folder can hold a run's files (nothing is created yet)."""
        check_writable_folder(self.path, "run folder")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Create the folder if needed and hold its lock inside a ``with`` block; FpnlabError when another
        run holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as handle:
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
            yield

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        """Write `name` (config.json, metrics.json) in the folder atomically."""
        return write_text_atomic(self.path / name, json.dumps(data, indent=2) + "\n")


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
