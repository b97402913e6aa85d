"""Measurements the notebooks show, computed with the detector's own parts (never re-implemented).

    best_anchor_iou(boxes, anchors_by_level)   (N, L): how well the best anchor of each level fits each box
    best_level_counts(boxes, best, levels)     per COCO size bucket, how many boxes each level fits best
    anchor_targets(model, anchors, gt_boxes)   the RPN's training targets for one image: labels, sample, deltas
    rpn_losses(model, image, gt_boxes)         the RPN's two training losses on one image (weights untouched)
    refine_anchor(model, image, gt_boxes, i)   one anchor, step by step, into a proposal

Boxes are in the pixels of the image the network sees (resized): `Example.gt_boxes` in a notebook.
    recall_after_steps(model, dataset, n)      recall at IoU 0.5 after each step of proposal selection
    busiest_object(gt, boxes, max_side)        the object most boxes overlap (the one to zoom on); near(): those boxes
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from fpnlab.data.coco import AREA_RANGES
from fpnlab.engine.batches import seeded_random
from fpnlab.model.boxes import box_area, box_iou, clip_boxes_to_image
from fpnlab.model.config import ProposalCounts
from fpnlab.model.detector import FPNDetector
from fpnlab.model.matching import sample_targets
from fpnlab.model.rpn import flatten_deltas, flatten_objectness
from fpnlab.switch import evaluating


def best_anchor_iou(boxes: Tensor, anchors_by_level: dict[str, Tensor]) -> Tensor:
    """(N, 4) boxes, level -> (A_l, 4) anchors  ->  (N, L): each box's best IoU with any anchor of each level."""
    return torch.stack([box_iou(boxes, anchors).amax(dim=1) for anchors in anchors_by_level.values()], dim=1)


def best_level_counts(boxes: Tensor, best: Tensor, levels: list[str]) -> dict[str, dict[str, int]]:
    """{"small" | "medium" | "large": {level: boxes whose best anchor is on that level}}, by the boxes' own size
    (sqrt of their area, in the pixels the anchors live in)."""
    area = box_area(boxes)
    winners = best.argmax(dim=1)
    counts = {}
    for bucket, (low, high) in AREA_RANGES.items():
        inside = (area >= low) & (area < high)
        counts[bucket] = {level: int((winners[inside] == k).sum()) for k, level in enumerate(levels)}
    return counts


class AnchorTargets(NamedTuple):
    """What the RPN trains one image's anchors towards (anchors in the network's input pixels)."""

    anchors: Tensor  # (N, 4) every anchor of every level
    labels: Tensor  # (N,) 1 positive, 0 negative, -1 ignored (between the two IoU thresholds)
    positive: Tensor  # (P,) indices of the sampled positives
    negative: Tensor  # (Q,) indices of the sampled negatives
    box_targets: Tensor  # (P, 4) (tx, ty, tw, th) moving each sampled positive onto its object


def anchor_targets(model: FPNDetector, anchors: Tensor, gt_boxes: Tensor, seed: int = 0) -> AnchorTargets:
    """The RPN's anchor labels and its balanced sample for one image's anchors (N, 4) and objects (M, 4), with
    the RPN's own Matcher, sampler and box coder; the sample is drawn from `seed`."""
    rpn = model.rpn
    objects = torch.ones(len(gt_boxes), dtype=torch.int64)  # class-agnostic: 1 = object
    with seeded_random(seed):
        sampled = sample_targets(rpn.matcher, rpn.sampler, rpn.box_coder, gt_boxes, objects, anchors)
    return AnchorTargets(anchors, sampled.all_labels, sampled.positive, sampled.negative, sampled.box_targets)


@torch.no_grad()
def rpn_losses(model: FPNDetector, image: Tensor, gt_boxes: Tensor, seed: int = 0) -> dict[str, float]:
    """The RPN's objectness and box-regression losses on one image (3, H, W) with objects (M, 4), as training
    computes them (features in eval mode, so BatchNorm statistics are not touched; the 256 anchors sampled
    from `seed`)."""
    device = next(model.parameters()).device
    with evaluating(model):
        first = model.first_stage([image.to(device)])
        objectness, deltas = model.rpn.head(list(first.pyramid.values()))
        logits = torch.cat([flatten_objectness(o) for o in objectness], 1)  # (1, N)
        deltas = torch.cat([flatten_deltas(d) for d in deltas], 1)  # (1, N, 4)
        with seeded_random(seed):
            losses = model.rpn.loss(logits, deltas, torch.cat(first.rpn.anchors), [{"boxes": gt_boxes.to(device)}])
    return {name: float(value) for name, value in losses.items()}


