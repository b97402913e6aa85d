"""The whole detector (stage 9): FPN + Faster R-CNN, assembled from the stage modules.

    images -> transform -> backbone (C2..C5) -> neck (P2..P6) -> RPN (proposals) -> ROI heads -> detections

``FPNDetector`` follows torchvision's calling convention (``fasterrcnn_resnet50_fpn``):

    model.train(); losses = model(images, targets)   # {"loss_objectness", "loss_rpn_box_reg",
                                                     #  "loss_classifier", "loss_box_reg"}
    model.eval();  detections = model(images)        # [{"boxes", "labels", "scores"}] per image

``images`` is a list of (3, H, W) float tensors in [0, 1], any sizes; ``targets`` a list of
{"boxes": (N, 4) float (x1, y1, x2, y2) pixels, "labels": (N,) int64 in 1..num_classes-1}; N = 0
(``torch.zeros((0, 4))``) is an image without objects and trains as pure background. Detection boxes
are in the pixels of the input images.

Bad input raises ``fpnlab.errors.DataError`` (an FpnlabError and a ValueError) naming the problem:
images that are not 3-channel float tensors, values outside [0, 1], NaN or infinity in images or
boxes, boxes with x2 <= x1 or y2 <= y1, labels outside 1..num_classes-1, missing targets in training,
and lists of different lengths.

``DetectorConfig`` also describes the FPN paper's ablations (Table 1 and 2): ``neck="c4"``/``"c5"``
(single-scale baselines, rows a, b), ``top_down=False`` (row d), ``lateral=False`` (row e),
``levels=("p2",)`` (row f); with one feature level, all anchor sizes go on it and every ROI is pooled
from it. ``rpn_only=True`` builds the RPN alone (Table 1): its losses in training, proposals in eval.

``from_torchvision`` copies a torchvision ``fasterrcnn_resnet50_fpn`` (or its COCO weights) into an
FPNDetector that computes the same detections (tests/test_detector.py proves it to 1e-4).

Differences from torchvision, all intentional and none changing what is detected:
  * proposals or detections with exactly equal scores may be listed in another order (torchvision's
    per-level NMS re-sorts with an unstable sort; one batched NMS keeps input order): same boxes;
  * torchvision draws a random number per image to pick a training min_size even when there is one;
    fpnlab has one min_size and draws nothing (so the same seed gives other random samples);
  * the RPN's low-quality matches skip a gt box that overlaps no anchor at all (fpnlab.matching);
  * bad input raises DataError where torchvision would go on (values outside [0, 1], NaN, labels).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fpnlab.anchors import AnchorGenerator
from fpnlab.backbone import TRAINABLE_ORDER, ResNetBody
from fpnlab.errors import DataError, FpnlabError
from fpnlab.fpn import FPN, FPN_LEVELS, SingleScaleNeck, torchvision_fpn_state
from fpnlab.poolers import MultiScaleRoIPooler
from fpnlab.roi_heads import BBOX_REG_WEIGHTS, FastRCNNPredictor, RoIHeads, TwoMLPHead
from fpnlab.rpn import RegionProposalNetwork, RPNHead, RPNOutput
from fpnlab.switch import skip_value_checks
from fpnlab.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, ImageBatch

NECKS = ("fpn", "c4", "c5")
POOLERS = ("align", "pool")


@dataclass
class DetectorConfig:
    """Every setting of an FPNDetector; defaults are the paper's / torchvision's fasterrcnn_resnet50_fpn.

    Plain JSON-able values: ``DetectorConfig(**dataclasses.asdict(config))`` rebuilds it (lists are
    turned back into tuples, so a config read from JSON works too). Names after "max_size" are
    torchvision's FasterRCNN keyword arguments.
    """

    num_classes: int = 91  # including background (label 0); 91 for COCO as in torchvision
    # bottom-up pathway (fpnlab.backbone)
    backbone: str = "resnet50"  # resnet18/34/50/101 or resnet_tiny
    norm: str = "frozen_bn"  # frozen_bn (fine-tuning, torchvision equality), bn or gn (from scratch)
    trainable_layers: int = 3  # 0..5 of layer4, layer3, layer2, layer1, conv1
    pretrained_backbone: bool = False  # ImageNet weights via torchvision (needs internet once)
    # neck (fpnlab.fpn): FPN, or a single-scale baseline on C4 / C5
    neck: str = "fpn"
    top_down: bool = True
    lateral: bool = True
    levels: tuple[str, ...] = FPN_LEVELS  # FPN outputs the RPN uses (ROIs: those below P6); not for c4/c5
    fpn_channels: int = 256  # d in the paper
    # anchors (fpnlab.anchors): one size per level, or all sizes on a single level
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # input transform (fpnlab.transform)
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    # RPN (fpnlab.rpn)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0
    # ROI pooling (fpnlab.poolers) and the Fast R-CNN head (fpnlab.roi_heads)
    roi_pooler: str = "align"  # "align" (RoIAlign) or "pool" (RoIPool)
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    roi_aligned: bool = False
    representation_size: int = 1024
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    bbox_reg_weights: tuple[float, ...] = BBOX_REG_WEIGHTS
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    rpn_only: bool = False  # build and train the RPN alone (paper Table 1)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # JSON gives lists: back to tuples
            if isinstance(getattr(self, field.name), list):
                setattr(self, field.name, tuple(getattr(self, field.name)))
        self.check()

    def check(self) -> None:
        """Raise FpnlabError naming the first setting that cannot work."""
        if self.num_classes < 2:
            raise FpnlabError(f"DetectorConfig.num_classes counts background too and must be >= 2, "
                              f"got {self.num_classes}.")
        if self.neck not in NECKS:
            raise FpnlabError(f"DetectorConfig.neck must be one of {NECKS}, got {self.neck!r}.")
        if self.neck == "fpn" and (not self.levels or any(name not in FPN_LEVELS for name in self.levels)):
            raise FpnlabError(f"DetectorConfig.levels must be a non-empty subset of {FPN_LEVELS}, got {self.levels}.")
        if self.neck == "fpn" and self.pooled_levels() == ():
            raise FpnlabError("DetectorConfig.levels has only 'p6', which carries anchors but no ROIs; add p2..p5.")
        if len(self.rpn_levels()) > 1 and len(self.anchor_sizes) != len(self.rpn_levels()):
            raise FpnlabError(f"DetectorConfig.anchor_sizes needs one size per level ({len(self.rpn_levels())} for "
                              f"{self.rpn_levels()}), got {self.anchor_sizes}.")
        if self.roi_pooler not in POOLERS:
            raise FpnlabError(f"DetectorConfig.roi_pooler must be one of {POOLERS}, got {self.roi_pooler!r}.")
        if len(self.bbox_reg_weights) != 4:
            raise FpnlabError(f"DetectorConfig.bbox_reg_weights needs 4 numbers, got {self.bbox_reg_weights}.")
        if not 0 < self.min_size <= self.max_size:
            raise FpnlabError(f"DetectorConfig needs 0 < min_size <= max_size, got {self.min_size} and {self.max_size}.")

    def rpn_levels(self) -> tuple[str, ...]:
        """Names of the feature maps the RPN runs on: the FPN levels, or "c4" / "c5"."""
        return tuple(self.levels) if self.neck == "fpn" else (self.neck,)

    def pooled_levels(self) -> tuple[str, ...]:
        """Names of the feature maps ROIs are pooled from: P6 only carries anchors (FPN paper, Sec. 4.2)."""
        return tuple(name for name in self.rpn_levels() if name != "p6")

    def anchor_sizes_per_level(self) -> tuple[tuple[int, ...], ...]:
        """One size per level, or all sizes on the one level of a single-scale model (Table 1 rows a, b, f)."""
        if len(self.rpn_levels()) == 1:
            return (tuple(self.anchor_sizes),)
        return tuple((size,) for size in self.anchor_sizes)


class FPNDetector(nn.Module):
    """FPN + Faster R-CNN built from a DetectorConfig; see the module docstring for inputs and outputs."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.transform = DetectionTransform(config.min_size, config.max_size, config.image_mean, config.image_std)
        self.backbone = ResNetBody(config.backbone, config.norm, config.trainable_layers, config.pretrained_backbone)
        self.neck = build_neck(config, self.backbone.out_channels)
        self.rpn = build_rpn(config)
        self.roi_heads = None if config.rpn_only else build_roi_heads(config)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        images, input_sizes = check_inputs(images, targets, self.training, self.config.num_classes)
        with skip_value_checks():  # inputs checked: no host-device syncs for box checks below (fpnlab.switch)
            batch, targets = self.transform(images, targets)  # normalised, resized, padded: (B, 3, H, W)
            features = self.backbone(batch.tensor)  # c2..c5, strides 4..32
            pyramid = self.neck(features)  # p2..p6 (or one map)
            rpn = self.rpn(pyramid, batch, targets)  # proposals per image (+ RPN losses)
            if self.roi_heads is None:
                return rpn.losses if self.training else self._proposals(rpn, batch, input_sizes)
            detections, losses = self.roi_heads(pyramid, rpn.boxes, batch, targets)  # (+ Fast R-CNN losses)
            if self.training:
                return {**rpn.losses, **losses}
            return self._in_input_pixels(detections, batch, input_sizes)

    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """The RPN's proposals {"boxes" (K, 4), "scores" (K,)} per image, in input pixels, as in eval mode."""
        with self._evaluating():
            images, input_sizes = check_inputs(images, None, False, self.config.num_classes)
            batch, _ = self.transform(images)
            rpn = self.rpn(self.neck(self.backbone(batch.tensor)), batch)
            return self._proposals(rpn, batch, input_sizes)

    def inspect(self, images: list[Tensor]) -> dict[str, Any]:
        """Every intermediate result of an eval-mode forward pass, for the notebooks. Keys:

            image_sizes, input_sizes   (h, w) per image after resizing / as passed in
            images                     the normalised, padded batch (B, 3, H, W)
            features                   c2..c5 (and p2..p6 for an FPN), by name
            pyramid, levels            the neck's maps the RPN and ROI pooling use, and their names
            anchors, objectness        per level: (H*W*A, 4) anchors, (B, A, H, W) objectness logits
            proposals, proposal_scores per image: the RPN's (K, 4) proposals and (K,) scores
            proposal_levels            per image: level k (2..6) of the anchor each proposal came from
            roi_levels                 per image: level k (2..5) Eq. 1 pools each proposal from
            detections                 as forward() returns them (roi_levels and detections: not rpn_only)

        Anchors are in the pixels of the batch tensor "images"; proposals and detections in input pixels.
        """
        with self._evaluating():
            images, input_sizes = check_inputs(images, None, False, self.config.num_classes)
            batch, _ = self.transform(images)
            features = self.backbone(batch.tensor)
            pyramid = self.neck(features)
            rpn = self.rpn(pyramid, batch)
            level_numbers = torch.tensor([int(math.log2(s)) for s in self.neck.strides.values()])
            proposals = self._proposals(rpn, batch, input_sizes)
            result = {
                "image_sizes": batch.image_sizes, "input_sizes": input_sizes, "images": batch.tensor,
                "features": {**features, **pyramid} if self.config.neck == "fpn" else dict(features),
                "pyramid": dict(pyramid), "levels": list(pyramid),
                "anchors": dict(zip(pyramid, rpn.anchors)), "objectness": dict(zip(pyramid, rpn.objectness)),
                "proposals": [p["boxes"] for p in proposals], "proposal_scores": [p["scores"] for p in proposals],
                "proposal_levels": [level_numbers.to(lv.device)[lv] for lv in rpn.levels],
            }
            if self.roi_heads is not None:
                result["roi_levels"] = self.roi_heads.pooler.levels_of(rpn.boxes)
                detections, _ = self.roi_heads(pyramid, rpn.boxes, batch)
                result["detections"] = self._in_input_pixels(detections, batch, input_sizes)
            return result

    def _proposals(self, rpn: RPNOutput, batch: ImageBatch, input_sizes: list[tuple[int, int]]
                   ) -> list[dict[str, Tensor]]:
        boxes = self.transform.postprocess(rpn.boxes, batch.image_sizes, input_sizes)
        return [{"boxes": b, "scores": s} for b, s in zip(boxes, rpn.scores)]

    def _in_input_pixels(self, detections: list[dict[str, Tensor]], batch: ImageBatch,
                         input_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        boxes = self.transform.postprocess([d["boxes"] for d in detections], batch.image_sizes, input_sizes)
        return [{**d, "boxes": b} for d, b in zip(detections, boxes)]

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode without gradients, restoring the previous mode afterwards."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)


def build_detector(config: DetectorConfig | dict[str, Any] | None = None, **overrides: Any) -> FPNDetector:
    """An FPNDetector from a DetectorConfig (or a dict of its fields), with ``overrides`` applied.

    ``build_detector(num_classes=7, backbone="resnet_tiny", norm="bn", trainable_layers=5)`` works too.
    """
    if isinstance(config, dict):
        config = DetectorConfig(**config)
    config = config or DetectorConfig()
    return FPNDetector(dataclasses.replace(config, **overrides) if overrides else config)


def build_neck(config: DetectorConfig, in_channels: dict[str, int]) -> nn.Module:
    """The FPN of the paper's Table 1 rows c..f, or a single-scale neck (rows a, b)."""
    if config.neck == "fpn":
        return FPN(list(in_channels.values()), config.fpn_channels, config.top_down, config.lateral, config.levels)
    return SingleScaleNeck(in_channels, source=config.neck, out_channels=config.fpn_channels)


def build_rpn(config: DetectorConfig) -> RegionProposalNetwork:
    anchor_generator = AnchorGenerator(config.anchor_sizes_per_level(), config.aspect_ratios)
    head = RPNHead(config.fpn_channels, anchor_generator.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchor_generator, head,
        pre_nms_top_n=(config.rpn_pre_nms_top_n_train, config.rpn_pre_nms_top_n_test),
        post_nms_top_n=(config.rpn_post_nms_top_n_train, config.rpn_post_nms_top_n_test),
        nms_thresh=config.rpn_nms_thresh, fg_iou_thresh=config.rpn_fg_iou_thresh,
        bg_iou_thresh=config.rpn_bg_iou_thresh, batch_size_per_image=config.rpn_batch_size_per_image,
        positive_fraction=config.rpn_positive_fraction, score_thresh=config.rpn_score_thresh)


def build_roi_heads(config: DetectorConfig) -> RoIHeads:
    pooler = MultiScaleRoIPooler(config.pooled_levels(), config.roi_output_size, config.roi_sampling_ratio,
                                 config.roi_aligned, config.roi_pooler)
    box_head = TwoMLPHead(config.fpn_channels * config.roi_output_size ** 2, config.representation_size)
    return RoIHeads(
        pooler, box_head, FastRCNNPredictor(config.representation_size, config.num_classes),
        fg_iou_thresh=config.box_fg_iou_thresh, bg_iou_thresh=config.box_bg_iou_thresh,
        batch_size_per_image=config.box_batch_size_per_image, positive_fraction=config.box_positive_fraction,
        bbox_reg_weights=config.bbox_reg_weights, score_thresh=config.box_score_thresh,
        nms_thresh=config.box_nms_thresh, detections_per_img=config.box_detections_per_img)


# --- input checks ---------------------------------------------------------------------------------

def check_inputs(images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]] | None, training: bool,
                 num_classes: int) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """Raise DataError on anything the detector cannot use; return the images as a list and their (h, w).

    A (B, 3, H, W) tensor is accepted as a batch of B images.
    """
    if isinstance(images, Tensor) and images.dim() == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise DataError(f"images must be a non-empty list of (3, H, W) float tensors, got {_describe(images)}.")
    for i, image in enumerate(images):
        check_image(image, f"images[{i}]")
    if training and targets is None:
        raise DataError("targets are required in training mode (one dict with 'boxes' and 'labels' per image); "
                        "pass targets, or call model.eval() to detect.")
    if targets is not None:
        if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
            raise DataError(f"targets must be a list with one dict per image: {len(images)} image(s) but "
                            f"{len(targets) if isinstance(targets, (list, tuple)) else _describe(targets)} target(s).")
        for i, target in enumerate(targets):
            check_target(target, num_classes, f"targets[{i}]")
    return list(images), [(image.shape[-2], image.shape[-1]) for image in images]


