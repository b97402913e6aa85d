"""Which objects a detector found, one by one: the per-object view behind the COCO averages.

    missed_objects(gt_boxes, det_boxes)        (N,) bool: no detection overlaps the object with IoU >= 0.5
    recall_by_size(detections, targets)        the share found in each COCO size bucket

A ground-truth box counts as found when some detection (of any class) overlaps it with IoU >=
iou_thresh; this is the test the notebooks' galleries draw (dashed red: missed).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fpnlab.data.coco import AREA_RANGES
from fpnlab.model.boxes import box_iou


def missed_objects(gt_boxes: Tensor, det_boxes: Tensor, iou_thresh: float = 0.5) -> Tensor:
    """(N,) bool: the ground-truth boxes that no detection overlaps with IoU >= iou_thresh."""
    if len(det_boxes) == 0:
        return torch.ones(len(gt_boxes), dtype=torch.bool)
    if len(gt_boxes) == 0:
        return torch.zeros(0, dtype=torch.bool)
    return box_iou(gt_boxes.float(), det_boxes.float()).amax(dim=1) < iou_thresh


def recall_by_size(
    detections: list[dict[str, Tensor]],
    targets: list[dict[str, Tensor]],
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> dict[str, dict[str, float]]:
    """{"small" | "medium" | "large": {"objects": n, "recall": r}}: the share of ground-truth objects of each
    COCO size bucket (by `area`) that a detection scoring >= score_thresh overlaps with IoU >= iou_thresh.
    A bucket without objects has recall nan."""
    found = torch.cat(
        [
            ~missed_objects(t["boxes"], d["boxes"][d["scores"] >= score_thresh].cpu(), iou_thresh)
            for d, t in zip(detections, targets)
        ]
    )  # (N,) over all images
    areas = torch.cat([t["area"] for t in targets])  # (N,)
    stats = {}
    for name, (low, high) in AREA_RANGES.items():
        in_bucket = (areas >= low) & (areas < high)
        stats[name] = {"objects": int(in_bucket.sum()), "recall": found[in_bucket].float().mean().item()}
    return stats
