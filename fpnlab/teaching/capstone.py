"""The assignment's capstone, the part that runs the student's own units: in a process of their own
(fpnlab.grading.remote.run_job), with no fallback, returning plain data for the grader to judge.

    detections("runs/capstone/model.pt", 120)     # {"config": ..., "outputs": [(image_id, {"boxes", ...}), ...]}
    training_probe(iterations=40, images=8)      # {"losses": [...], "gradients": {"backbone": 1.53, ...}}

The probe trains the "test" preset's small detector for a few dozen fixed-seed iterations on a handful of
shapes-mini images: every unit of stages 0-6 takes part (the losses through matcher, sampler, encode,
rpn_loss and roi_loss; the gradients back through pooler, roi_align, fpn and backbone). The grader
compares its losses and first gradients with the lab's reference run (results/assignment_training.json).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from fpnlab.data import load_split
from fpnlab.engine.batches import iter_batches, train_loader
from fpnlab.engine.checkpoint import build_model_from, load_checkpoint
from fpnlab.engine.evaluate import run_over
from fpnlab.engine.loop import train_step
from fpnlab.engine.presets import TrainConfig, get_preset
from fpnlab.engine.state import TrainState

PROBE_SEED = 0


def detections(model_path: str, max_images: int) -> dict[str, Any]:
    """The submitted model's settings and its detections on the first `max_images` of shapes-mini val."""
    checkpoint = load_checkpoint(Path(model_path))  # torch.load(weights_only=True): data only
    model = build_model_from(checkpoint, model_path)
    outputs = run_over(model, load_split("shapes-mini", "val"), model, max_images, 4, None, "eval")
    return {"config": checkpoint["model_config"], "outputs": outputs}


def probe_config(iterations: int, images: int) -> TrainConfig:
    """The probe's training: the "test" preset's detector, `images` training images, fixed seed."""
    return get_preset("test", iterations=iterations, max_train_images=images, seed=PROBE_SEED, warmup_iterations=2)


def training_probe(iterations: int, images: int) -> dict[str, Any]:
    """The total loss of each iteration, and the gradient norm of each part of the detector after the first."""
    torch.manual_seed(PROBE_SEED)
    torch.set_num_threads(1)
    cfg, device = probe_config(iterations, images), torch.device("cpu")
    dataset = load_split("shapes-mini", "train")
    state = TrainState.create(cfg, dataset, device)
    losses: list[float] = []
    gradients: dict[str, float] = {}
    for images_, targets in iter_batches(train_loader(dataset, cfg, 0, 0, 1), device, 0, cfg.iterations):
        losses.append(float(sum(train_step(state, images_, targets).values())))
        if not gradients:
            gradients = gradient_norms(state.detector)
    return {"losses": losses, "gradients": gradients}


def gradient_norms(model: torch.nn.Module) -> dict[str, float]:
    """The norm of the gradient of each part (backbone, neck, rpn, roi_heads), NaN where one is missing."""
    squares: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            part = name.split(".")[0]
            grad = parameter.grad
            value = float(grad.double().pow(2).sum()) if grad is not None else math.nan
            squares[part] = squares.get(part, 0.0) + value
    return {part: math.sqrt(value) for part, value in squares.items()}