def check_image(image: Any, name: str) -> None:
    """A (3, H, W) floating-point tensor with finite values in [0, 1] (one host sync when it is)."""
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.numel() == 0:
        raise DataError(f"{name} must be a (3, H, W) image tensor, got {_describe(image)}.")
    if not image.is_floating_point():
        raise DataError(f"{name} must be a float tensor with values in [0, 1], got {image.dtype} "
                        f"(for 8-bit images use image.float() / 255).")
    low, high = torch.aminmax(image)
    if bool((low >= -0.01) & (high <= 1.01)):  # False for NaN too
        return
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise DataError(f"{name} contains NaN or infinite values.")
    raise DataError(f"{name} has values in [{low:.3g}, {high:.3g}] but must be in [0, 1]: pass raw pixels "
                    f"/ 255, the detector normalises them itself.")


def check_target(target: Any, num_classes: int, name: str) -> None:
    """{"boxes": finite (N, 4) float with x2 > x1 and y2 > y1, "labels": (N,) integers in 1..num_classes-1}."""
    if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
        raise DataError(f"{name} must be a dict with 'boxes' and 'labels', got {_describe(target)}.")
    boxes, labels = target["boxes"], target["labels"]
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        raise DataError(f"{name}['boxes'] must be an (N, 4) float tensor of (x1, y1, x2, y2), got {_describe(boxes)} "
                        f"(an image without objects has torch.zeros((0, 4))).")
    if not isinstance(labels, Tensor) or labels.shape != (len(boxes),) or labels.is_floating_point():
        raise DataError(f"{name}['labels'] must be a ({len(boxes)},) int64 tensor, one label per box, "
                        f"got {_describe(labels)}.")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])  # (N,)
    known = (labels >= 1) & (labels < num_classes)  # (N,)
    if bool(torch.isfinite(boxes).all() & ~empty.any() & known.all()):  # one host sync for a valid target
        return
    if not torch.isfinite(boxes).all():
        raise DataError(f"{name}['boxes'] contains NaN or infinite coordinates.")
    if empty.any():
        first = int(torch.where(empty)[0][0])
        raise DataError(f"{name}['boxes'] has {int(empty.sum())} box(es) with x2 <= x1 or y2 <= y1, the first is "
                        f"#{first} {[round(v, 2) for v in boxes[first].tolist()]}; boxes need a positive width and height.")
    raise DataError(f"{name}['labels'] must be in 1..{num_classes - 1} (0 is background), "
                    f"got values from {int(labels.min())} to {int(labels.max())}.")


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}"


