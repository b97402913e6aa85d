"""fpnlab.teaching.analysis and fpnlab.engine.inference: the measurements the notebooks show, on worked examples."""

import pytest
import torch

from fpnlab.engine.inference import detect, detect_all
from fpnlab.teaching.analysis import busiest_object, near

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [0.0, 0.0, 100.0, 100.0]])


def test_the_busiest_object_is_the_one_most_boxes_overlap_among_the_small_ones():
    # two boxes on object 1 (IoU 1 and 0.81), one on object 0 (IoU 1), three on object 2 (too large to zoom on)
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [21.0, 21.0, 39.0, 39.0]] + [[0.0, 0.0, 100.0, 100.0]] * 3
    )
    assert busiest_object(GT, boxes, max_side=50) == 1
    assert busiest_object(GT, boxes, max_side=100) == 2  # now object 2 may be chosen, and it has three


def test_near_keeps_the_boxes_and_scores_overlapping_one_object():
    found = {
        "boxes": torch.tensor([[20.0, 20.0, 40.0, 40.0], [0.0, 0.0, 10.0, 10.0], [25.0, 25.0, 45.0, 45.0]]),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
    }
    boxes, scores = near(GT[1], found)
    # IoU with the third: overlap 15 x 15 = 225 over 400 + 400 - 225 = 575: 0.39 < 0.5, left out
    assert boxes.tolist() == [[20.0, 20.0, 40.0, 40.0]] and scores.tolist() == pytest.approx([0.9])
    assert len(near(GT[1], found, iou=0.3)[0]) == 2


class FixedDetector(torch.nn.Module):
    """Returns, for the i-th image it has seen, boxes with scores 0.9 and 0.2 and records the batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.batches: list[int] = []

    def forward(self, images):
        self.batches.append(len(images))
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 4.0, 4.0]]),
                "labels": torch.tensor([1, 2]),
                "scores": torch.tensor([0.9, 0.2]),
            }
            for _ in images
        ]


def test_detect_all_batches_the_images_and_keeps_the_scores_above_the_threshold():
    model = FixedDetector().train()
    found = detect_all(model, [torch.rand(3, 8, 8)] * 5, score_threshold=0.5, batch_size=2)
    assert model.batches == [2, 2, 1] and not model.training
    assert [d["labels"].tolist() for d in found] == [[1]] * 5
    assert detect(model, torch.rand(3, 8, 8))["scores"].tolist() == pytest.approx([0.9])
