"""Every setting of the detector, in typed dataclasses grouped by stage; defaults are the paper's / torchvision's.

    DetectorConfig
      backbone, norm, trainable_layers, pretrained_backbone   bottom-up ResNet (fpnlab.model.backbone)
      neck, top_down, lateral, levels, fpn_channels           FPN or single-scale baseline (fpnlab.model.fpn)
      anchor_sizes, aspect_ratios                             one anchor size per level (fpnlab.model.anchors)
      min_size, max_size, image_mean, image_std               input transform (fpnlab.model.transform)
      rpn: RPNConfig                                          proposals (fpnlab.model.rpn)
      roi: RoIConfig                                          Eq. 1 and ROI pooling (fpnlab.model.levels, .poolers)
      box: BoxHeadConfig                                      the Fast R-CNN head: 2fc, or conv5 on C4
                                                              (fpnlab.model.roi_heads, .res5_head)
      mask: MaskHeadConfig                                    Mask R-CNN's head, off unless enabled (.mask_head)
      rpn_only                                                the RPN alone (paper Table 1)

A config is plain values all the way down: `DetectorConfig.from_dict(dataclasses.asdict(config))`
rebuilds it; `upgrade_flat_layout` reads the flat layout of checkpoints written before the groups existed.

The ablations of the paper's Tables 1-2 are switches here: neck="c4"/"c5" (rows a, b), top_down=False
(row d), lateral=False (row e), levels=("p2",) (row f); with one level, all anchor sizes go on it and every
ROI is pooled from it. Table 3's row (a) is neck="c4" with the conv5 head, box=BoxHeadConfig(head="res5").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fpnlab.errors import FpnlabError
from fpnlab.model.fpn import FPN_LEVELS
from fpnlab.model.transform import IMAGENET_MEAN, IMAGENET_STD
from fpnlab.overrides import update

NECKS = ("fpn", "c4", "c5")
POOLERS = ("align", "pool")
BOX_HEADS = ("2fc", "res5")  # FPN's two 1024-d FC layers; the ResNet's conv5 stage on C4 (Table 3 row a)
PAPER_INPUT_SIZE = 800  # the FPN paper resizes the shorter image side to 800 px (Sec. 5.1)
PAPER_CANONICAL_SIZE = 224  # Eq. 1's canonical ROI side at that input size
SMOOTH_L1_BETA = 1.0 / 9  # both heads' box loss: where smooth L1 turns from quadratic to linear (Detectron's value)
MAX_HEAD_PARAMETERS = 500_000_000  # fc6 = channels x 7 x 7 x representation_size: 2 GB at this size


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FpnlabError(message)


@dataclass(frozen=True)
class ProposalCounts:
    """How many RPN candidates survive in one phase (training or testing)."""

    pre_nms_top_n: int  # per level: the highest-objectness anchors decoded before NMS
    post_nms_top_n: int  # per image: the best proposals kept after NMS

    def __post_init__(self) -> None:
        _require(
            self.pre_nms_top_n >= 1 and self.post_nms_top_n >= 1,
            f"RPN proposal counts must be >= 1, got {self.pre_nms_top_n} and {self.post_nms_top_n}.",
        )


@dataclass(frozen=True)
class RPNConfig:
    """The region proposal network (Faster R-CNN Sec. 3.1, FPN Sec. 4.1), torchvision's values."""

    train: ProposalCounts = field(default_factory=lambda: ProposalCounts(2000, 2000))
    test: ProposalCounts = field(default_factory=lambda: ProposalCounts(1000, 1000))
    nms_thresh: float = 0.7  # proposals overlapping a better one of the same level by more are dropped
    fg_iou_thresh: float = 0.7  # an anchor with IoU >= this with a gt box is positive ...
    bg_iou_thresh: float = 0.3  # ... below this negative, ignored in between
    batch_size_per_image: int = 256  # anchors sampled per image for the loss ...
    positive_fraction: float = 0.5  # ... at most half of them positive
    score_thresh: float = 0.0  # proposals with a lower objectness probability are dropped

    def __post_init__(self) -> None:
        _check_sampling(
            "RPNConfig",
            self.fg_iou_thresh,
            self.bg_iou_thresh,
            self.batch_size_per_image,
            self.positive_fraction,
            self.nms_thresh,
        )

    def counts(self, training: bool) -> ProposalCounts:
        """The proposal counts of the current phase."""
        return self.train if training else self.test