# --- torchvision ----------------------------------------------------------------------------------

# torchvision's parameter names -> ours (the first matching prefix wins); the FPN is renamed by fpnlab.fpn.
TORCHVISION_NAMES = (
    ("backbone.body.", "backbone."),
    ("rpn.head.conv.0.0.", "rpn.head.conv."),
    ("rpn.head.conv.", "rpn.head.conv."),  # checkpoints older than torchvision 0.13 (the COCO weights)
    ("rpn.head.cls_logits.", "rpn.head.objectness."),
    ("rpn.head.bbox_pred.", "rpn.head.deltas."),
    ("roi_heads.box_head.", "roi_heads.box_head."),
    ("roi_heads.box_predictor.", "roi_heads.predictor."),
)
RESNET_DEPTHS = {("BasicBlock", (2, 2, 2, 2)): "resnet18", ("BasicBlock", (3, 4, 6, 3)): "resnet34",
                 ("Bottleneck", (3, 4, 6, 3)): "resnet50", ("Bottleneck", (3, 4, 23, 3)): "resnet101"}


def from_torchvision(tv_model: nn.Module | None = None, weights: Any = None) -> FPNDetector:
    """An FPNDetector computing exactly what a torchvision Faster R-CNN with a ResNet-FPN backbone computes.

    ``from_torchvision(tv_model)``: same settings (read from the model) and a copy of every weight
    (backbone.body, fpn, rpn.head, roi_heads.box_head / box_predictor), any num_classes; returned in
    the model's train/eval mode. ``from_torchvision(weights="DEFAULT")`` (or "COCO_V1", or a
    ``FasterRCNN_ResNet50_FPN_Weights``): torchvision's COCO-trained R50-FPN, downloaded once into the
    torch hub cache, returned in eval mode with ``.categories`` (the 91 COCO names, label -> name).
    Without internet and without a cached file this raises FpnlabError.
    """
    if (tv_model is None) == (weights is None):
        raise FpnlabError("from_torchvision needs either a torchvision model or weights='DEFAULT', not both.")
    if weights is not None:
        return _from_coco_weights(weights)
    model = FPNDetector(config_from_torchvision(tv_model))
    _load_torchvision_state(model, tv_model.state_dict())
    tv_norms = dict(tv_model.backbone.body.named_modules())
    for name, module in model.backbone.named_modules():  # FrozenBatchNorm eps (0 in the COCO weights)
        if hasattr(module, "eps"):
            module.eps = tv_norms[name].eps
    return model.train(tv_model.training)


