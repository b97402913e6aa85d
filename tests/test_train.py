"""The training loop: it learns, resumes exactly, stops cleanly on Ctrl-C, SIGTERM and NaN, and guards its folder."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import fpnlab.engine.loop as training
import fpnlab.engine.state as state_module
from fpnlab.data import load_split
from fpnlab.engine.batches import SeededAugmentation, SeededBatches, load_datasets
from fpnlab.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from fpnlab.engine.evaluate import COCO_METRICS, coco_metrics
from fpnlab.engine.loop import TrainResult, divergence_message, train
from fpnlab.engine.presets import get_preset
from fpnlab.engine.run_folder import RunFolder
from fpnlab.engine.runlog import parse_metrics
from fpnlab.engine.state import lr_factor
from fpnlab.engine.stopping import Diverged
from fpnlab.errors import FpnlabError

TEST = get_preset("test")  # 12 iterations of a tiny detector on 8 shapes-mini images


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The test preset trained without interruption."""
    return train(TEST, tmp_path_factory.mktemp("straight"), progress=None)


def test_losses_fall_and_evaluation_returns_every_metric(straight_run):
    """Objectness and classification fall within 12 iterations; box regression may rise at first, as more
    proposals become positives whose boxes are regressed (notebook 07 shows it)."""
    curves = straight_run.curves()
    assert len(curves["loss"]) == TEST.iterations  # log_every=1
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} <= set(curves)
    for term in ("loss_objectness", "loss_classifier"):
        assert np.mean(curves[term][-4:]) < 0.95 * np.mean(curves[term][:4]), term
    model = load_model(straight_run.checkpoint)
    metrics = coco_metrics(model, load_split(TEST.dataset, "val"), max_images=TEST.max_val_images, progress=None)
    assert list(metrics) == list(COCO_METRICS)
    assert all(-1.0 <= value <= 1.0 and math.isfinite(value) for value in metrics.values())


def stop_at(monkeypatch, call: int, signum: int) -> None:
    """Send `signum` to this process right after the `call`-th training step."""
    real_step, calls = training.train_step, itertools.count(1)

    def step_then_signal(*args, **kwargs):
        losses = real_step(*args, **kwargs)
        if next(calls) == call:
            os.kill(os.getpid(), signum)  # a real signal, in the middle of the run
        return losses

    monkeypatch.setattr(training, "train_step", step_then_signal)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; `kill`, `docker stop`, a scheduler
def test_interrupted_and_resumed_run_ends_with_the_same_weights(straight_run, tmp_path, monkeypatch, signum, capsys):
    stop_at(monkeypatch, 5, signum)
    with pytest.raises(KeyboardInterrupt):
        train(TEST, tmp_path, progress=None)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 5  # saved on the signal, not at 6
    assert load_checkpoint(tmp_path / "checkpoint.pt")["loss"] is not None  # the last logged window's mean
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Stopped at iteration 5; {tmp_path / 'checkpoint.pt'} saved. Run the same command again to resume."
    )
    monkeypatch.undo()

    resumed = train(get_preset("test", num_workers=2), tmp_path, progress=None)  # data order ignores workers
    expected = load_checkpoint(straight_run.checkpoint)["model"]
    weights = load_checkpoint(resumed.checkpoint)["model"]
    assert all(torch.equal(expected[k], weights[k]) for k in expected)
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [int(row["iteration"]) for row in csv.DictReader(f)] == list(range(1, TEST.iterations + 1))


