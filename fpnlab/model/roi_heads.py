"""The Fast R-CNN head (stage 6): classify each proposal and refine its box, one class at a time.

FPN paper, Sec. 4.2: every ROI is pooled to 7 x 7 from its pyramid level (Eq. 1, fpnlab.model.poolers), then
two 1024-d fully connected layers ("2fc", lighter than a conv5 head) feed two siblings: class scores
(K + 1 with background) and class-specific box deltas (4 per class, BoxCoder weights 10, 10, 5, 5).

    training    proposals + the gt boxes, matched at IoU 0.5; 512 ROIs sampled per image, a quarter
                positive; cross-entropy over classes + smooth L1 (beta 1/9) on the true class's deltas.
    inference   softmax, decode every class's box, clip; drop background and scores <= 0.05; NMS at
                IoU 0.5 within each class; the 100 best per image.

Numbers and order of operations follow torchvision's RoIHeads, so detections are equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.model.boxes import BoxCoder, batched_nms, clip_boxes_to_image, remove_small_boxes
from fpnlab.model.config import SMOOTH_L1_BETA, BoxHeadConfig
from fpnlab.model.matching import BalancedPositiveNegativeSampler, Matcher, sample_targets
from fpnlab.model.poolers import MultiScaleRoIPooler
from fpnlab.model.transform import ImageBatch
from fpnlab.overrides import temporarily

MIN_DETECTION_SIZE = 1e-2  # pixels: detections thinner than this are dropped (torchvision's value)


class TwoMLPHead(nn.Module):
    """(K, C, 7, 7) pooled features -> (K, representation_size): flatten, fc6 + ReLU, fc7 + ReLU."""

    def __init__(self, in_features: int, representation_size: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """(K, D) -> class logits (K, num_classes) and class-specific box deltas (K, 4 * num_classes)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class PositiveRoIs(NamedTuple):
    """A training batch's sampled positive ROIs, per image: what an extra head (masks) learns from."""

    boxes: list[Tensor]  # per image (P_i, 4), in the pixels of the batch
    labels: list[Tensor]  # per image (P_i,) the class of each
    matched: list[Tensor]  # per image (P_i,) the index of its gt box in that image's target