def config_from_torchvision(tv_model: nn.Module) -> DetectorConfig:
    """The DetectorConfig of a torchvision FasterRCNN whose backbone is a ResNet + FPN (+ LastLevelMaxPool).

    A tuple of training min_sizes (torchvision's multi-scale training) becomes its test size, min_size[-1].
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    backbone = getattr(tv_model, "backbone", None)
    if not isinstance(tv_model, FasterRCNN) or not hasattr(backbone, "body") or not hasattr(backbone, "fpn") \
            or not isinstance(backbone.fpn.extra_blocks, LastLevelMaxPool) or len(backbone.fpn.inner_blocks) != 4:
        raise FpnlabError(f"from_torchvision expects a torchvision FasterRCNN with a ResNet-FPN backbone such as "
                          f"fasterrcnn_resnet50_fpn, got {type(tv_model).__name__}.")
    body, rpn, roi, transform = backbone.body, tv_model.rpn, tv_model.roi_heads, tv_model.transform
    layers = [body.layer1, body.layer2, body.layer3, body.layer4]
    depth = RESNET_DEPTHS.get((type(body.layer1[0]).__name__, tuple(len(layer) for layer in layers)))
    norms = {"FrozenBatchNorm2d": "frozen_bn", "BatchNorm2d": "bn", "GroupNorm": "gn"}
    sizes, ratios = rpn.anchor_generator.sizes, rpn.anchor_generator.aspect_ratios
    if depth is None or type(body.bn1).__name__ not in norms or any(len(s) != 1 for s in sizes):
        raise FpnlabError("from_torchvision supports ResNet-18/34/50/101 bodies with (Frozen)BatchNorm or GroupNorm "
                          "and one anchor size per level, as fasterrcnn_resnet50_fpn has.")
    trainable = 0
    while trainable < 5 and all(p.requires_grad for p in getattr(body, TRAINABLE_ORDER[trainable]).parameters()):
        trainable += 1
    return DetectorConfig(
        num_classes=roi.box_predictor.cls_score.out_features, backbone=depth, norm=norms[type(body.bn1).__name__],
        trainable_layers=trainable, fpn_channels=backbone.out_channels,
        anchor_sizes=tuple(s[0] for s in sizes), aspect_ratios=tuple(ratios[0]),
        min_size=transform.min_size[-1], max_size=transform.max_size,
        image_mean=tuple(transform.image_mean), image_std=tuple(transform.image_std),
        rpn_pre_nms_top_n_train=rpn._pre_nms_top_n["training"], rpn_pre_nms_top_n_test=rpn._pre_nms_top_n["testing"],
        rpn_post_nms_top_n_train=rpn._post_nms_top_n["training"],
        rpn_post_nms_top_n_test=rpn._post_nms_top_n["testing"],
        rpn_nms_thresh=rpn.nms_thresh, rpn_fg_iou_thresh=rpn.proposal_matcher.high_threshold,
        rpn_bg_iou_thresh=rpn.proposal_matcher.low_threshold,
        rpn_batch_size_per_image=rpn.fg_bg_sampler.batch_size_per_image,
        rpn_positive_fraction=rpn.fg_bg_sampler.positive_fraction, rpn_score_thresh=rpn.score_thresh,
        roi_output_size=roi.box_roi_pool.output_size[0], roi_sampling_ratio=roi.box_roi_pool.sampling_ratio,
        representation_size=roi.box_head.fc6.out_features,
        box_fg_iou_thresh=roi.proposal_matcher.high_threshold, box_bg_iou_thresh=roi.proposal_matcher.low_threshold,
        box_batch_size_per_image=roi.fg_bg_sampler.batch_size_per_image,
        box_positive_fraction=roi.fg_bg_sampler.positive_fraction, bbox_reg_weights=tuple(roi.box_coder.weights),
        box_score_thresh=roi.score_thresh, box_nms_thresh=roi.nms_thresh,
        box_detections_per_img=roi.detections_per_img)


def torchvision_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision fasterrcnn_resnet50_fpn state dict renamed to FPNDetector's parameter names."""
    ours = {f"neck.{key}": value for key, value in torchvision_fpn_state(state, prefix="backbone.fpn.").items()}
    for key, value in state.items():
        prefix = next((p for p in TORCHVISION_NAMES if key.startswith(p[0])), None)
        if prefix is not None:
            ours[prefix[1] + key[len(prefix[0]):]] = value
    return ours