def test_a_damaged_metrics_log_is_repaired_and_kept_and_the_run_resumes(straight_run, tmp_path, monkeypatch, capsys):
    stop_at(monkeypatch, 6, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(TEST, tmp_path, progress=None)
    monkeypatch.undo()
    log = tmp_path / "metrics.csv"
    good = log.read_text().splitlines()
    damaged = good[:3] + [good[0], "4,0.01,not-a-number", good[3][:7]] + good[4:] + ["9,1,2"]  # second header, junk
    log.write_text("\n".join(damaged) + "\n")
    capsys.readouterr()
    resumed = train(TEST, tmp_path, progress=None)
    assert f"{log} had 4 unreadable line(s); repaired from its 5 readable row(s)" in capsys.readouterr().out
    rows, bad = parse_metrics(log.read_text())
    assert bad == 0 and [row["iteration"] for row in rows] == [1, 2, *range(4, 13)]  # row 3 was cut short
    assert (tmp_path / "metrics.csv.damaged").read_text() == "\n".join(damaged) + "\n"  # nothing thrown away
    expected = load_checkpoint(straight_run.checkpoint)["model"]
    assert all(torch.equal(expected[k], v) for k, v in load_checkpoint(resumed.checkpoint)["model"].items())


def test_parse_metrics_keeps_readable_rows_in_order():
    text = "iteration,loss\n1,0.5\n2,0.4\niteration,loss\n2,0.4\n3,x\n4,0.3,7\n5,nan\n6,0.2\n"
    rows, bad = parse_metrics(text)
    assert [(row["iteration"], row["loss"]) for row in rows] == [(1, 0.5), (2, 0.4), (6, 0.2)]
    assert bad == 5 and parse_metrics("garbage\n1,2\n") == ([], 2)


def poison(monkeypatch, at_call: int, term: str = "loss_box_reg", weights: bool = False) -> None:
    """The `at_call`-th forward pass returns a NaN loss term (or, with weights=True, a huge finite loss
    whose gradient sends the weights to infinity)."""
    real_build = state_module.build_model

    def build_poisoned(cfg, num_classes):
        model = real_build(cfg, num_classes)
        forward, calls = model.forward, itertools.count(1)

        def poisoned(images, targets=None):
            losses = forward(images, targets)
            if next(calls) == at_call:
                factor = 1e38 if weights else float("nan")
                losses[term] = losses[term] * factor
            return losses

        model.forward = poisoned
        return model

    monkeypatch.setattr(state_module, "build_model", build_poisoned)


def test_nan_loss_stops_naming_the_iteration_and_what_the_checkpoint_holds(tmp_path, monkeypatch):
    poison(monkeypatch, at_call=5)
    cfg = get_preset("test", iterations=8, checkpoint_every=2)
    with pytest.raises(
        FpnlabError,
        match=r"diverged at iteration 5: loss_box_reg is nan\. .*checkpoint.pt holds "
        r"iteration 4 \(mean loss [0-9.]+ there\)",
    ):
        train(cfg, tmp_path, progress=None)
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert kept["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_weights_that_are_no_longer_finite_are_never_saved(tmp_path, monkeypatch):
    poison(monkeypatch, at_call=3, weights=True)  # finite loss, infinite gradient: the weights blow up
    cfg = get_preset("test", iterations=8, checkpoint_every=2, clip_grad_norm=None)
    with pytest.raises(
        FpnlabError,
        match=r"diverged at iteration 4: .*(is no longer finite|is (nan|inf))\. "
        r".*holds iteration 2",
    ):
        train(cfg, tmp_path, progress=None)
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert kept["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_a_run_folder_with_a_checkpoint_is_never_overwritten_without_resume(straight_run):
    with pytest.raises(FpnlabError) as err:
        train(TEST, straight_run.run_dir, resume=False, progress=None)
    assert str(err.value) == (
        f"{straight_run.checkpoint} already exists; resume it, or delete it or pick another run folder to start over."
    )


def test_resuming_with_fewer_iterations_than_done_is_refused(straight_run):
    with pytest.raises(FpnlabError, match="already trained 12 iterations, more than iterations=6"):
        train(get_preset("test", iterations=6), straight_run.run_dir, progress=None)


def test_a_second_run_in_the_same_folder_is_refused_while_the_first_trains(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from fpnlab.engine.run_folder import RunFolder\n"
                "folder = RunFolder(Path(sys.argv[1]))\n"
                "with folder.locked():\n    print('locked', flush=True); time.sleep(60)"
            ),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            FpnlabError,
            match=rf"run folder {tmp_path} is in use by another training run "
            rf"\(pid {holder.pid}\)",
        ):
            train(TEST, tmp_path, progress=None)
        assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(get_preset("test", iterations=2), tmp_path, progress=None).iteration == 2  # lock gone with it


def test_a_run_folder_that_is_a_file_fails_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "run").write_text("my notes")
    monkeypatch.setattr(training, "load_datasets", lambda cfg: pytest.fail("data loaded before the path check"))
    with pytest.raises(FpnlabError, match="run folder .*run is a file, not a folder"):
        train(TEST, tmp_path / "run", progress=None)
    assert (tmp_path / "run").read_text() == "my notes"


def test_without_progress_bars_each_phase_prints_one_line_and_the_checkpoint_is_named(tmp_path, capsys):
    train(get_preset("test", iterations=2, eval_at_end=True), tmp_path, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train: 2 it ..." and lines[1].startswith("train: done in ")
    assert lines[2] == f"checkpoint: {tmp_path / 'checkpoint.pt'} (iteration 2)"
    assert lines[3] == "eval: 4 images ..." and lines[4].startswith("eval: done in ")


def test_lr_warms_up_linearly_then_steps_or_follows_the_cosine():
    step = get_preset(
        "test", iterations=100, warmup_iterations=10, warmup_factor=0.1, schedule="step", lr_steps=(0.6, 0.8), gamma=0.1
    )
    assert [lr_factor(i, step) for i in (0, 5, 10, 59)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    assert [lr_factor(i, step) for i in (60, 79, 80, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    cosine = get_preset("test", iterations=110, warmup_iterations=10, schedule="cosine")
    assert [lr_factor(i, cosine) for i in (10, 60, 110)] == pytest.approx([1.0, 0.5, 0.0])


def test_gradients_are_clipped_to_the_configured_norm(monkeypatch):
    """clip_grad_norm bounds the global gradient norm of the step (a huge loss cannot take a huge step)."""
    seen = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        norm = real_clip(parameters, max_norm, *args, **kwargs)
        seen.append(
            (
                float(norm),
                float(
                    torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None])
                    )
                ),
            )
        )
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    cfg = dataclasses.replace(get_preset("test", iterations=2, clip_grad_norm=0.5, lr=1e-4))
    state = state_module.TrainState.create(cfg, load_datasets(cfg)[0], torch.device("cpu"))
    images, targets = zip(*(load_datasets(cfg)[0][i] for i in range(2)))
    training.train_step(state, list(images), list(targets))
    before, after = seen[0]
    assert before > 0.5 and after == pytest.approx(0.5, rel=1e-3)  # the norm before clipping, then 0.5


def test_batches_are_a_pure_function_of_seed_and_iteration():
    def batches(start=0, rank=0, world_size=1, seed=0, n=30):
        sampler = SeededBatches(10, 2, seed, start, rank, world_size)
        return list(itertools.islice(iter(sampler), n))

    run = batches()
    assert run == batches() and run != batches(seed=1)
    assert batches(start=7, n=23) == run[7:]  # resuming at iteration 7 needs no replay
    epoch0, epoch1 = run[:5], run[5:10]
    assert sorted(i for b in epoch0 for i, _ in b) == list(range(10))  # an epoch visits every image once
    assert [i for b in epoch0 for i, _ in b] != [i for b in epoch1 for i, _ in b]  # reshuffled each epoch
    rank0, rank1 = batches(rank=0, world_size=2, n=2), batches(rank=1, world_size=2, n=2)
    images = [i for b in rank0 + rank1 for i, _ in b]
    assert len(images) == len(set(images)) == 8  # two processes split an epoch without overlap


def test_augmentation_depends_on_the_sample_seed_only():
    flips = SeededAugmentation(load_datasets(TEST)[0])  # train split: random horizontal flips
    state = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    draws = {seed: flips[(0, seed)][1]["boxes"] for seed in range(8)}
    assert torch.equal(torch.get_rng_state(), state[0]) and random.getstate() == state[2]  # global RNGs untouched
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert all(torch.equal(flips[(0, seed)][1]["boxes"], boxes) for seed, boxes in draws.items())
    assert len({tuple(b[0].tolist()) for b in draws.values()}) == 2  # flipped for some seeds, not for others


def test_a_run_folder_made_read_only_mid_run_gives_one_clear_error(tmp_path, monkeypatch):
    """The log and the checkpoint both name the folder and the cause; the last checkpoint stays."""
    import errno

    import fpnlab.engine.runlog as runlog

    real_open, calls = runlog.open_append, itertools.count(1)

    def refuse_after_a_while(path, what):
        if next(calls) > 6:
            raise PermissionError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, what)

    monkeypatch.setattr(runlog, "open_append", refuse_after_a_while)
    with pytest.raises(FpnlabError, match=r"could not write .*metrics.csv: no permission to write there"):
        train(TEST, tmp_path, progress=None)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 6  # saved at checkpoint_every=6


def test_a_run_reports_what_it_did(tmp_path):
    """TrainResult and the run folder: the device, the time, the images per second, the settings used."""
    cfg = get_preset("test", iterations=3)
    result = train(cfg, tmp_path, progress=None)
    assert result.device == torch.device("cpu") and result.iteration == 3 and result.run_dir == tmp_path
    assert 0 < result.wall_s < 600 and result.metrics == {}  # the test preset does not evaluate
    assert result.images_per_s * result.wall_s == pytest.approx(3 * cfg.batch_size)
    ran = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=7))  # 6 shapes + background
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(ran.to_dict()))
    assert result.config == ran
    assert not (tmp_path / "metrics.json").exists()
    assert result.curves()["iteration"] == [1, 2, 3] and result.curves()["loss"] == [r["loss"] for r in result.history]


