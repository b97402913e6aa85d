"""Which objects a detector found: missed objects at IoU 0.5, and recall by COCO size bucket."""

from __future__ import annotations

import math

import torch

from fpnlab.engine.recall import missed_objects, recall_by_size


def test_missed_objects_at_iou_half():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 20]])
    det = torch.tensor([[0.0, 0, 10, 9], [22, 22, 32, 32]])
    # gt 0: IoU 90/100 with det 0; gt 1: 64/136 = 0.47 with det 1; gt 2: 90/200 = 0.45 with det 0
    assert missed_objects(gt, det).tolist() == [False, True, True]
    assert not missed_objects(gt, det, iou_thresh=0.45).tolist()[2]
    assert missed_objects(gt, det[:0]).tolist() == [True, True, True]
    assert missed_objects(gt[:0], det).tolist() == []


def test_recall_by_size_counts_found_objects_per_coco_bucket():
    # three objects: small (10x10), medium (40x40), large (100x100); found: small and large
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 90, 90], [100, 100, 200, 200]])
    target = {"boxes": boxes, "area": torch.tensor([100.0, 1600.0, 10000.0])}
    detection = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 90, 90], [100, 100, 200, 190]]),
        "scores": torch.tensor([0.9, 0.3, 0.6]),
    }  # the medium one scores below 0.5
    stats = recall_by_size([detection], [target])
    assert stats == {
        "small": {"objects": 1, "recall": 1.0},
        "medium": {"objects": 1, "recall": 0.0},
        "large": {"objects": 1, "recall": 1.0},
    }
    stats = recall_by_size([detection, detection], [target, target], score_thresh=0.2)
    assert [stats[b]["objects"] for b in stats] == [2, 2, 2] and stats["medium"]["recall"] == 1.0
    assert math.isnan(
        recall_by_size([detection], [{"boxes": boxes[:1], "area": torch.tensor([100.0])}])["large"]["recall"]
    )
