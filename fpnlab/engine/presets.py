"""Training presets: every number a training run uses, named, typed and in one place.

A `TrainConfig` holds the data, the schedule and (in `model`) the detector's `DetectorConfig`.
Seven presets cover the lab's needs:

    cpu        a laptop CPU: ResNet-tiny FPN trained from scratch on shapes-mini at 2x (320 px), minutes
    gpu        one big GPU: ResNet-50 FPN on the full synthetic set (`fpnlab make-data`) at 512 px, bf16
    colab      Colab's free T4: the gpu preset's detector and data for an eighth of its images, fp16
    demo       the shipped checkpoint (data/checkpoints/demo.pt): the cpu preset trained longer
    demo_mask  the shipped Mask R-CNN (data/checkpoints/demo_mask.pt): demo with the mask head (notebook 09)
    gpu_mask   the gpu preset with the mask head: ResNet-50 Mask R-CNN
    test       tiny, for unit tests: seconds

The notebooks' settings cells take `auto_preset()`: colab on Colab's GPU, gpu on any other GPU, cpu otherwise.

Any value can be overridden, in Python or on the command line; names and types are checked at once:

    get_preset("cpu", lr=0.01, model={"norm": "gn", "rpn": {"nms_thresh": 0.6}})
    fpnlab train --preset cpu --set lr=0.01 --set model.norm=gn --set model.rpn.nms_thresh=0.6
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from fpnlab.env import default_device, on_colab
from fpnlab.errors import FpnlabError
from fpnlab.model.config import BoxHeadConfig, DetectorConfig, MaskHeadConfig, ProposalCounts, RPNConfig
from fpnlab.overrides import update

SCHEDULES = ("step", "cosine")
MAX_SEED = 2**32 - 1  # the seeds numpy and torch take


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `batch_size` is per process: under DDP the global batch is batch_size x N."""

    # data
    dataset: str = "shapes-mini"  # a name known to fpnlab.data.load_split, or a folder with train.json/val.json
    max_train_images: int | None = None  # train on the first N images only (None: all)
    max_val_images: int | None = None  # evaluate on the first N images only (None: all)
    hflip_prob: float = 0.5  # random horizontal flip, the only augmentation (as in the FPN paper)
    num_workers: int = 0  # data-loading processes; the data order does not depend on it
    # the detector (num_classes is taken from the dataset)
    model: DetectorConfig = field(default_factory=DetectorConfig)
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
    amp: bool = True  # mixed precision on CUDA only: bf16 where the GPU has it natively, else fp16 with a GradScaler
    # bookkeeping
    seed: int = 0  # fixes initialisation, data order and augmentation
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    checkpoint_every: int = 200  # iterations between checkpoints (and one at the end)
    log_every: int = 10  # iterations between rows of metrics.csv
    eval_at_end: bool = True  # COCO metrics on the val split after the last iteration

    def __post_init__(self) -> None:
        for rule, message in self._rules():
            if not rule:
                raise FpnlabError(f"TrainConfig.{message}.")

    def _rules(self) -> list[tuple[bool, str]]:
        """(holds?, "what must hold, got what") for every setting with a limited range."""
        rules = [
            (getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
            for name in ("iterations", "batch_size", "checkpoint_every", "log_every")
        ]
        rules += [
            (
                getattr(self, name) is None or getattr(self, name) >= 1,
                f"{name} must be >= 1 (or None for all images), got {getattr(self, name)}",
            )
            for name in ("max_train_images", "max_val_images")
        ]
        return rules + [
            (0 <= self.hflip_prob <= 1, f"hflip_prob is a probability in [0, 1], got {self.hflip_prob}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                0 <= self.warmup_iterations <= self.iterations,
                f"warmup_iterations must be in 0..iterations ({self.iterations}), got {self.warmup_iterations}",
            ),
            (0 < self.warmup_factor <= 1, f"warmup_factor must be in (0, 1], got {self.warmup_factor}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (
                all(0 < s < 1 for s in self.lr_steps) and list(self.lr_steps) == sorted(self.lr_steps),
                f"lr_steps are increasing fractions of the run in (0, 1), got {self.lr_steps}",
            ),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (
                self.clip_grad_norm is None or self.clip_grad_norm > 0,
                f"clip_grad_norm must be > 0 (or None: no clipping), got {self.clip_grad_norm}",
            ),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {self.seed}"),
            (self.batch_size <= 4096, f"batch_size must be <= 4096, got {self.batch_size}"),
            (self.num_workers <= 256, f"num_workers must be <= 256, got {self.num_workers}"),
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (checkpoints load with weights_only=True)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return update(cls(), values)


# The detector of the CPU presets: small enough to train from scratch on 2 cores in minutes.
# BatchNorm in train mode learns from scratch (no pretrained weights offline); every layer trains.
# The scale is the paper's, seen through the receptive field (notebook 08 measures why it matters):
# shapes-mini's 160 px images are upsampled 2x to 320 px, as the paper upsamples COCO's ~480 px images
# to 800 px (1.7x), so a small object (8-32 px) is 16-64 px at the input, about the size of the
# bottom-up P2's receptive field (43 px for ResNet-tiny with the RPN's 3x3; ~51 px for ResNet-50 in
# the paper). The anchors are the paper's 32..256 on P2..P5; P6 is left out because its 512 px
# anchors would be larger than the 320 px input. Eq. 1's canonical size follows the input scale
# (224 x 320 / 800 = 89.6 px), so ROIs are pooled from every level P2..P5.
CPU_MODEL = DetectorConfig(
    backbone="resnet_tiny",
    norm="bn",
    trainable_layers=5,
    min_size=320,
    max_size=320,
    levels=("p2", "p3", "p4", "p5"),
    fpn_channels=64,
    anchor_sizes=(32, 64, 128, 256),
    rpn=RPNConfig(train=ProposalCounts(1000, 500), test=ProposalCounts(500, 300)),
    box=BoxHeadConfig(representation_size=256, batch_size_per_image=128),
)

# The paper's ResNet-50 FPN on data/shapes' 512 px images, trained from scratch (no download needed).
GPU_MODEL = DetectorConfig(backbone="resnet50", norm="bn", trainable_layers=5, min_size=512, max_size=512)

# Mask R-CNN's head on the CPU detector: as wide as its pyramid (64 channels, not 256), four convs as the paper.
CPU_MASK_MODEL = dataclasses.replace(
    CPU_MODEL, mask=MaskHeadConfig(enabled=True, conv_layers=(64, 64, 64, 64), deconv_channels=64)
)

# Batches of 2: on a CPU, twice the SGD steps for the same compute beat batches of 4 (AP50 0.33 vs 0.21
# after 2400 images; BatchNorm still sees 2 x 64 x 64 positions per channel at C2).
CPU_PRESET = TrainConfig(
    dataset="shapes-mini",
    model=CPU_MODEL,
    iterations=1200,
    batch_size=2,
    lr=0.03,
    warmup_iterations=100,
    schedule="cosine",
    checkpoint_every=200,
    log_every=10,
)
DEMO_PRESET = dataclasses.replace(CPU_PRESET, iterations=3000, checkpoint_every=500)  # the cpu preset, longer
# ResNet-50 FPN on `fpnlab make-data --out data/shapes --train 4000 --val 500` (512 px images),
# sized for about 12 minutes on one H100 in bf16: 16 images x 3000 iterations = 12 epochs.
GPU_PRESET = TrainConfig(
    dataset="data/shapes",
    model=GPU_MODEL,
    iterations=3000,
    batch_size=16,
    lr=0.04,
    warmup_iterations=300,
    schedule="cosine",
    num_workers=8,
    checkpoint_every=500,
    log_every=20,
)

PRESETS: dict[str, TrainConfig] = {
    "cpu": CPU_PRESET,
    "demo": DEMO_PRESET,
    "demo_mask": dataclasses.replace(DEMO_PRESET, model=CPU_MASK_MODEL),
    "gpu": GPU_PRESET,
    # Colab's free T4 (16 GB, 2 CPU cores, fp16 with a GradScaler): the gpu preset's detector and data, an eighth
    # of its images (8 x 750 = 6000, 1.5 epochs), lr scaled with the batch; about 15 minutes (estimated_minutes).
    # A checkpoint every 250 iterations: a session that disconnects resumes from at most ~5 minutes back.
    "colab": TrainConfig(
        dataset="data/shapes",
        model=GPU_MODEL,
        iterations=750,
        batch_size=8,
        lr=0.02,
        warmup_iterations=100,
        schedule="cosine",
        num_workers=2,
        checkpoint_every=250,
        log_every=10,
    ),
    # The gpu preset as Mask R-CNN: its data hold a polygon per object too, so only the head is added.
    "gpu_mask": dataclasses.replace(
        GPU_PRESET, model=dataclasses.replace(GPU_MODEL, mask=MaskHeadConfig(enabled=True))
    ),
    "test": TrainConfig(
        dataset="shapes-mini",
        max_train_images=8,
        max_val_images=4,
        model=dataclasses.replace(
            CPU_MODEL,
            min_size=128,
            max_size=128,
            anchor_sizes=(16, 32, 64, 128),
            fpn_channels=32,
            rpn=RPNConfig(train=ProposalCounts(1000, 200), test=ProposalCounts(500, 100)),
            box=BoxHeadConfig(representation_size=64, batch_size_per_image=64),
        ),
        iterations=12,
        batch_size=2,
        lr=0.01,
        warmup_iterations=2,
        schedule="cosine",
        checkpoint_every=6,
        log_every=1,
        eval_at_end=False,
    ),
}


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset `name` with `overrides` applied (a dict for `model` and its groups changes single fields)."""
    if name not in PRESETS:
        raise FpnlabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return update(PRESETS[name], overrides)


def auto_preset(device: torch.device | str | None = None) -> str:
    """The preset for this machine (the notebooks' settings cells): "colab" on Colab's GPU, "gpu" on any other CUDA
    GPU, "cpu" otherwise (a CPU, or Apple's MPS). `device`: the one to train on (default: the best one here)."""
    device = torch.device(device) if device is not None else default_device()
    if device.type != "cuda":
        return "cpu"
    return "colab" if on_colab() else "gpu"


# Expected training times: ESTIMATES, until a run on these cards is measured (no GPU has been lent to the project
# yet). The gpu preset is sized for GPU_PRESET_H100_MINUTES on one H100. A T4 trains about a tenth as fast as an
# H100 (Nvidia's datasheets: memory bandwidth 320 GB/s vs 3.35 TB/s, dense fp16 tensor math 65 vs ~990 TFLOPS; a
# detector's many small, memory-bound kernels sit nearer the bandwidth ratio). For the same ResNet-50 FPN, the
# time scales with the images trained on x their pixels.
GPU_PRESET_H100_MINUTES = 12.0
CARD_SPEED = {"H100": 1.0, "T4": 0.1}  # training throughput relative to one H100
ESTIMATE_CARDS = {"gpu": "H100", "colab": "T4"}  # the card each estimate is for


def estimated_minutes(name: str) -> float:
    """Minutes of training of the gpu or colab preset on its card (ESTIMATE_CARDS): an estimate, not a measurement;
    evaluation and making data/shapes come on top.

    estimated_minutes("colab")   # 12 min x (6000 / 48000 images at 512 px) / 0.1 (a T4) = 15.0
    """
    if name not in ESTIMATE_CARDS:
        raise FpnlabError(f"no time estimate for preset {name!r}; there are estimates for {', '.join(ESTIMATE_CARDS)}.")
    cfg, gpu = PRESETS[name], PRESETS["gpu"]
    work, gpu_work = (c.iterations * c.batch_size * c.model.min_size * c.model.max_size for c in (cfg, gpu))
    return GPU_PRESET_H100_MINUTES * work / gpu_work / CARD_SPEED[ESTIMATE_CARDS[name]]
