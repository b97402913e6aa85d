"""torchvision's Faster R-CNN and Mask R-CNN in fpnlab's detector: same settings, same weights, same detections.

    model = from_torchvision(torchvision_model)    # any fasterrcnn_resnet50_fpn- or maskrcnn_resnet50_fpn-like
                                                   # model, any num_classes (masks included for a MaskRCNN)
    model = from_torchvision(weights="DEFAULT")    # torchvision's COCO-trained R50-FPN (downloads once)

tests/test_detector.py proves the detections equal to 1e-4. The names of the parameters differ
(TORCHVISION_NAMES); the numbers do not.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights as Weights
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from fpnlab.errors import FpnlabError
from fpnlab.model.backbone import TRAINABLE_ORDER
from fpnlab.model.config import (
    PAPER_CANONICAL_SIZE,
    BoxHeadConfig,
    DetectorConfig,
    MaskHeadConfig,
    ProposalCounts,
    RoIConfig,
    RPNConfig,
)
from fpnlab.model.detector import FPNDetector
from fpnlab.model.fpn import torchvision_fpn_state

# torchvision's parameter names -> ours (the first matching prefix wins); the FPN is renamed by fpnlab.model.fpn.
TORCHVISION_NAMES = (
    ("backbone.body.", "backbone."),
    ("rpn.head.conv.0.0.", "rpn.head.conv."),
    ("rpn.head.conv.", "rpn.head.conv."),  # checkpoints older than torchvision 0.13 (the COCO weights)
    ("rpn.head.cls_logits.", "rpn.head.objectness."),
    ("rpn.head.bbox_pred.", "rpn.head.deltas."),
    ("roi_heads.box_head.", "roi_heads.box_head."),
    ("roi_heads.box_predictor.", "roi_heads.predictor."),
    ("roi_heads.mask_predictor.", "roi_heads.extra_heads.mask.predictor."),
)
# maskrcnn_resnet50_fpn's conv tower: mask_head.<i>.0.* (torchvision >= 0.13) or mask_head.mask_fcn<i+1>.*
MASK_TOWER = re.compile(r"roi_heads\.mask_head\.(?:(\d+)\.0|mask_fcn(\d+))\.")
RESNET_DEPTHS = {
    ("BasicBlock", (2, 2, 2, 2)): "resnet18",
    ("BasicBlock", (3, 4, 6, 3)): "resnet34",
    ("Bottleneck", (3, 4, 6, 3)): "resnet50",
    ("Bottleneck", (3, 4, 23, 3)): "resnet101",
}


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
    depth, norm = supported_body(tv_model)
    backbone, rpn, roi, transform = tv_model.backbone, tv_model.rpn, tv_model.roi_heads, tv_model.transform
    trainable = 0
    while trainable < 5 and all(
        p.requires_grad for p in getattr(backbone.body, TRAINABLE_ORDER[trainable]).parameters()
    ):
        trainable += 1
    return DetectorConfig(
        num_classes=roi.box_predictor.cls_score.out_features,
        backbone=depth,
        norm=norm,
        trainable_layers=trainable,
        fpn_channels=backbone.out_channels,
        anchor_sizes=tuple(s[0] for s in rpn.anchor_generator.sizes),
        aspect_ratios=tuple(rpn.anchor_generator.aspect_ratios[0]),
        min_size=transform.min_size[-1],
        max_size=transform.max_size,
        image_mean=tuple(transform.image_mean),
        image_std=tuple(transform.image_std),
        rpn=rpn_config(rpn),
        roi=RoIConfig(
            output_size=roi.box_roi_pool.output_size[0],
            sampling_ratio=roi.box_roi_pool.sampling_ratio,
            canonical_size=float(PAPER_CANONICAL_SIZE),
        ),  # torchvision's LevelMapper: 224 at any size
        box=box_head_config(roi),
        mask=mask_head_config(roi),
    )


def supported_body(tv_model: nn.Module) -> tuple[str, str]:
    """(ResNet depth, norm) of a torchvision FasterRCNN with a ResNet-FPN backbone; FpnlabError for any other."""
    backbone = getattr(tv_model, "backbone", None)
    if (
        not isinstance(tv_model, FasterRCNN)
        or not hasattr(backbone, "body")
        or not hasattr(backbone, "fpn")
        or not isinstance(backbone.fpn.extra_blocks, LastLevelMaxPool)
        or len(backbone.fpn.inner_blocks) != 4
    ):
        raise FpnlabError(
            f"from_torchvision expects a torchvision FasterRCNN with a ResNet-FPN backbone such as "
            f"fasterrcnn_resnet50_fpn, got {type(tv_model).__name__}."
        )
    body = backbone.body
    layers = [body.layer1, body.layer2, body.layer3, body.layer4]
    depth = RESNET_DEPTHS.get((type(body.layer1[0]).__name__, tuple(len(layer) for layer in layers)))
    norms = {"FrozenBatchNorm2d": "frozen_bn", "BatchNorm2d": "bn", "GroupNorm": "gn"}
    if (
        depth is None
        or type(body.bn1).__name__ not in norms
        or any(len(s) != 1 for s in tv_model.rpn.anchor_generator.sizes)
    ):
        raise FpnlabError(
            "from_torchvision supports ResNet-18/34/50/101 bodies with (Frozen)BatchNorm or GroupNorm "
            "and one anchor size per level, as fasterrcnn_resnet50_fpn has."
        )
    return depth, norms[type(body.bn1).__name__]


def rpn_config(rpn: nn.Module) -> RPNConfig:
    """The RPNConfig of a torchvision RegionProposalNetwork."""
    return RPNConfig(
        train=ProposalCounts(rpn._pre_nms_top_n["training"], rpn._post_nms_top_n["training"]),
        test=ProposalCounts(rpn._pre_nms_top_n["testing"], rpn._post_nms_top_n["testing"]),
        nms_thresh=rpn.nms_thresh,
        fg_iou_thresh=rpn.proposal_matcher.high_threshold,
        bg_iou_thresh=rpn.proposal_matcher.low_threshold,
        batch_size_per_image=rpn.fg_bg_sampler.batch_size_per_image,
        positive_fraction=rpn.fg_bg_sampler.positive_fraction,
        score_thresh=rpn.score_thresh,
    )


def box_head_config(roi: nn.Module) -> BoxHeadConfig:
    """The BoxHeadConfig of a torchvision RoIHeads."""
    return BoxHeadConfig(
        representation_size=roi.box_head.fc6.out_features,
        fg_iou_thresh=roi.proposal_matcher.high_threshold,
        bg_iou_thresh=roi.proposal_matcher.low_threshold,
        batch_size_per_image=roi.fg_bg_sampler.batch_size_per_image,
        positive_fraction=roi.fg_bg_sampler.positive_fraction,
        reg_weights=tuple(roi.box_coder.weights),
        score_thresh=roi.score_thresh,
        nms_thresh=roi.nms_thresh,
        detections_per_img=roi.detections_per_img,
    )


def mask_head_config(roi: nn.Module) -> MaskHeadConfig:
    """The MaskHeadConfig of a torchvision RoIHeads: enabled for a MaskRCNN, the default (off) for a FasterRCNN."""
    if getattr(roi, "mask_head", None) is None:
        return MaskHeadConfig()
    convs = [m for m in roi.mask_head.modules() if isinstance(m, nn.Conv2d)]
    return MaskHeadConfig(
        enabled=True,
        pool_size=roi.mask_roi_pool.output_size[0],
        sampling_ratio=roi.mask_roi_pool.sampling_ratio,
        conv_layers=tuple(c.out_channels for c in convs),
        dilation=convs[0].dilation[0],
        deconv_channels=roi.mask_predictor.conv5_mask.out_channels,
    )


def torchvision_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision fasterrcnn_resnet50_fpn state dict renamed to FPNDetector's parameter names."""
    ours = {f"neck.{key}": value for key, value in torchvision_fpn_state(state, prefix="backbone.fpn.").items()}
    for key, value in state.items():
        prefix = next((p for p in TORCHVISION_NAMES if key.startswith(p[0])), None)
        tower = MASK_TOWER.match(key)
        if prefix is not None:
            ours[prefix[1] + key[len(prefix[0]) :]] = value
        elif tower is not None:  # the i-th conv, counted from 0
            i = int(tower[1]) if tower[1] is not None else int(tower[2]) - 1
            ours[f"roi_heads.extra_heads.mask.convs.{i}.{key[tower.end() :]}"] = value
    return ours


