"""Training presets: every number a training run uses, named and in one place.

A `TrainConfig` holds the schedule, the data and (in `model`) the detector's settings, passed on to
`fpnlab.detector.DetectorConfig`. Four presets cover the lab's needs:

    cpu   a laptop CPU: ResNet-tiny FPN trained from scratch on shapes-mini at 256 px, a few minutes
    gpu   one GPU: ResNet-50 FPN on the full synthetic set (`fpnlab make-data`) at 512 px, bf16
    demo  the shipped checkpoint (data/checkpoints/): the cpu preset trained longer
    test  tiny, for unit tests: seconds

Any value can be overridden, in Python or on the command line:

    get_preset("cpu", lr=0.01, model={"norm": "gn"})
    fpnlab train --preset cpu --set lr=0.01 --set model.norm=gn
"""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fpnlab.errors import FpnlabError

SCHEDULES = ("step", "cosine")


@dataclass
class TrainConfig:
    """One training run. `batch_size` is per process: under DDP the global batch is batch_size x N."""

    # data
    dataset: str = "shapes-mini"  # a name known to fpnlab.data.load_split, or a folder with train.json/val.json
    max_train_images: int | None = None  # train on the first N images only (None: all)
    max_val_images: int | None = None  # evaluate on the first N images only (None: all)
    hflip_prob: float = 0.5  # random horizontal flip, the only augmentation (as in the FPN paper)
    num_workers: int = 0  # data-loading processes; the data order does not depend on it
    # detector: fields of fpnlab.detector.DetectorConfig (num_classes comes from the dataset)
    model: dict[str, Any] = field(default_factory=dict)
    # optimisation: SGD with momentum, linear warm-up, then step or cosine decay (FPN paper, Sec. 5.1)
    iterations: int = 1000
    batch_size: int = 2
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 100
    warmup_factor: float = 0.001  # the lr starts at lr x warmup_factor and grows linearly
    schedule: str = "step"  # "step" or "cosine"
    lr_steps: tuple[float, ...] = (0.67, 0.89)  # step schedule: fractions of `iterations` where lr *= gamma
    gamma: float = 0.1
    clip_grad_norm: float | None = 10.0  # None: no clipping
    amp: bool = True  # mixed precision on CUDA only: bf16 where supported, else fp16 with a GradScaler
    # bookkeeping
    seed: int = 0  # fixes initialisation, data order and augmentation
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    checkpoint_every: int = 200  # iterations between checkpoints (and one at the end)
    log_every: int = 10  # iterations between rows of metrics.csv
    eval_at_end: bool = True  # COCO metrics on the val split after the last iteration

    def check(self) -> TrainConfig:
        """Raise FpnlabError naming the first field whose value cannot work; return self."""
        positive = ("iterations", "batch_size", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise FpnlabError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.schedule not in SCHEDULES:
            raise FpnlabError(f"TrainConfig.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}.")
        if not self.lr > 0:
            raise FpnlabError(f"TrainConfig.lr must be > 0, got {self.lr}.")
        if self.warmup_iterations < 0 or self.num_workers < 0:
            raise FpnlabError("TrainConfig.warmup_iterations and num_workers must be >= 0.")
        if any(not 0 < s < 1 for s in self.lr_steps):
            raise FpnlabError(f"TrainConfig.lr_steps are fractions of the run in (0, 1), got {self.lr_steps}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (checkpoints load with weights_only=True)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return apply_overrides(cls(), values)


# The detector of the CPU presets: small enough to train from scratch on 2 cores in minutes.
# BatchNorm in train mode learns from scratch (no pretrained weights offline); every layer trains.
_CPU_MODEL = dict(
    backbone="resnet_tiny", norm="bn", trainable_layers=5,
    min_size=256, max_size=256,  # shapes-mini images are resized to 256 x 256
    fpn_channels=64, representation_size=256,
    anchor_sizes=(16, 32, 64, 128, 256),  # half the paper's 32..512: the images are a quarter of 800 px wide
    rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
    rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
    box_batch_size_per_image=128,
)

PRESETS: dict[str, dict[str, Any]] = {
    # Batches of 2: on a CPU, twice the SGD steps for the same compute beat batches of 4 (AP50 0.33 vs 0.21
    # after 2400 images; BatchNorm still sees 2 x 64 x 64 positions per channel at C2).
    "cpu": dict(
        dataset="shapes-mini", model=_CPU_MODEL,
        iterations=1200, batch_size=2, lr=0.03, warmup_iterations=100, schedule="cosine",
        checkpoint_every=200, log_every=10,
    ),
    "demo": dict(
        dataset="shapes-mini", model=_CPU_MODEL,
        iterations=3000, batch_size=2, lr=0.03, warmup_iterations=100, schedule="cosine",
        checkpoint_every=500, log_every=10,
    ),
    # ResNet-50 FPN on `fpnlab make-data --out data/shapes --train 4000 --val 500` (512 px images),
    # sized for about 12 minutes on one H100 in bf16: 16 images x 3000 iterations = 12 epochs.
    "gpu": dict(
        dataset="data/shapes",
        model=dict(backbone="resnet50", norm="bn", trainable_layers=5, min_size=512, max_size=512),
        iterations=3000, batch_size=16, lr=0.04, warmup_iterations=300, schedule="cosine",
        num_workers=8, checkpoint_every=500, log_every=20,
    ),
    "test": dict(
        dataset="shapes-mini", max_train_images=8, max_val_images=4,
        model=dict(_CPU_MODEL, min_size=128, max_size=128, anchor_sizes=(8, 16, 32, 64, 128),
                   fpn_channels=32, representation_size=64, rpn_post_nms_top_n_train=200,
                   rpn_post_nms_top_n_test=100, box_batch_size_per_image=64),
        iterations=12, batch_size=2, lr=0.01, warmup_iterations=2, schedule="cosine",
        checkpoint_every=6, log_every=1, eval_at_end=False,
    ),
}


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset `name` with `overrides` applied; `model={...}` updates the detector fields one by one."""
    if name not in PRESETS:
        raise FpnlabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return apply_overrides(apply_overrides(TrainConfig(), PRESETS[name]), overrides)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of `cfg` with fields replaced; unknown field names raise FpnlabError."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise FpnlabError(f"unknown TrainConfig field {unknown[0]!r}; known fields: {', '.join(sorted(names))}.")
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    values = {name: _coerce(name, value, types[name]) for name, value in overrides.items()}
    if "model" in values:
        values["model"] = {**cfg.model, **values["model"]}
    return dataclasses.replace(cfg, **values).check()


def _coerce(name: str, value: Any, type_name: str) -> Any:
    """`value` as the field's declared type ("int", "float | None", "tuple[float, ...]", ...), else FpnlabError."""
    base = type_name.split(" | ")[0]
    if value is None and "None" in type_name:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base == "float" and number:
        return float(value)
    if base == "tuple[float, ...]" and isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return tuple(float(v) for v in value)
    if base == "tuple[float, ...]" and number:
        return (float(value),)
    expected = {"int": int, "bool": bool, "str": str, "dict[str, Any]": dict}.get(base)
    if expected is not None and isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise FpnlabError(f"TrainConfig.{name} expects {type_name}, got {value!r}.")


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` strings -> overrides; `model.key=value` sets one detector field.

    Values are Python literals (`0.01`, `none`, `(0.5, 0.9)`, `true`); anything else stays a string.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise FpnlabError(f"--set expects key=value, got {item!r}.")
        value = _literal(text)
        if key.startswith("model."):
            overrides.setdefault("model", {})[key.removeprefix("model.")] = value
        else:
            overrides[key] = value
    return overrides


def _literal(text: str) -> Any:
    """'0.01' -> 0.01, 'true' -> True, 'none' -> None, '1,2' -> (1, 2), 'resnet18' -> 'resnet18'."""
    spelled = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in spelled:
        return spelled[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
