"""The training state: everything that changes while a run trains, in one object (FPN paper, Sec. 5.1).

    state = TrainState.create(cfg, train_set, device)   # a fresh model, SGD, the lr schedule, the scaler
    state.restore(load_checkpoint(path), path)          # or continue a run
    save_checkpoint(path, state.checkpoint(loss))       # what `restore` reads back

The loop, the checkpoint and resuming all go through this object, so a new piece of training state
(an EMA of the weights, say) is added here and nowhere else.

Optimisation: SGD with momentum; weight decay on weights only, not on norm layers' scales or any
bias; the learning rate warms up linearly from lr x warmup_factor, then decays by steps or a cosine.

Resuming with changed settings (what runs is what is recorded):
  * settings that change the model, the data or their order (FIXED_ON_RESUME: every model.* setting,
    dataset, max_train_images, hflip_prob, batch_size, seed) are refused, naming them, with how to
    start afresh;
  * every other setting (lr, momentum, weight_decay, the warm-up, the schedule, iterations, gamma,
    clip_grad_norm, checkpoint and log intervals, ...) takes effect from the resume iteration: the
    restored optimizer and lr schedule take the new values, and metrics.csv's lr column shows them.
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
from fpnlab.model.config import DetectorConfig
from fpnlab.model.detector import FPNDetector, build_detector

# TrainConfig settings a resumed run cannot change: they change the model, the data or their order.
FIXED_ON_RESUME = ("model", "dataset", "max_train_images", "hflip_prob", "batch_size", "seed")
DAMAGE = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError)  # a broken state's errors


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
        """A fresh state: the detector of cfg.model for the training set's classes, initialised from cfg.seed.

        The state's config records the classes the model has (cfg.model.num_classes comes from the data).
        """
        cfg = with_classes_of(cfg, train_set.num_classes)
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
        """Continue from a checkpoint of this run; FpnlabError when it cannot be continued with this config.

        Settings of FIXED_ON_RESUME must be the checkpoint's; every other changed setting takes effect now.
        """
        if any(key not in checkpoint for key in ("optimizer", "scheduler", "scaler", "rng", "iteration")):
            raise FpnlabError(f"{source} holds weights only (an exported model), no training state to resume.")
        done = checkpoint["iteration"]
        if not isinstance(done, int) or isinstance(done, bool) or done < 0:
            raise FpnlabError(f"{source} is damaged: its iteration is {done!r}, not a whole number >= 0.")
        if done > self.cfg.iterations:
            raise FpnlabError(
                f"{source} has already trained {done} iterations, more than iterations="
                f"{self.cfg.iterations}; raise iterations to continue it, or use another run folder."
            )
        fixed = [name for name in self.changed_settings(checkpoint, everything=True) if name not in self.changeable()]
        if fixed:
            raise FpnlabError(
                f"{source} was trained with other {', '.join(fixed)}; settings that change the model, the data "
                "or their order cannot change when a run resumes: resume with the values in its config.json, "
                "or start afresh in another --run-dir."
            )
        if checkpoint.get("categories", self.categories) != self.categories:
            raise FpnlabError(
                f"{source} was trained on the categories {', '.join(map(str, checkpoint['categories']))}, but the "
                f"training set now has {', '.join(self.categories)}; start afresh in another --run-dir."
            )
        load_weights(self.detector, checkpoint["model"], source)
        try:
            self._load_training_state(checkpoint)
        except DAMAGE as err:
            raise FpnlabError(
                f"{source} holds damaged training state ({type(err).__name__}: {str(err).strip()[:100]}); "
                "start afresh in another --run-dir, or restore the checkpoint from a copy."
            ) from None
        self.iteration = done
        self.apply_schedule()

    def _load_training_state(self, checkpoint: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                buffer = self.optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None and buffer.shape != param.shape:
                    raise ValueError(
                        f"a momentum buffer of shape {tuple(buffer.shape)} for a {tuple(param.shape)} weight"
                    )
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"])

    def apply_schedule(self) -> None:
        """The optimizer and lr schedule take this config's lr, momentum and weight decay from self.iteration on."""
        decay, no_decay = self.optimizer.param_groups
        for group in (decay, no_decay):
            group["initial_lr"], group["momentum"] = self.cfg.lr, self.cfg.momentum
            group["lr"] = self.cfg.lr * lr_factor(self.iteration, self.cfg)  # what LambdaLR computes there
        decay["weight_decay"] = self.cfg.weight_decay
        self.scheduler.base_lrs = [self.cfg.lr, self.cfg.lr]

    def changed_settings(self, checkpoint: dict[str, Any], everything: bool = False) -> list[str]:
        """The settings (dotted names) this config changes from those the checkpoint was trained with: those
        that take effect on resume, or with `everything` those that cannot change too."""
        before = checkpoint.get("train_config", {})
        if not isinstance(before, dict):
            return []
        before = dict(before)
        if isinstance(before.get("model"), dict) and isinstance(checkpoint.get("model_config"), dict):
            # the classes come from the dataset: compare with what the checkpoint's model has
            before["model"] = {**before["model"], "num_classes": checkpoint["model_config"].get("num_classes")}
        changed = differences(before, self.cfg.to_dict())
        return changed if everything else [name for name in changed if name in self.changeable()]

    @staticmethod
    def changeable() -> set[str]:
        """The TrainConfig settings a resumed run may change: all but FIXED_ON_RESUME."""
        return {f.name for f in dataclasses.fields(TrainConfig)} - set(FIXED_ON_RESUME)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def differences(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings whose values differ ('lr', 'model.rpn.nms_thresh'); names missing from
    `before` (an older checkpoint) count as unchanged."""
    found = []
    for name, value in after.items():
        old = before.get(name, value)
        if isinstance(value, dict) and isinstance(old, dict):
            found += differences(old, value, f"{prefix}{name}.")
        elif old != value and not (isinstance(old, list) and tuple(old) == value):
            found.append(f"{prefix}{name}")
    return found


def with_classes_of(cfg: TrainConfig, num_classes: int) -> TrainConfig:
    """cfg with model.num_classes = the training set's (background included); FpnlabError when the user set
    another number (it would be recorded, but the model is built for the data's classes)."""
    default = DetectorConfig.__dataclass_fields__["num_classes"].default
    if cfg.model.num_classes not in (default, num_classes):
        raise FpnlabError(
            f"TrainConfig.model.num_classes is {cfg.model.num_classes}, but it is taken from the dataset, whose "
            f"{num_classes - 1} categories make {num_classes} classes with the background; leave it unset."
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=num_classes))


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
