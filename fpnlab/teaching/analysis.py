"""Measurements the notebooks show, computed with the detector's own parts (never re-implemented).

    best_anchor_iou(boxes, anchors_by_level)   (N, L): how well the best anchor of each level fits each box
    best_level_counts(boxes, best, levels)     per COCO size bucket, how many boxes each level fits best
    anchor_targets(model, anchors, gt_boxes)   the RPN's training targets for one image: labels, sample, deltas
    rpn_losses(model, image, gt_boxes)         the RPN's two training losses on one image (weights untouched)
    refine_anchor(model, image, gt_boxes, i)   one anchor, step by step, into a proposal

Boxes are in the pixels of the image the network sees (resized): `Example.gt_boxes` in a notebook.
    recall_after_steps(model, dataset, n)      recall at IoU 0.5 after each step of proposal selection
    busiest_object(gt, boxes, max_side)        the object most boxes overlap (the one to zoom on); near(): those boxes
    refinement_gains(model, dataset, n)        per object: IoU of its best anchor after the RPN's deltas minus before
    roi_pool_box(box, stride)                  the edges RoI pooling rounds a box to (RoIAlign keeps them)
    cross_class_pairs(detections)              overlapping detections of different classes (per-class NMS keeps them)
    objectness_inside(seen, box)               per level: the highest objectness of a cell inside one box
    ablated_necks(model)                       the FPN's trained convs wired as the two ablations (rows d and e)
    level_crops(model, seen, box), bin_spread  one box's 7 x 7 crops from its own and the farthest level; their spread
    head_accuracy(model, image, target)        the box head's accuracy on one image's sampled ROIs, and its baseline
    first_rise(history)                        how much each loss term grows in the first tenth of a run
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from fpnlab.data.coco import AREA_RANGES
from fpnlab.engine.batches import seeded_random
from fpnlab.model.boxes import box_area, box_iou, clip_boxes_to_image
from fpnlab.model.config import ProposalCounts
from fpnlab.model.detector import FPNDetector, Inspection
from fpnlab.model.fpn import FPN
from fpnlab.model.levels import level_number
from fpnlab.model.matching import sample_targets
from fpnlab.model.poolers import roi_align
from fpnlab.model.rpn import flatten_deltas, flatten_objectness
from fpnlab.model.transform import resize_boxes
from fpnlab.switch import evaluating
from fpnlab.teaching.probe import cell_centres, on_objects

LOSS_TERMS = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


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


def refinement_gains(model: FPNDetector, dataset: Any, images: int) -> Tensor:
    """(N,) for every object of the first `images` images: the IoU of its best anchor once refined by the RPN's
    deltas (and clipped) minus the anchor's own IoU (refine_anchor's "iou" - "iou_anchor")."""
    gains = []
    device = next(model.parameters()).device
    for index in range(images):
        image, target = dataset[index]
        size = model.inspect([image.to(device)]).image_sizes[0]
        gt = resize_boxes(target["boxes"], image.shape[-2:], size)  # the network's input pixels
        for k in range(len(gt)):
            steps = refine_anchor(model, image, gt, k)
            gains.append(steps["iou"] - steps["iou_anchor"])
    return torch.tensor(gains)


def objectness_inside(seen: Inspection, box: Tensor) -> dict[str, float]:
    """{level: the highest objectness probability (any of the A anchors) of a cell whose centre lies inside
    `box` (4,), in the network's input pixels}, for the first image of `seen`; 0 where no cell centre does."""
    peaks = {}
    for name, logits in seen.objectness.items():
        probability = logits[0].sigmoid().amax(dim=0).cpu()  # (H, W): the best of the A anchors per cell
        h, w = probability.shape
        x, y = cell_centres(h, w, seen.images.shape[-1] / w)
        inside = on_objects(x, y, box[None].cpu())
        peaks[name] = float(probability.flatten()[inside].max()) if inside.any() else 0.0
    return peaks


def ablated_necks(model: FPNDetector) -> dict[str, FPN]:
    """The model's trained FPN convs wired as the paper's ablations: {"no top-down": row (d), "no lateral":
    row (e)}. Not trained that way: they show what each path carries, not what such a model would learn."""
    fpn, config = model.neck, model.config
    in_channels = list(model.backbone.out_channels.values())
    device = next(model.parameters()).device
    no_top_down = FPN(in_channels, config.fpn_channels, top_down=False, out_levels=config.levels)
    no_top_down.load_state_dict(fpn.state_dict())  # the same convs exist
    no_lateral = FPN(in_channels, config.fpn_channels, lateral=False, out_levels=config.levels)
    no_lateral.load_state_dict({k: v for k, v in fpn.state_dict().items() if k in no_lateral.state_dict()})
    return {"no top-down": no_top_down.to(device).eval(), "no lateral": no_lateral.to(device).eval()}


def level_crops(model: FPNDetector, seen: Inspection, box: Tensor) -> dict[str, Tensor]:
    """The 7 x 7 RoIAlign crops (C, 7, 7) of one box (4,) in the network's input pixels, from the level Eq. 1
    gives it and from the pooled level farthest from that one: {"p<own>": ..., "p<farthest>": ...}."""
    pooler = model.roi_heads.pooler
    own = int(pooler.levels_of([box[None].to(seen.images.device)])[0][0])
    ks = [level_number(name) for name in pooler.levels]
    farthest = ks[0] if own - ks[0] >= ks[-1] - own else ks[-1]
    crops = {}
    for k in (own, farthest):
        feature = seen.pyramid[f"p{k}"][:1].cpu()
        crops[f"p{k}"] = roi_align(feature, [box[None].cpu()], pooler.output_size, 2.0**-k, pooler.sampling_ratio)[0]
    return crops


def bin_spread(crop: Tensor) -> float:
    """How much a (C, S, S) crop varies across its S x S bins: the standard deviation over the bins, averaged
    over the channels (0 when every bin holds the same numbers)."""
    return float(crop.flatten(1).std(dim=1).mean())


@torch.no_grad()
def head_accuracy(model: FPNDetector, image: Tensor, target: dict[str, Tensor], seed: int = 0) -> dict[str, float]:
    """The box head's accuracy on one image's sampled training ROIs (sampled from `seed`, as in training, but
    nothing trained): on all of them, on the positives, and the background share (an all-background guess's
    accuracy)."""
    device = next(model.parameters()).device
    wanted = {"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)}
    heads = model.roi_heads
    with evaluating(model):
        first = model.first_stage([image.to(device)], [wanted])
        with seeded_random(seed):
            rois, labels, _, _ = heads.sample_proposals(first.rpn.boxes, first.targets)
        class_logits, _ = heads.predictor(heads.box_head(heads.pooler(first.pyramid, rois, first.batch.padded_size)))
    right = (class_logits.argmax(dim=1) == labels).float()
    return {
        "all": float(right.mean()),
        "positives": float(right[labels > 0].mean()),
        "background share": float((labels == 0).float().mean()),
    }


def first_rise(history: list[dict[str, float]], terms: tuple[str, ...] = LOSS_TERMS) -> dict[str, float]:
    """{term: how much it grows in the first tenth of a run}: its highest value in the first tenth of the
    metrics.csv rows over its value in the first row (1.0: it never rose above where it started)."""
    tenth = history[: max(2, len(history) // 10)]
    return {term: max(row[term] for row in tenth) / max(tenth[0][term], 1e-12) for term in terms}


def roi_pool_box(box: Tensor, stride: int) -> Tensor:
    """The box (4,) RoI pooling reads on a map of this stride: every edge rounded to a whole cell (half away
    from zero, as the kernel rounds), back in input pixels. RoIAlign reads the box as it is."""
    return torch.sign(box) * torch.floor((box / stride).abs() + 0.5) * stride


def cross_class_pairs(detections: list[dict[str, Tensor]], iou: float = 0.5) -> int:
    """Pairs of detections of the same image, of different classes, overlapping with IoU > iou: what per-class
    NMS leaves standing on purpose."""
    pairs = 0
    for found in detections:
        overlap = box_iou(found["boxes"], found["boxes"]) > iou
        other_class = found["labels"][:, None] != found["labels"][None]
        pairs += int((overlap & other_class).triu(1).sum())
    return pairs
