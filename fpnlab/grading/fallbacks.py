"""torchvision's equivalent of each unit: what runs while a unit is not done, and what stands in for the other
units while one is checked (so a wrong `iou` costs `iou`'s points only, not `nms`'s).

    FALLBACKS["iou"]      ("torchvision.ops.box_iou", torchvision.ops.box_iou)

Each is called with the unit's own arguments (self first for a method).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import Tensor
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops.poolers import LevelMapper

from fpnlab.model.matching import Match


def _matcher(matcher: Any, iou: Tensor) -> Match:
    """torchvision's Matcher, its one packed tensor (gt index, -1 background, -2 ignored) split in two."""
    if iou.numel() == 0:  # torchvision refuses an empty matrix; no objects means background everywhere
        nothing = torch.zeros(iou.shape[1], dtype=torch.int64, device=iou.device)
        return Match(nothing, nothing.clone())
    packed = det_utils.Matcher(matcher.high_threshold, matcher.low_threshold, matcher.allow_low_quality_matches)(iou)
    labels = torch.where(packed >= 0, 1, torch.where(packed == -1, 0, -1))
    return Match(iou.argmax(dim=0), labels)


def _sampler(sampler: Any, labels: Tensor) -> tuple[Tensor, Tensor]:
    tv = det_utils.BalancedPositiveNegativeSampler(sampler.batch_size_per_image, sampler.positive_fraction)
    positive, negative = tv([labels])  # one mask each per image
    return torch.where(positive[0])[0], torch.where(negative[0])[0]


def _mask_targets(gt_masks: Tensor, boxes: Tensor, matched: Tensor, size: int, aligned: bool = False) -> Tensor:
    """torchvision's project_masks_on_boxes, with RoIAlign's `aligned` switch it leaves at False."""
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)
    return torchvision.ops.roi_align(gt_masks[:, None].to(boxes), rois, (size, size), 1.0, aligned=aligned)[:, 0]


LAYERS = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
FALLBACKS: dict[str, tuple[str, Callable[..., Any]]] = {  # unit -> (what stands in, how it is called)
    "area": ("torchvision.ops.box_area", torchvision.ops.box_area),
    "iou": ("torchvision.ops.box_iou", torchvision.ops.box_iou),
    "encode": (
        "torchvision's BoxCoder.encode_single",
        lambda coder, gt, proposals: det_utils.BoxCoder(coder.weights, coder.bbox_xform_clip).encode_single(
            gt, proposals
        ),
    ),
    "decode": (
        "torchvision's BoxCoder.decode_single",
        lambda coder, deltas, boxes: det_utils.BoxCoder(coder.weights, coder.bbox_xform_clip).decode_single(
            deltas, boxes
        ),
    ),
    "nms": ("torchvision.ops.nms", torchvision.ops.nms),
    "backbone": (
        "torchvision's IntermediateLayerGetter",
        lambda body, images: IntermediateLayerGetter(body, LAYERS)(images),
    ),
    "cell_anchors": (
        "torchvision's AnchorGenerator.generate_anchors",
        lambda generator, level: TvAnchorGenerator().generate_anchors(
            generator.sizes[level], generator.aspect_ratios[level]
        ),
    ),
    "flatten_objectness": (
        "torchvision's concat_box_prediction_layers",
        lambda logits: concat_box_prediction_layers([logits], [logits.repeat(1, 4, 1, 1)])[0].reshape(
            logits.shape[0], -1
        ),
    ),  # any deltas of the right shape
    "flatten_deltas": (
        "torchvision's concat_box_prediction_layers",
        lambda deltas: concat_box_prediction_layers([deltas[:, ::4]], [deltas])[1].reshape(deltas.shape[0], -1, 4),
    ),  # any logits of the right shape
    "matcher": ("torchvision's Matcher", _matcher),
    "sampler": ("torchvision's BalancedPositiveNegativeSampler", _sampler),
    "assign_levels": (
        "torchvision's LevelMapper",
        lambda boxes, k_min, k_max, size, level: LevelMapper(k_min, k_max, size, level)([boxes]) + k_min,
    ),
    "mask_targets": ("torchvision's roi_align (as project_masks_on_boxes)", _mask_targets),
    "paste_masks": ("torchvision's paste_masks_in_image", paste_masks_in_image),
}
