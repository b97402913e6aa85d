"""The training state: everything that changes while a run trains, in one object (FPN paper, Sec. 5.1).

    state = TrainState.create(cfg, train_set, device)   # a fresh model, SGD, the lr schedule, the scaler
    state.restore(load_checkpoint(path), path)          # or continue a run
    save_checkpoint(path, state.checkpoint(loss))       # what `restore` reads back

The loop, the checkpoint and resuming all go through this object, so a new piece of training state
(an EMA of the weights, say) is added here and nowhere else.

Optimisation: SGD with momentum; weight decay on weights only, not on norm layers' scales or any
bias; the learning rate warms up linearly from lr x warmup_factor, then decays by steps or a cosine.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from fpnlab.data import CocoDetection
from fpnlab.engine.checkpoint import load_weights, rng_state, set_rng_state
from fpnlab.engine.distributed import unwrap
from fpnlab.engine.presets import TrainConfig
from fpnlab.errors import FpnlabError
from fpnlab.model.detector import FPNDetector, build_detector


@dataclass
class TrainState:
    """Model, optimizer, lr schedule, gradient scaler and the iteration, with the config that made them."""

    cfg: TrainConfig
    model: nn.Module  # the FPNDetector, or the DistributedDataParallel wrapping it
    optimizer: torch.optim.SGD
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # the forward pass's autocast type (None: full precision)
    categories: list[str]  # class names of the training set, label i -> categories[i - 1]
    label_to_cat_id: dict[int, int]  # label -> the annotation file's category id
    iteration: int = 0  # iterations done

    @classmethod
    def create(cls, cfg: TrainConfig, train_set: CocoDetection, device: torch.device) -> TrainState:
        """A fresh state: the detector of cfg.model for the training set's classes, initialised from cfg.seed."""
        model = build_model(cfg, train_set.num_classes).to(device)
        optimizer = make_optimizer(model, cfg)
        scheduler = LambdaLR(optimizer, lambda iteration: lr_factor(iteration, cfg))
        amp_dtype = autocast_dtype(cfg, device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        return cls(
            cfg,
            model,
            optimizer,
            scheduler,
            scaler,
            amp_dtype,
            list(train_set.categories),
            dict(train_set.label_to_cat_id),
        )

    @property
    def detector(self) -> FPNDetector:
        """The detector itself (unwrapped from DistributedDataParallel)."""
        return unwrap(self.model)

    def checkpoint(self, loss: float | None = None) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (see fpnlab.engine.checkpoint)."""
        return {
            "model": self.detector.state_dict(),
            "model_config": dataclasses.asdict(self.detector.config),
            "categories": self.categories,
            "label_to_cat_id": self.label_to_cat_id,
            "train_config": self.cfg.to_dict(),
            "iteration": self.iteration,
            "loss": loss,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }

    def restore(self, checkpoint: dict[str, Any], source: Any) -> None:
        """Continue from a checkpoint of this run; FpnlabError when it cannot be continued with this config."""
        if any(key not in checkpoint for key in ("optimizer", "scheduler", "scaler", "rng", "iteration")):
            raise FpnlabError(f"{source} holds weights only (an exported model), no training state to resume.")
        done = checkpoint["iteration"]
        if done > self.cfg.iterations:
            raise FpnlabError(
                f"{source} has already trained {done} iterations, more than iterations="
                f"{self.cfg.iterations}; raise iterations to continue it, or use another run folder."
            )
        load_weights(self.detector, checkpoint["model"], source)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"])
        self.iteration = done

    def changed_settings(self, checkpoint: dict[str, Any]) -> list[str]:
        """The TrainConfig fields that differ from those the checkpoint was trained with."""
        before = checkpoint.get("train_config", {})
        return [name for name, value in self.cfg.to_dict().items() if before.get(name, value) != value]

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def build_model(cfg: TrainConfig, num_classes: int) -> FPNDetector:
    """The detector of cfg.model for `num_classes` (background included), initialised from cfg.seed."""
    torch.manual_seed(cfg.seed)
    return build_detector(cfg.model, num_classes=num_classes)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; weight decay on weights only, not on norm layers' scales or any bias."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """lr multiplier at `iteration`: linear warm-up from warmup_factor to 1, then step or cosine decay."""
    if iteration < cfg.warmup_iterations:
        alpha = iteration / cfg.warmup_iterations
        return cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "cosine":
        done = (iteration - cfg.warmup_iterations) / max(1, cfg.iterations - cfg.warmup_iterations)
        return 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
    return cfg.gamma ** sum(iteration >= step * cfg.iterations for step in cfg.lr_steps)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA only: bf16 where the GPU computes it natively (compute capability >= 8.0: A100, L4,
    H100; no scaler needed), else fp16 with the GradScaler (a T4 is 7.5, a V100 7.0).

    Not torch.cuda.is_bf16_supported(): by default it also counts bf16 that the GPU only emulates, which a T4
    runs, slowly (its including_emulation=False, from torch 2.4, asks what the capability answers here)."""
    if not cfg.amp or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def precision_note(amp_dtype: torch.dtype | None, device: torch.device) -> str:
    """The line training starts with on a GPU: the precision chosen, and why (see autocast_dtype)."""
    if amp_dtype is None:
        return "precision: float32 (amp=False)"
    major, minor = torch.cuda.get_device_capability(device)
    card = f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}"
    if amp_dtype == torch.bfloat16:
        return f"precision: bf16 autocast ({card}: native bf16, no loss scaling needed)"
    return f"precision: fp16 autocast with a GradScaler ({card}: no native bf16)"
