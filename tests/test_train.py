"""The training loop: it learns, resumes exactly, stops cleanly on Ctrl-C and on NaN, and is seeded."""
from __future__ import annotations

import csv
import itertools
import math
import os
import random
import signal

import numpy as np
import pytest
import torch

import fpnlab.train as training
from fpnlab.checkpoint import load_checkpoint, load_model
from fpnlab.config import get_preset
from fpnlab.data import load_split
from fpnlab.errors import FpnlabError
from fpnlab.evaluate import COCO_METRICS, coco_metrics
from fpnlab.train import SeededAugmentation, SeededBatches, lr_factor, train

TEST = get_preset("test")  # 12 iterations of a tiny detector on 8 shapes-mini images


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The test preset trained without interruption."""
    return train(TEST, tmp_path_factory.mktemp("straight"), progress=False)


def test_loss_decreases_and_evaluation_returns_every_metric(straight_run):
    losses = [row["loss"] for row in straight_run.history]
    assert len(losses) == TEST.iterations  # log_every=1
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} <= set(straight_run.history[0])
    model = load_model(straight_run.checkpoint)
    metrics = coco_metrics(model, load_split(TEST.dataset, "val"), max_images=TEST.max_val_images, progress=False)
    assert list(metrics) == list(COCO_METRICS)
    assert all(-1.0 <= value <= 1.0 and math.isfinite(value) for value in metrics.values())


def test_interrupted_and_resumed_run_ends_with_the_same_weights(straight_run, tmp_path, monkeypatch):
    real_step, calls = training.train_step, itertools.count(1)

    def step_then_ctrl_c(*args, **kwargs):
        losses = real_step(*args, **kwargs)
        if next(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the middle of the run
        return losses

    monkeypatch.setattr(training, "train_step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(TEST, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 5  # saved on Ctrl-C, not at 6
    monkeypatch.setattr(training, "train_step", real_step)

    resumed = train(get_preset("test", num_workers=2), tmp_path, progress=False)  # data order ignores workers
    expected = load_checkpoint(straight_run.checkpoint)["model"]
    weights = load_checkpoint(resumed.checkpoint)["model"]
    assert all(torch.equal(expected[k], weights[k]) for k in expected)
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [int(row["iteration"]) for row in csv.DictReader(f)] == list(range(1, TEST.iterations + 1))


def test_nan_loss_stops_naming_the_iteration_and_term_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real_build = training.build_model

    def build_poisoned(cfg, num_classes):  # the 5th forward pass returns a NaN box regression loss
        model = real_build(cfg, num_classes)
        forward, calls = model.forward, itertools.count(1)

        def poisoned(images, targets=None):
            losses = forward(images, targets)
            if next(calls) == 5:
                losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
            return losses

        model.forward = poisoned
        return model

    monkeypatch.setattr(training, "build_model", build_poisoned)
    cfg = get_preset("test", iterations=8, checkpoint_every=2)
    with pytest.raises(FpnlabError, match=r"diverged at iteration 5: loss_box_reg is nan; the last good "
                                          r"checkpoint .*checkpoint.pt is kept"):
        train(cfg, tmp_path, progress=False)
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert kept["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_a_run_folder_with_a_checkpoint_is_never_overwritten_without_resume(straight_run):
    with pytest.raises(FpnlabError, match="checkpoint.pt already exists"):
        train(TEST, straight_run.run_dir, resume=False, progress=False)


def test_lr_warms_up_linearly_then_steps_or_follows_the_cosine():
    step = get_preset("test", iterations=100, warmup_iterations=10, warmup_factor=0.1, schedule="step",
                      lr_steps=(0.6, 0.8), gamma=0.1)
    assert [lr_factor(i, step) for i in (0, 5, 10, 59)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    assert [lr_factor(i, step) for i in (60, 79, 80, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    cosine = get_preset("test", iterations=110, warmup_iterations=10, schedule="cosine")
    assert [lr_factor(i, cosine) for i in (10, 60, 110)] == pytest.approx([1.0, 0.5, 0.0])


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
    flips = SeededAugmentation(training.load_datasets(TEST)[0])  # train split: random horizontal flips
    state = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    draws = {seed: flips[(0, seed)][1]["boxes"] for seed in range(8)}
    assert torch.equal(torch.get_rng_state(), state[0]) and random.getstate() == state[2]  # global RNGs untouched
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert all(torch.equal(flips[(0, seed)][1]["boxes"], boxes) for seed, boxes in draws.items())
    assert len({tuple(b[0].tolist()) for b in draws.values()}) == 2  # flipped for some seeds, not for others