def _load_torchvision_state(model: FPNDetector, state: dict[str, Tensor]) -> None:
    try:
        model.load_state_dict(torchvision_state_dict(state))
    except RuntimeError as error:  # missing / unexpected keys or shapes: name the first lines
        raise FpnlabError(f"the torchvision weights do not fit this detector: {str(error).splitlines()[1].strip()}") \
            from None


def _from_coco_weights(weights: Any) -> FPNDetector:
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights as Weights

    try:
        weights = Weights.verify(weights)
    except (KeyError, TypeError, ValueError):
        raise FpnlabError(f"from_torchvision: unknown weights {weights!r}; use 'DEFAULT' or 'COCO_V1'.") from None
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a truncated download a RuntimeError
        raise FpnlabError(
            f"from_torchvision: torchvision's COCO weights could not be downloaded from {weights.url} ({error}); "
            f"connect to the internet (e.g. in Colab) once, or copy that file into {torch.hub.get_dir()}/checkpoints."
        ) from error
    model = FPNDetector(DetectorConfig(num_classes=len(weights.meta["categories"])))
    _load_torchvision_state(model, state)
    if weights == Weights.COCO_V1:  # these weights were trained with FrozenBatchNorm eps = 0 (as torchvision sets)
        for module in model.backbone.modules():
            if hasattr(module, "eps"):
                module.eps = 0.0
    model.categories = list(weights.meta["categories"])
    return model.eval()
