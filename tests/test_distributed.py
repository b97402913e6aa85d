"""DDP on the CPU: `torchrun --nproc_per_node=2 -m fpnlab train` with the gloo backend.

Both processes must finish (torchrun exits 0 only then) and rank 0's checkpoint must load; an
evaluation gathered from two processes, each scoring half the images, must equal a one-process one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from fpnlab.data import load_split
from fpnlab.engine.checkpoint import load_checkpoint, load_model
from fpnlab.engine.distributed import average_across_processes, wrap
from fpnlab.engine.evaluate import COCO_METRICS, coco_metrics, proposal_recall
from fpnlab.engine.presets import get_preset
from tests.test_evaluate import Oracle, write_sparse_id_dataset


def test_two_processes_train_checkpoint_and_gather_evaluation(tmp_path):
    cfg = get_preset("test", iterations=4)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "fpnlab",
        "train",
        "--preset",
        "test",
        "--run-dir",
        str(tmp_path),
        "--no-progress",
        "--set",
        f"iterations={cfg.iterations}",
        "--set",
        "eval_at_end=true",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AP50" in result.stdout  # rank 0 printed the gathered metrics, once
    assert result.stdout.count("AP50") == 1

    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == cfg.iterations
    assert isinstance(load_model(tmp_path / "checkpoint.pt"), torch.nn.Module)
    assert list(json.loads((tmp_path / "metrics.json").read_text())) == list(COCO_METRICS)


def evaluate_as_rank(rank: int, world_size: int, init_file: Path, root: Path, out: Path) -> None:
    """One DDP process: evaluate its share of the images with the half-answering oracle."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    dataset = load_split(root, "val")
    oracle = Oracle(dataset, answer_every=2)  # rank 0's images (0, 2, 4, ...) answered, rank 1's not
    metrics = {**coco_metrics(oracle, dataset, progress=False), **proposal_recall(oracle, dataset, progress=False)}
    (out / f"rank{rank}.json").write_text(json.dumps(metrics))
    dist.destroy_process_group()


def test_evaluation_is_gathered_across_processes(tmp_path):
    root = write_sparse_id_dataset(tmp_path / "data")
    torch.multiprocessing.spawn(evaluate_as_rank, args=(2, tmp_path / "rendezvous", root, tmp_path), nprocs=2)
    dataset = load_split(root, "val")
    oracle = Oracle(dataset, answer_every=2)
    alone = {**coco_metrics(oracle, dataset, progress=False), **proposal_recall(oracle, dataset, progress=False)}
    assert 0.2 < alone["AP"] < 0.8  # half the images answered: a rank alone would see 1.0 or 0.0
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == pytest.approx(alone)


def gradients_as_rank(rank: int, world_size: int, init_file: Path, out: Path) -> None:
    """One DDP process: fpnlab.engine.distributed.wrap a small model, one backward pass on this rank's own batch."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = wrap(torch.nn.Linear(3, 2), torch.device("cpu"), sync_batchnorm=False)
    x = torch.arange(12.0).reshape(4, 3) * (rank + 1)  # each rank sees other data
    loss = (model(x) ** 2).mean()
    loss.backward()
    averaged = average_across_processes({"loss": loss})
    torch.save({"grad": model.module.weight.grad, "loss": averaged["loss"]}, out / f"grad{rank}.pt")
    dist.destroy_process_group()


def test_ddp_averages_gradients_and_losses_over_processes(tmp_path):
    torch.multiprocessing.spawn(gradients_as_rank, args=(2, tmp_path / "rendezvous", tmp_path), nprocs=2)
    torch.manual_seed(0)
    alone = torch.nn.Linear(3, 2)
    grads, losses = [], []
    for rank in (0, 1):  # the same model on each rank's batch, in one process: the mean is what DDP must give
        alone.zero_grad()
        loss = (alone(torch.arange(12.0).reshape(4, 3) * (rank + 1)) ** 2).mean()
        loss.backward()
        grads.append(alone.weight.grad.clone())
        losses.append(loss.item())
    for rank in (0, 1):
        result = torch.load(tmp_path / f"grad{rank}.pt", weights_only=True)
        torch.testing.assert_close(result["grad"], (grads[0] + grads[1]) / 2)
        assert result["loss"] == pytest.approx(sum(losses) / 2)