@dataclass(frozen=True)
class RoIConfig:
    """Which pyramid level pools each ROI (Eq. 1) and how it is pooled to a fixed grid."""

    pooler: str = "align"  # "align" (RoIAlign) or "pool" (RoIPool)
    output_size: int = 7  # the 2fc head's grid; the conv5 head pools twice as fine, then halves it (pool_size)
    sampling_ratio: int = 2
    aligned: bool = False
    canonical_size: float | None = None  # Eq. 1's 224; None: 224 x min_size / 800, following the input scale
    canonical_level: int = 4  # k0

    def __post_init__(self) -> None:
        _require(self.pooler in POOLERS, f"RoIConfig.pooler must be one of {POOLERS}, got {self.pooler!r}.")
        _require(1 <= self.output_size <= 32, f"RoIConfig.output_size must be in 1..32, got {self.output_size}.")
        _require(
            self.canonical_size is None or self.canonical_size > 0,
            f"RoIConfig.canonical_size must be > 0 (or None), got {self.canonical_size}.",
        )


@dataclass(frozen=True)
class BoxHeadConfig:
    """The Fast R-CNN head: 2 FC layers (or conv5), ROI sampling for training, post-processing (FPN Sec. 4.2)."""

    head: str = "2fc"  # "2fc" (FPN's) or "res5" (the ResNet's conv5 stage, C4 baseline only)
    representation_size: int = 1024  # width of the two FC layers (the 2fc head)
    fg_iou_thresh: float = 0.5  # an ROI with IoU >= this with a gt box is that box's class ...
    bg_iou_thresh: float = 0.5  # ... below this background
    batch_size_per_image: int = 512  # ROIs sampled per image for the loss ...
    positive_fraction: float = 0.25  # ... at most a quarter of them foreground
    reg_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)  # BoxCoder weights of the deltas
    score_thresh: float = 0.05  # detections scoring at most this are dropped
    nms_thresh: float = 0.5  # NMS within each class
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        _require(self.head in BOX_HEADS, f"BoxHeadConfig.head must be one of {BOX_HEADS}, got {self.head!r}.")
        _check_sampling(
            "BoxHeadConfig",
            self.fg_iou_thresh,
            self.bg_iou_thresh,
            self.batch_size_per_image,
            self.positive_fraction,
            self.nms_thresh,
        )
        _require(
            1 <= self.representation_size <= 16384,
            f"BoxHeadConfig.representation_size must be in 1..16384, got {self.representation_size}.",
        )
        _require(
            len(self.reg_weights) == 4 and all(w > 0 for w in self.reg_weights),
            f"BoxHeadConfig.reg_weights needs 4 positive numbers, got {self.reg_weights}.",
        )
        _require(
            self.detections_per_img >= 1,
            f"BoxHeadConfig.detections_per_img must be >= 1, got {self.detections_per_img}.",
        )


@dataclass(frozen=True)
class MaskHeadConfig:
    """The Mask R-CNN head (He et al. 2017, Fig. 4 right; torchvision's maskrcnn_resnet50_fpn): off by default."""

    enabled: bool = False
    pool_size: int = 14  # RoIAlign grid per ROI, from the level Eq. 1 picks
    sampling_ratio: int = 2
    conv_layers: tuple[int, ...] = (256, 256, 256, 256)  # 3 x 3 conv + ReLU layers, their widths
    dilation: int = 1
    deconv_channels: int = 256  # the 2x transposed conv: masks come out at 2 x pool_size (28 x 28)

    def __post_init__(self) -> None:
        for name, value, high in (("pool_size", self.pool_size, 64), ("dilation", self.dilation, 8)):
            _require(1 <= value <= high, f"MaskHeadConfig.{name} must be in 1..{high}, got {value}.")
        widths = (*self.conv_layers, self.deconv_channels)
        _require(
            len(self.conv_layers) >= 1 and all(1 <= c <= 4096 for c in widths),
            f"MaskHeadConfig needs one or more conv_layers and widths in 1..4096, got {self.conv_layers} and "
            f"deconv_channels {self.deconv_channels}.",
        )

    def mask_size(self) -> int:
        """The side of each predicted mask: the transposed conv doubles the pooled grid (14 -> 28)."""
        return 2 * self.pool_size


