"""What a training run reports while it works: metrics.csv, and the loss window behind each of its rows.

    log = MetricsLog(run_folder.metrics_csv, start_iteration)    # resumes a run's log, repairing it if needed
    log.log({"iteration": 10, "lr": 0.03, **window.row()})

metrics.csv has one row per `log_every` iterations: the iteration, the learning rate, the mean of each
loss term over the window since the previous row, their sum and the images per second.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from fpnlab.errors import FpnlabError
from fpnlab.outputs import always, event_writer, open_append, unused_name, write_atomic, write_failure, write_new
from fpnlab.sources import read_bytes


class LogWindow:
    """Loss terms and images/s averaged over the iterations since the last metrics.csv row."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.images, self.start = 0, time.perf_counter()

    def add(self, losses: dict[str, float], images: int) -> None:
        self.losses.append(losses)
        self.images += images

    def images_per_s(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def row(self) -> dict[str, float]:
        """{"loss": total, "loss_objectness": ..., ..., "images_per_s": ...}, means over the window."""
        means = {k: sum(losses[k] for losses in self.losses) / len(self.losses) for k in self.losses[0]}
        return {"loss": sum(means.values()), **means, "images_per_s": self.images_per_s()}


class MetricsLog:
    """metrics.csv of a run folder (and TensorBoard's event files when tensorboard is installed).

    On resume the rows up to the checkpoint's iteration are kept and those logged after it (they will
    be logged again) are dropped. A damaged file (lines cut short, text that is not a number, a second
    header from another run) is repaired from its readable rows; the damaged file itself is kept
    beside it as metrics.csv.damaged, and `self.repaired` says what happened.
    """

    def __init__(self, path: Path, start_iteration: int) -> None:
        self.path, self.repaired = path, ""
        self.rows = self._read(start_iteration)
        write_atomic(self.path, self._csv(self.rows), "metrics log", may_replace=always)
        self.tensorboard = event_writer(path.parent / "tensorboard", purge_step=start_iteration + 1)

    def _read(self, start_iteration: int) -> list[dict[str, float]]:
        if not self.path.exists():
            return []
        raw = read_bytes(self.path, "metrics log", FpnlabError)
        rows, bad = parse_metrics(raw.decode(errors="replace"))
        if bad:
            backup = unused_name(self.path.with_name(self.path.name + ".damaged"))
            write_new(backup, raw, "copy of the damaged metrics log")  # the damaged file exactly as it was
            self.repaired = (
                f"{self.path} had {bad} unreadable line(s); repaired from its {len(rows)} readable "
                f"row(s), the damaged file is kept as {backup.name}."
            )
        return [row for row in rows if row["iteration"] <= start_iteration]

    @staticmethod
    def _csv(rows: list[dict[str, float]]) -> str:
        out = io.StringIO()
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue()

    def log(self, row: dict[str, float]) -> None:
        first = not self.rows
        self.rows.append(row)
        try:
            with open_append(self.path, "metrics log") as f:
                writer = csv.DictWriter(f, fieldnames=list(row), lineterminator="\n")
                if first:
                    writer.writeheader()
                writer.writerow(row)
        except OSError as err:
            raise FpnlabError(
                f"could not write {self.path}: {write_failure(err)}; the last checkpoint is kept."
            ) from None
        if self.tensorboard is not None:
            for name, value in row.items():
                if name != "iteration":
                    self.tensorboard.add_scalar(name, value, int(row["iteration"]))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def parse_metrics(text: str) -> tuple[list[dict[str, Any]], int]:
    """The readable rows of a metrics.csv text, in increasing iteration order, and the number of bad lines.

    A row is readable when it has as many fields as the header, every field is a finite number and its
    iteration is past the previous row's. Lines repeating the header are skipped and counted as bad.
    """
    lines = [line for line in csv.reader(io.StringIO(text)) if line]
    if not lines or "iteration" not in lines[0]:
        return [], len(lines)
    header, rows, bad = lines[0], [], 0
    for line in lines[1:]:
        row = _numbers(header, line)
        if row is None or (rows and row["iteration"] <= rows[-1]["iteration"]):
            bad += 1
            continue
        rows.append(row)
    return rows, bad


def _numbers(header: list[str], line: list[str]) -> dict[str, Any] | None:
    if len(line) != len(header):
        return None
    try:
        values = [float(v) for v in line]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    row: dict[str, Any] = dict(zip(header, values))
    row["iteration"] = int(row["iteration"])
    return row