@torch.no_grad()
def refine_anchor(model: FPNDetector, image: Tensor, gt_boxes: Tensor, object_index: int) -> dict[str, Any]:
    """The best anchor of object `object_index` of `gt_boxes`, and what the RPN makes of it on `image` (input
    pixels of the network):

        gt, anchor, iou_anchor     the object, its best anchor (by IoU) and their IoU
        deltas, objectness         the RPN head's (tx, ty, tw, th) and objectness probability for that anchor
        decoded, clipped, iou      the anchor moved by the deltas, then clipped to the image, and its IoU
        kept                       the proposal (after NMS) that overlaps the clipped box most, and its IoU
    """
    gt = gt_boxes[object_index : object_index + 1]  # (1, 4)
    device = next(model.parameters()).device
    with evaluating(model):
        first = model.first_stage([image.to(device)])
        objectness, deltas = model.rpn.head(list(first.pyramid.values()))
    logits = torch.cat([flatten_objectness(o) for o in objectness], 1)[0].cpu()  # (N,)
    deltas = torch.cat([flatten_deltas(d) for d in deltas], 1)[0].cpu()  # (N, 4)
    anchors = torch.cat(first.rpn.anchors).cpu()
    iou = box_iou(gt, anchors)[0]
    best = int(iou.argmax())
    decoded = model.rpn.box_coder.decode(deltas[best : best + 1], anchors[best : best + 1])  # (1, 4)
    clipped = clip_boxes_to_image(decoded, first.batch.image_sizes[0])
    proposals = first.rpn.boxes[0].cpu()
    overlap = box_iou(clipped, proposals)[0]
    return {
        "gt": gt[0],
        "anchor": anchors[best],
        "iou_anchor": float(iou[best]),
        "deltas": deltas[best],
        "objectness": float(torch.sigmoid(logits[best])),
        "decoded": decoded[0],
        "clipped": clipped[0],
        "iou": float(box_iou(gt, clipped)[0, 0]),
        "kept": proposals[int(overlap.argmax())],
        "kept_iou": float(overlap.max()),
    }


def recall(gt: Tensor, boxes: Tensor, iou: float = 0.5) -> Tensor:
    """(G,) 1.0 where some box overlaps the gt box with IoU >= iou, else 0.0."""
    if len(boxes) == 0:
        return torch.zeros(len(gt))
    return (box_iou(gt, boxes).amax(dim=1) >= iou).float()


def recall_after_steps(model: FPNDetector, dataset: Any, images: int, iou: float = 0.5) -> dict[str, float]:
    """Recall at `iou` of the ground truth of the first `images` images after each step of the RPN's
    proposal selection: every anchor, the top-k per level (no NMS), after NMS, the best 100 and 10."""
    device = next(model.parameters()).device
    steps: dict[str, list[Tensor]] = {
        "all anchors": [],
        "top-k per level": [],
        "after NMS": [],
        "top 100": [],
        "top 10": [],
    }
    for i in range(images):
        image, target = dataset[i]
        seen = model.inspect([image.to(device)])
        scale = image.shape[-1] / seen.image_sizes[0][1]  # anchors live in the resized image
        anchors = torch.cat(list(seen.anchors.values())).cpu() * scale
        with model.rpn.settings(nms_thresh=1.0, test=ProposalCounts(model.rpn.config.test.pre_nms_top_n, 10**7)):
            candidates = model.propose([image.to(device)])[0]["boxes"].cpu()
        boxes = seen.proposals[0].cpu()
        for name, b in zip(steps, (anchors, candidates, boxes, boxes[:100], boxes[:10])):
            steps[name].append(recall(target["boxes"], b, iou))
    return {name: torch.cat(r).mean().item() for name, r in steps.items()}


def busiest_object(gt: Tensor, boxes: Tensor, max_side: float, iou: float = 0.5) -> int:
    """The index of the gt box (G, 4) that the most `boxes` (N, 4) overlap at IoU >= iou, among the objects no
    wider or taller than `max_side` (a view zoomed on it still shows its surroundings)."""
    counts = (box_iou(gt, boxes) >= iou).sum(dim=1)  # (G,) boxes per object
    small_enough = (gt[:, 2:] - gt[:, :2]).amax(dim=1) <= max_side
    return int(torch.where(small_enough, counts, -1).argmax())


def near(gt_box: Tensor, found: dict[str, Tensor], iou: float = 0.5) -> tuple[Tensor, Tensor]:
    """The boxes (K, 4) and scores (K,) of `found` ({"boxes", "scores"}) overlapping one gt box (4,) at IoU >= iou."""
    keep = box_iou(gt_box[None], found["boxes"].cpu())[0] >= iou
    return found["boxes"].cpu()[keep], found["scores"].cpu()[keep]