def test_rows_every_log_every_iterations_and_at_the_end_with_the_lr(tmp_path):
    cfg = get_preset("test", iterations=5, log_every=2, batch_size=1, eval_at_end=True, max_val_images=2)
    result = train(cfg, tmp_path, progress=None)
    assert [row["iteration"] for row in result.history] == [2, 4, 5]
    # the lr the next iteration will use (the schedule has stepped), as the optimizer holds it
    assert [row["lr"] for row in result.history] == pytest.approx([cfg.lr * lr_factor(i, cfg) for i in (2, 4, 5)])
    assert result.images_per_s * result.wall_s == pytest.approx(5)  # batches of one image
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(result.metrics)
    assert set(result.metrics) == set(COCO_METRICS) and result.curves()["iteration"] == [2, 4, 5]


def test_resuming_says_where_and_which_settings_changed(tmp_path, capsys):
    train(get_preset("test", iterations=2), tmp_path, progress=None)
    capsys.readouterr()
    train(get_preset("test", iterations=3, lr=0.005), tmp_path, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"Resuming {tmp_path / 'checkpoint.pt'} at iteration 2 with changed settings: iterations, lr "
        "(in effect from here on)."
    )
    assert lines[1] == "train: 1 it ..."  # only what is left
    train(get_preset("test", iterations=3, lr=0.005), tmp_path, progress=None)  # finished: nothing changed
    assert capsys.readouterr().out.splitlines()[0] == f"Resuming {tmp_path / 'checkpoint.pt'} at iteration 3."


