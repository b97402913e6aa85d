"""The whole detector (the assembly of stages 1-6): FPN + Faster R-CNN, built from the stage modules.

    images -> transform -> backbone (C2..C5) -> neck (P2..P6) -> RPN (proposals) -> ROI heads -> detections

(The C4 baseline with the conv5 head, box.head="res5", moves layer4 from the backbone into the ROI head,
which pools C4 itself: fpnlab.model.res5_head.)

``FPNDetector`` follows torchvision's calling convention (``fasterrcnn_resnet50_fpn``):

    model.train(); losses = model(images, targets)   # {"loss_objectness", "loss_rpn_box_reg",
                                                     #  "loss_classifier", "loss_box_reg"}
    model.eval();  detections = model(images)        # [{"boxes", "labels", "scores"}] per image

With ``mask=MaskHeadConfig(enabled=True)`` it is Mask R-CNN (``maskrcnn_resnet50_fpn``): targets also hold
"masks" (N, H, W) uint8, training adds "loss_mask", and each detection gets "masks" (D, 1, H, W), the
probability that each pixel of the input image belongs to it (threshold at 0.5 for a binary mask).

``images`` is a list of (3, H, W) float tensors in [0, 1], any sizes; ``targets`` a list of
{"boxes": (N, 4) float (x1, y1, x2, y2) pixels, "labels": (N,) int64 in 1..num_classes-1}; N = 0
(``torch.zeros((0, 4))``) is an image without objects and trains as pure background. Detection boxes
are in the pixels of the input images.

Bad input raises ``fpnlab.errors.DataError`` (an FpnlabError and a ValueError) naming the problem
(fpnlab.model.inputs): images that are not 3-channel float tensors, values outside [0, 1], NaN or infinity
in images or boxes, boxes with x2 <= x1 or y2 <= y1, labels outside 1..num_classes-1, missing
targets in training, lists of different lengths, images too elongated to resize.

``DetectorConfig`` (fpnlab.model.config) holds every setting, the paper's ablations included;
``rpn_only=True`` builds the RPN alone (Table 1): its losses in training, proposals in eval.
``fpnlab.model.torchvision_port.from_torchvision`` copies a torchvision ``fasterrcnn_resnet50_fpn`` (or its
COCO weights) into an FPNDetector that computes the same detections.

Differences from torchvision, all intentional and none changing what is detected:
  * proposals or detections with exactly equal scores may be listed in another order (torchvision's
    per-level NMS re-sorts with an unstable sort; one batched NMS keeps input order): same boxes;
  * torchvision draws a random number per image to pick a training min_size even when there is one;
    fpnlab has one min_size and draws nothing (so the same seed gives other random samples);
  * the RPN's low-quality matches skip a gt box that overlaps no anchor at all (fpnlab.model.matching);
  * bad input raises DataError where torchvision would go on (values outside [0, 1], NaN, labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from fpnlab.model.anchors import AnchorGenerator
from fpnlab.model.backbone import ResNetBody
from fpnlab.model.config import DetectorConfig
from fpnlab.model.fpn import FPN, SingleScaleNeck
from fpnlab.model.inputs import check_inputs
from fpnlab.model.levels import level_number
from fpnlab.model.mask_head import MaskHead
from fpnlab.model.masks import paste_masks
from fpnlab.model.poolers import MultiScaleRoIPooler
from fpnlab.model.res5_head import Res5Head
from fpnlab.model.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from fpnlab.model.rpn import RegionProposalNetwork, RPNHead, RPNOutput
from fpnlab.model.transform import DetectionTransform, ImageBatch
from fpnlab.overrides import update
from fpnlab.switch import evaluating, skip_value_checks


class FirstStage(NamedTuple):
    """What one pass computes up to the proposals: shared by forward, propose and inspect."""

    batch: ImageBatch  # the normalised, resized, padded images (B, 3, H, W) and each image's size in it
    targets: list[dict[str, Tensor]] | None  # boxes resized with their images (training only)
    input_sizes: list[tuple[int, int]]  # (h, w) of each image as passed in
    features: dict[str, Tensor]  # c2..c5
    pyramid: dict[str, Tensor]  # the neck's maps: p2..p6 (or one map)
    rpn: RPNOutput  # proposals per image (+ RPN losses in training)


class FPNDetector(nn.Module):
    """FPN + Faster R-CNN built from a DetectorConfig; see the module docstring for inputs and outputs."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.transform = DetectionTransform(config.min_size, config.max_size, config.image_mean, config.image_std)
        self.backbone = ResNetBody(config.backbone, config.norm, config.trainable_layers, config.pretrained_backbone)
        conv5 = self.backbone.split_conv5() if config.box.head == "res5" else None  # the backbone stops at C4
        self.neck = build_neck(config, self.backbone.out_channels)
        self.rpn = build_rpn(config)
        self.roi_heads = None if config.rpn_only else build_roi_heads(config, conv5)
        if config.mask.enabled:  # masks (D, 1, 28, 28) go back into each input image at their boxes
            self.transform.instance_fields["masks"] = paste_masks

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        first = self.first_stage(images, targets)
        with skip_value_checks():  # inputs checked: no host-device syncs for box checks (fpnlab.switch)
            if self.roi_heads is None:
                return first.rpn.losses if self.training else self._proposals(first)
            detections, losses = self.roi_heads(self._roi_features(first), first.rpn.boxes, first.batch, first.targets)
        if self.training:
            return {**first.rpn.losses, **losses}  # loss_objectness, loss_rpn_box_reg, loss_classifier, loss_box_reg
        return self._in_input_pixels(detections, first)

    def first_stage(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> FirstStage:
        """Check the inputs, then transform -> backbone (C2..C5) -> neck (P2..P6) -> RPN (proposals)."""
        dtype = next(self.parameters()).dtype
        images, input_sizes = check_inputs(images, targets, self.training, self.config.num_classes, dtype)
        with skip_value_checks():
            batch, targets = self.transform(images, targets)  # (B, 3, H, W)
            features = self.backbone(batch.tensor)  # c2..c5, strides 4..32
            pyramid = self.neck(features)  # p2..p6 (or one map)
            rpn = self.rpn(pyramid, batch, targets)  # proposals per image (+ RPN losses)
        return FirstStage(batch, targets, input_sizes, features, pyramid, rpn)

    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """The RPN's proposals {"boxes" (K, 4), "scores" (K,)} per image, in input pixels, as in eval mode."""
        with evaluating(self):
            return self._proposals(self.first_stage(images))

    def inspect(self, images: list[Tensor]) -> Inspection:
        """Every intermediate result of an eval-mode forward pass, for the notebooks (see Inspection)."""
        with evaluating(self):
            first = self.first_stage(images)
            batch, pyramid, rpn = first.batch, first.pyramid, first.rpn
            level_numbers = torch.tensor([level_number(name) for name in pyramid], device=batch.tensor.device)
            proposals = self._proposals(first)
            seen = Inspection(
                image_sizes=batch.image_sizes,
                input_sizes=first.input_sizes,
                images=batch.tensor,
                resized=self.transform.unnormalized(batch),
                features={**first.features, **pyramid} if self.config.neck == "fpn" else dict(first.features),
                pyramid=dict(pyramid),
                levels=list(pyramid),
                anchors=dict(zip(pyramid, rpn.anchors)),
                objectness=dict(zip(pyramid, rpn.objectness)),
                proposals=[p["boxes"] for p in proposals],
                proposal_scores=[p["scores"] for p in proposals],
                proposal_levels=[level_numbers[lv] for lv in rpn.levels],
            )
            if self.roi_heads is not None:
                seen.roi_levels = self.roi_heads.pooler.levels_of(rpn.boxes)
                with skip_value_checks():
                    detections, _ = self.roi_heads(self._roi_features(first), rpn.boxes, batch)
                seen.detections = self._in_input_pixels(detections, first)
            return seen

    def _roi_features(self, first: FirstStage) -> dict[str, Tensor]:
        """The maps ROIs are pooled from: the neck's, or C4 itself for the conv5 head (whose first block
        expects C4's channels, 1024 for ResNet-50, not the neck's 256)."""
        return first.features if self.config.box.head == "res5" else first.pyramid

    def _proposals(self, first: FirstStage) -> list[dict[str, Tensor]]:
        found = [{"boxes": b, "scores": s} for b, s in zip(first.rpn.boxes, first.rpn.scores)]
        return self._in_input_pixels(found, first)

    def _in_input_pixels(self, results: list[dict[str, Tensor]], first: FirstStage) -> list[dict[str, Tensor]]:
        return self.transform.postprocess(results, first.batch.image_sizes, first.input_sizes)


@dataclass
class Inspection:
    """Every intermediate result of one eval-mode pass (FPNDetector.inspect), for the notebooks.

    Anchors are in the pixels of the batch tensor `images`; proposals and detections in input pixels.
    """

    image_sizes: list[tuple[int, int]]  # (h, w) per image after resizing
    input_sizes: list[tuple[int, int]]  # (h, w) per image as passed in
    images: Tensor  # the normalised, padded batch (B, 3, H, W)
    resized: list[Tensor]  # per image: what the network sees, (3, h, w) in [0, 1] (not normalised)
    features: dict[str, Tensor]  # c2..c5 (and p2..p6 for an FPN), by name
    pyramid: dict[str, Tensor]  # the neck's maps the RPN and ROI pooling use, by name
    levels: list[str]  # their names, finest first
    anchors: dict[str, Tensor]  # per level: (H*W*A, 4)
    objectness: dict[str, Tensor]  # per level: (B, A, H, W) logits
    proposals: list[Tensor]  # per image: the RPN's (K, 4) proposals, best first
    proposal_scores: list[Tensor]  # per image: (K,) their objectness probabilities
    proposal_levels: list[Tensor]  # per image: (K,) level k (2..6) of the anchor each proposal came from
    roi_levels: list[Tensor] = field(default_factory=list)  # per image: level k (2..5) Eq. 1 pools each from
    detections: list[dict[str, Tensor]] = field(default_factory=list)  # as forward() returns them (not rpn_only)


def build_detector(config: DetectorConfig | dict[str, Any] | None = None, **overrides: Any) -> FPNDetector:
    """An FPNDetector from a DetectorConfig (or a dict of its fields), with ``overrides`` applied.

    ``build_detector(num_classes=7, backbone="resnet_tiny", norm="bn", rpn={"nms_thresh": 0.6})`` works too.
    """
    if isinstance(config, dict):
        config = DetectorConfig.from_dict(config)
    return FPNDetector(update(config or DetectorConfig(), overrides))


def build_neck(config: DetectorConfig, in_channels: dict[str, int]) -> nn.Module:
    """The FPN of the paper's Table 1 rows c..f, or a single-scale neck (rows a, b)."""
    if config.neck == "fpn":
        return FPN(list(in_channels.values()), config.fpn_channels, config.top_down, config.lateral, config.levels)
    return SingleScaleNeck(in_channels, source=config.neck, out_channels=config.fpn_channels)


def build_rpn(config: DetectorConfig) -> RegionProposalNetwork:
    anchor_generator = AnchorGenerator(config.anchor_sizes_per_level(), config.aspect_ratios)
    head = RPNHead(config.fpn_channels, anchor_generator.num_anchors_per_location()[0])
    return RegionProposalNetwork(anchor_generator, head, config.rpn)


def build_roi_heads(config: DetectorConfig, conv5: nn.Sequential | None = None) -> RoIHeads:
    """Pooler, box head and predictor: the 2fc head on the neck's maps, or the conv5 head (``conv5``: the
    backbone's layer4, taken by ResNetBody.split_conv5) on C4."""
    roi = config.roi
    pooler = build_pooler(config, config.pool_size(), roi.sampling_ratio)
    if config.box.head == "res5":
        box_head = Res5Head(conv5)
        width = box_head.out_features  # 2048 for ResNet-50
    else:
        box_head = TwoMLPHead(config.fpn_channels * roi.output_size**2, config.box.representation_size)
        width = config.box.representation_size
    extra = {}
    if config.mask.enabled:
        mask_pooler = build_pooler(config, config.mask.pool_size, config.mask.sampling_ratio)
        extra["mask"] = MaskHead(mask_pooler, config.fpn_channels, config.num_classes, config.mask)
    return RoIHeads(pooler, box_head, FastRCNNPredictor(width, config.num_classes), config.box, extra)


def build_pooler(config: DetectorConfig, size: int, sampling_ratio: int) -> MultiScaleRoIPooler:
    """A pooler over the levels ROIs come from (Eq. 1 with the config's canonical size) at size x size."""
    roi = config.roi
    return MultiScaleRoIPooler(
        config.pooled_levels(),
        size,
        sampling_ratio,
        roi.aligned,
        roi.pooler,
        config.canonical_size(),
        roi.canonical_level,
    )