def _check_sampling(name: str, fg: float, bg: float, batch: int, fraction: float, nms: float) -> None:
    _require(0 <= bg <= fg <= 1, f"{name} needs 0 <= bg_iou_thresh <= fg_iou_thresh <= 1, got {bg} and {fg}.")
    _require(batch >= 1, f"{name}.batch_size_per_image must be >= 1, got {batch}.")
    _require(0 <= fraction <= 1, f"{name}.positive_fraction must be in [0, 1], got {fraction}.")
    _require(0 <= nms <= 1, f"{name}.nms_thresh is an IoU in [0, 1], got {nms}.")


@dataclass(frozen=True)
class DetectorConfig:
    """Every setting of an FPNDetector; defaults are torchvision's fasterrcnn_resnet50_fpn (see module doc)."""

    num_classes: int = 91  # including background (label 0); 91 for COCO as in torchvision
    backbone: str = "resnet50"  # resnet18/34/50/101 or resnet_tiny
    norm: str = "frozen_bn"  # frozen_bn (fine-tuning, torchvision equality), bn or gn (from scratch)
    trainable_layers: int = 3  # 0..5 of layer4, layer3, layer2, layer1, conv1
    pretrained_backbone: bool = False  # ImageNet weights via torchvision (needs internet once)
    neck: str = "fpn"  # "fpn", or a single-scale baseline "c4" / "c5"
    top_down: bool = True
    lateral: bool = True
    levels: tuple[str, ...] = FPN_LEVELS  # FPN outputs the RPN uses (ROIs: those below P6); not for c4/c5
    fpn_channels: int = 256  # d in the paper
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per level, in input pixels
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    min_size: int = 800  # the shorter image side is resized to this ...
    max_size: int = 1333  # ... unless the longer side would exceed this
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi: RoIConfig = field(default_factory=RoIConfig)
    box: BoxHeadConfig = field(default_factory=BoxHeadConfig)
    mask: MaskHeadConfig = field(default_factory=MaskHeadConfig)
    rpn_only: bool = False  # build and train the RPN alone (paper Table 1)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise FpnlabError naming the first setting that cannot work."""
        _require(
            self.num_classes >= 2,
            f"DetectorConfig.num_classes counts background too and must be >= 2, got {self.num_classes}.",
        )
        _require(self.neck in NECKS, f"DetectorConfig.neck must be one of {NECKS}, got {self.neck!r}.")
        if self.neck == "fpn":
            _require(
                bool(self.levels) and all(name in FPN_LEVELS for name in self.levels),
                f"DetectorConfig.levels must be a non-empty subset of {FPN_LEVELS}, got {self.levels}.",
            )
            _require(
                self.pooled_levels() != (),
                "DetectorConfig.levels has only 'p6', which carries anchors but no ROIs; add p2..p5.",
            )
        levels = self.rpn_levels()
        _require(
            len(levels) == 1 or len(self.anchor_sizes) == len(levels),
            f"DetectorConfig.anchor_sizes needs one size per level ({len(levels)} for {levels}), "
            f"got {self.anchor_sizes}.",
        )
        _require(
            all(s > 0 for s in self.anchor_sizes) and all(r > 0 for r in self.aspect_ratios),
            "DetectorConfig.anchor_sizes and aspect_ratios must be positive.",
        )
        _require(
            0 < self.min_size <= self.max_size <= 4096,
            f"DetectorConfig needs 0 < min_size <= max_size <= 4096, got {self.min_size} and {self.max_size}.",
        )
        _require(
            1 <= self.fpn_channels <= 4096, f"DetectorConfig.fpn_channels must be in 1..4096, got {self.fpn_channels}."
        )
        _require(
            len(self.image_mean) == 3 and len(self.image_std) == 3 and all(s > 0 for s in self.image_std),
            f"DetectorConfig.image_mean and image_std need 3 numbers each (R, G, B), the std > 0, got "
            f"{self.image_mean} and {self.image_std}.",
        )
        self.check_heads()

    def check_heads(self) -> None:
        """The ROI heads fit the rest: conv5 on C4 only, masks on the whole 2fc detector, a box head of sane size."""
        _require(
            self.box.head != "res5" or self.neck == "c4",
            f"DetectorConfig: box.head='res5' (the conv5 head) runs on C4 and needs neck='c4', got {self.neck!r}.",
        )
        _require(
            not self.mask.enabled or (self.box.head == "2fc" and not self.rpn_only),
            "DetectorConfig: mask.enabled needs the whole detector with the 2fc box head "
            "(not rpn_only, not the conv5 head).",
        )
        head = self.fpn_channels * self.roi.output_size**2 * self.box.representation_size
        _require(
            self.box.head != "2fc" or head <= MAX_HEAD_PARAMETERS,
            f"DetectorConfig: the box head's first layer would have {head:,} "
            f"weights (fpn_channels x output_size^2 x representation_size), "
            f"more than {MAX_HEAD_PARAMETERS:,}.",
        )

    def rpn_levels(self) -> tuple[str, ...]:
        """Names of the feature maps the RPN runs on: the FPN levels, or "c4" / "c5"."""
        return tuple(self.levels) if self.neck == "fpn" else (self.neck,)

    def pooled_levels(self) -> tuple[str, ...]:
        """Names of the feature maps ROIs are pooled from: P6 only carries anchors (FPN paper, Sec. 4.2)."""
        return tuple(name for name in self.rpn_levels() if name != "p6")

    def pool_size(self) -> int:
        """The side of the grid each ROI is pooled to: roi.output_size (7) for the 2fc head; twice that (14)
        for the conv5 head, whose first block (stride 2) brings it back to output_size (He et al.'s C4 head)."""
        return self.roi.output_size * (2 if self.box.head == "res5" else 1)

    def anchor_sizes_per_level(self) -> tuple[tuple[int, ...], ...]:
        """One size per level, or all sizes on the one level of a single-scale model (Table 1 rows a, b, f)."""
        if len(self.rpn_levels()) == 1:
            return (tuple(self.anchor_sizes),)
        return tuple((size,) for size in self.anchor_sizes)

    def canonical_size(self) -> float:
        """Eq. 1's canonical ROI side in input pixels: the paper's 224 at 800 px, scaled with min_size."""
        if self.roi.canonical_size is not None:
            return self.roi.canonical_size
        return PAPER_CANONICAL_SIZE * self.min_size / PAPER_INPUT_SIZE

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorConfig:
        """The config stored as plain values, e.g. by a checkpoint (every name and type is checked)."""
        return update(cls(), values)