def _load_torchvision_state(model: FPNDetector, state: dict[str, Tensor]) -> None:
    try:
        model.load_state_dict(torchvision_state_dict(state))
    except RuntimeError as error:  # missing / unexpected keys or shapes: name the first lines
        raise FpnlabError(
            f"the torchvision weights do not fit this detector: {str(error).splitlines()[1].strip()}"
        ) from None


def _from_coco_weights(weights: Any) -> FPNDetector:
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
    model = FPNDetector(
        DetectorConfig(
            num_classes=len(weights.meta["categories"]), roi=RoIConfig(canonical_size=float(PAPER_CANONICAL_SIZE))
        )
    )
    _load_torchvision_state(model, state)
    if weights == Weights.COCO_V1:  # these weights were trained with FrozenBatchNorm eps = 0 (as torchvision sets)
        for module in model.backbone.modules():
            if hasattr(module, "eps"):
                module.eps = 0.0
    model.categories = list(weights.meta["categories"])
    return model.eval()


def coco_weights_reachable(timeout: float = 3.0) -> bool:
    """True when torchvision's COCO weights are in the torch hub cache, or their server answers within
    `timeout` seconds (so an offline machine is told at once instead of waiting on a dead connection)."""
    url = Weights.DEFAULT.url
    if (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file():
        return True
    try:
        with socket.create_connection((urlparse(url).hostname, 443), timeout=timeout):
            return True
    except OSError:
        return False