def test_schedule_settings_changed_on_resume_take_effect_and_the_lr_column_shows_it(tmp_path, capsys):
    """Rule: lr, momentum, weight decay, the schedule... take effect from the resume iteration."""
    train(get_preset("test", iterations=2), tmp_path / "b", progress=None)
    changed = get_preset("test", iterations=4, lr=0.005, momentum=0.5, weight_decay=0.0)
    resumed = train(changed, tmp_path / "b", progress=None)
    rows = {int(r["iteration"]): r["lr"] for r in resumed.history}
    # test preset: warm-up 2 iterations, then a cosine over iterations 2..4: after iteration 3 the factor is
    # 0.5 * (1 + cos(pi / 2)) = 0.5, after iteration 4 it is 0
    assert rows[3] == pytest.approx(0.005 * 0.5) and rows[4] == pytest.approx(0.0, abs=1e-12)
    assert rows[2] == pytest.approx(0.01)  # the first part's lr (0.01 x factor 1 after the warm-up)
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    decay, no_decay = state["optimizer"]["param_groups"]
    assert decay["momentum"] == no_decay["momentum"] == 0.5 and decay["weight_decay"] == 0.0
    assert decay["initial_lr"] == 0.005 and state["train_config"]["lr"] == 0.005
    assert json.loads((tmp_path / "b" / "config.json").read_text())["lr"] == 0.005