# Names of the flat layout (checkpoints and presets before the settings were grouped) -> their new place.
FLAT_NAMES = {
    "rpn_pre_nms_top_n_train": ("rpn", "train", "pre_nms_top_n"),
    "rpn_post_nms_top_n_train": ("rpn", "train", "post_nms_top_n"),
    "rpn_pre_nms_top_n_test": ("rpn", "test", "pre_nms_top_n"),
    "rpn_post_nms_top_n_test": ("rpn", "test", "post_nms_top_n"),
    **{
        f"rpn_{name}": ("rpn", name)
        for name in (
            "nms_thresh",
            "fg_iou_thresh",
            "bg_iou_thresh",
            "batch_size_per_image",
            "positive_fraction",
            "score_thresh",
        )
    },
    **{f"roi_{name}": ("roi", name) for name in ("output_size", "sampling_ratio", "aligned")},
    "roi_pooler": ("roi", "pooler"),
    "representation_size": ("box", "representation_size"),
    "bbox_reg_weights": ("box", "reg_weights"),
    **{
        f"box_{name}": ("box", name)
        for name in (
            "fg_iou_thresh",
            "bg_iou_thresh",
            "batch_size_per_image",
            "positive_fraction",
            "score_thresh",
            "nms_thresh",
            "detections_per_img",
        )
    },
}


def upgrade_flat_layout(values: dict[str, Any]) -> dict[str, Any]:
    """Detector settings stored flat (checkpoint format version 1) -> the grouped layout of DetectorConfig.

    The names of FLAT_NAMES move into their groups; every other key stays. Version 1 had no canonical
    size: its ROIs were assigned with 224 whatever the input size, so that is kept and the detector
    computes what it did.
    """
    nested: dict[str, Any] = {"roi": {"canonical_size": float(PAPER_CANONICAL_SIZE)}}
    for name, value in values.items():
        *groups, leaf = FLAT_NAMES.get(name, (name,))
        node = nested
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    return nested