class RoIHeads(nn.Module):
    """Features + proposals -> detections per image {"boxes", "labels", "scores"} (+ two losses in training).

    Boxes in and out are in the pixels of the resized, padded batch (the detector maps them back).
    ``config`` (fpnlab.model.config.BoxHeadConfig) holds the numbers, torchvision's by default.

    ``extra_heads`` work beside the box head on the same ROIs, without changing it (a mask head, stage 9).
    Each is an nn.Module with two methods:

        loss(features, positives: PositiveRoIs, targets, batch) -> {"loss_<name>": Tensor}    (training)
        predict(features, detections, batch) -> detections with its own fields added        (inference)
    """

    def __init__(
        self,
        pooler: MultiScaleRoIPooler,
        box_head: nn.Module,
        predictor: FastRCNNPredictor,
        config: BoxHeadConfig = BoxHeadConfig(),
        extra_heads: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.pooler, self.box_head, self.predictor, self.config = pooler, box_head, predictor, config
        self.extra_heads = nn.ModuleDict(dict(extra_heads or {}))
        self.box_coder = BoxCoder(config.reg_weights)
        self.matcher = Matcher(config.fg_iou_thresh, config.bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(config.batch_size_per_image, config.positive_fraction)

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        batch: ImageBatch,
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            proposals, labels, regression_targets, positives = self.sample_proposals(proposals, targets)
        pooled = self.pooler(features, proposals, batch.padded_size)  # (K, C, 7, 7)
        class_logits, box_deltas = self.predictor(self.box_head(pooled))  # (K, num_classes), (K, 4 * num_classes)
        if self.training:
            losses = self.loss(class_logits, box_deltas, labels, regression_targets)
            for head in self.extra_heads.values():
                losses.update(head.loss(features, positives, targets, batch))
            return [], losses
        detections = self.postprocess(class_logits, box_deltas, proposals, batch.image_sizes)
        for head in self.extra_heads.values():
            detections = head.predict(features, detections, batch)
        return detections, {}

    @torch.no_grad()
    def sample_proposals(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], Tensor, Tensor, PositiveRoIs]:
        """Per image: add the gt boxes, match, sample -> (sampled ROIs per image (R_i, 4),
        their labels (sum R_i,) with 0 = background, regression targets of the positives (P, 4),
        the positives themselves with their classes and gt boxes, for the extra heads).

        In each image's block the sampled positives come first, so the targets line up with labels > 0.
        """
        rois, labels, regression_targets, positives = [], [], [], PositiveRoIs([], [], [])
        for boxes, target in zip(proposals, targets):
            gt = target["boxes"].to(boxes.dtype)
            boxes = torch.cat([boxes, gt])  # the gt boxes are perfect proposals, a positive for every object
            sampled = sample_targets(self.matcher, self.sampler, self.box_coder, gt, target["labels"], boxes)
            rois.append(boxes[torch.cat([sampled.positive, sampled.negative])])
            labels.append(sampled.labels)
            regression_targets.append(sampled.box_targets)
            positives.boxes.append(boxes[sampled.positive])
            positives.labels.append(sampled.labels[: len(sampled.positive)])
            positives.matched.append(sampled.matched)
        return rois, torch.cat(labels), torch.cat(regression_targets), positives

    def loss(
        self, class_logits: Tensor, box_deltas: Tensor, labels: Tensor, regression_targets: Tensor
    ) -> dict[str, Tensor]:
        """Fast R-CNN paper Eq. 1: cross-entropy over classes + smooth L1 on the true class's deltas,
        both averaged over all sampled ROIs: (K, C), (K, 4C), (K,), (P, 4) -> two scalar losses."""
        # BEGIN UNIT roi_loss
        num_rois = max(len(labels), 1)
        positive = torch.where(labels > 0)[0]  # (P,)
        deltas = box_deltas.view(len(labels), -1, 4)[positive, labels[positive]]  # (P, 4) of the gt class
        box_reg = F.smooth_l1_loss(deltas, regression_targets, beta=SMOOTH_L1_BETA, reduction="sum")
        classifier = F.cross_entropy(class_logits, labels, reduction="sum")
        return {"loss_classifier": classifier / num_rois, "loss_box_reg": box_reg / num_rois}
        # END UNIT roi_loss

    def settings(self, **values: Any) -> AbstractContextManager[None]:
        """Other post-processing settings inside a `with` block, e.g. settings(nms_thresh=1.0) for no NMS."""
        return temporarily(self, ("score_thresh", "nms_thresh", "detections_per_img"), values)

    @torch.no_grad()
    def postprocess(
        self, class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Scores and one box per (ROI, class) -> per image the detections that survive threshold and NMS."""
        num_classes = class_logits.shape[1]
        boxes = self.box_coder.decode(box_deltas, torch.cat(proposals)).view(-1, num_classes, 4)  # (K, C, 4)
        scores = F.softmax(class_logits, dim=-1)  # (K, C)
        counts = [len(p) for p in proposals]
        return [
            self.detect_image(b, s, size) for b, s, size in zip(boxes.split(counts), scores.split(counts), image_sizes)
        ]

    def detect_image(self, boxes: Tensor, scores: Tensor, image_size: tuple[int, int]) -> dict[str, Tensor]:
        """One image: boxes (R, C, 4), scores (R, C) -> {"boxes" (D, 4), "labels" (D,), "scores" (D,)}, best first."""
        # BEGIN UNIT detect_image
        boxes = clip_boxes_to_image(boxes, image_size)
        labels = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)  # (R, C)
        boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        keep = torch.where(scores > self.config.score_thresh)[0]  # class 0, background, is never a detection
        keep = keep[remove_small_boxes(boxes[keep], MIN_DETECTION_SIZE)]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.config.nms_thresh)[: self.config.detections_per_img]  # per class
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}
        # END UNIT detect_image
