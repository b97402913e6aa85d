"""What a run reports: the window's means and speed, metrics.csv's bytes, repair and resume, TensorBoard's calls."""

from __future__ import annotations

import sys
import types

import pytest

import fpnlab.engine.runlog as runlog
from fpnlab.engine.runlog import LogWindow, MetricsLog


def test_window_means_and_images_per_second(monkeypatch):
    clock = iter([100.0, 102.5])  # the window opens at 100 s, the row is taken at 102.5 s
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: next(clock))
    window = LogWindow()
    window.add({"a": 1.0, "b": 4.0}, images=2)
    window.add({"a": 3.0, "b": 0.0}, images=3)
    assert window.row() == {"loss": 2.0 + 2.0, "a": 2.0, "b": 2.0, "images_per_s": 5 / 2.5}


def test_a_window_of_no_time_does_not_divide_by_zero(monkeypatch):
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: 7.0)
    window = LogWindow()
    window.add({"a": 1.0}, images=4)
    assert window.images_per_s() == pytest.approx(4 / 1e-9)


def test_metrics_csv_is_plain_lines_and_resumes_at_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path, 0)
    for iteration in (10, 20, 30):
        log.log({"iteration": iteration, "loss": iteration / 10})
    assert path.read_bytes() == b"iteration,loss\n10,1.0\n20,2.0\n30,3.0\n"  # "\n" only, on every platform
    assert MetricsLog(path, 10).rows == [{"iteration": 10, "loss": 1.0}]  # rows after the checkpoint go
    assert path.read_bytes() == b"iteration,loss\n10,1.0\n"


def test_a_log_that_is_not_text_is_repaired_and_kept(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"iteration,loss\n10,1.0\n\xff\xfe,\x00\n")
    log = MetricsLog(path, 10)
    assert log.rows == [{"iteration": 10, "loss": 1.0}]
    assert log.repaired == (
        f"{path} had 1 unreadable line(s); repaired from its 1 readable row(s), the damaged "
        "file is kept as metrics.csv.damaged."
    )
    assert (tmp_path / "metrics.csv.damaged").read_bytes() == b"iteration,loss\n10,1.0\n\xff\xfe,\x00\n"  # as it was


def test_tensorboard_gets_every_column_but_the_iteration(tmp_path, monkeypatch):
    """With tensorboard installed (an optional extra), each row goes to its event files too; a resumed run
    purges the events after its checkpoint."""
    calls = []

    class Writer:
        def __init__(self, folder, purge_step):
            calls.append(("open", folder, purge_step))

        def add_scalar(self, name, value, step):
            calls.append((name, value, step))

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    log = MetricsLog(tmp_path / "metrics.csv", 40)
    log.log({"iteration": 50, "loss": 0.5, "lr": 0.02})
    log.close()
    assert calls == [("open", str(tmp_path / "tensorboard"), 41), ("loss", 0.5, 50), ("lr", 0.02, 50), ("close",)]