@pytest.mark.parametrize(
    "change, names",
    [
        ({"seed": 3}, "seed"),
        ({"batch_size": 4}, "batch_size"),
        ({"hflip_prob": 0.0}, "hflip_prob"),
        ({"model": {"rpn": {"nms_thresh": 0.6}}}, "model.rpn.nms_thresh"),
        ({"model": {"fpn_channels": 16}, "max_train_images": 6}, "max_train_images, model.fpn_channels"),
    ],
)
def test_settings_of_the_model_or_the_data_cannot_change_on_resume(tmp_path, change, names):
    train(get_preset("test", iterations=2), tmp_path, progress=None)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(FpnlabError) as err:
        train(get_preset("test", iterations=4, **change), tmp_path, progress=None)
    assert str(err.value) == (
        f"{tmp_path / 'checkpoint.pt'} was trained with other {names}; settings that change the model, the "
        "data or their order cannot change when a run resumes: resume with the values in its config.json, "
        "or start afresh in another --run-dir."
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_the_number_of_classes_comes_from_the_data_and_another_is_refused(tmp_path):
    with pytest.raises(FpnlabError, match=r"model.num_classes is 5, but it is taken from the dataset, whose 6 "):
        train(get_preset("test", model={"num_classes": 5}), tmp_path, progress=None)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_what_a_divergence_message_says_about_the_checkpoint_kept(tmp_path):
    folder, err = RunFolder(tmp_path), Diverged(9, "loss_box_reg is nan")
    assert divergence_message(err, folder, None) == (
        "training diverged at iteration 9: loss_box_reg is nan; no "
        "checkpoint had been saved yet (try a lower lr or a longer "
        "warm-up)."
    )
    save_checkpoint(folder.checkpoint, {"model": {}, "model_config": {}, "iteration": 8, "loss": 3.0})
    log = SimpleNamespace(rows=[{"loss": 2.0}, {"loss": 1.5}])
    tail = "; resume it with a lower lr or a longer warm-up, or delete it to start over."
    head = f"training diverged at iteration 9: loss_box_reg is nan. {folder.checkpoint} holds iteration 8"
    assert divergence_message(err, folder, log) == head + " (mean loss 3 there)" + tail  # 3.0 is not above 2 x 1.5
    save_checkpoint(folder.checkpoint, {"model": {}, "model_config": {}, "iteration": 8, "loss": 3.5})
    assert divergence_message(err, folder, log) == (
        head + " (mean loss 3.5 there; it had been as low as 1.5, so that state may already be diverging)" + tail
    )
    assert divergence_message(err, folder, None) == head + " (mean loss 3.5 there)" + tail
    assert divergence_message(err, folder, SimpleNamespace(rows=[])) == head + " (mean loss 3.5 there)" + tail


def test_curves_of_an_empty_history_are_empty():
    result = TrainResult(Path("."), Path("c.pt"), 0, [], torch.device("cpu"), 0.0, 0.0)
    assert result.curves() == {}


def test_by_default_a_bar_shows_the_loss_and_the_speed(tmp_path, capsys):
    train(get_preset("test", iterations=2), tmp_path)
    bar = capsys.readouterr().err
    assert re.search(r"train: 100%.* 2/2 .*loss=\d+\.\d{3}, img/s=\d+\.\d\]", bar), bar[-300:]
