"""fpnlab.teaching's measurements on worked examples: the probe, the analysis helpers, the facts' cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fpnlab.model.detector import build_detector
from fpnlab.teaching import analysis, facts
from fpnlab.teaching.probe import ObjectnessProbe, cell_centres, on_objects


def test_cell_centres_are_half_a_stride_in_row_by_row():
    x, y = cell_centres(2, 3, 10.0)
    assert x.tolist() == [5, 15, 25, 5, 15, 25] and y.tolist() == [5, 5, 5, 15, 15, 15]
    inside = on_objects(x, y, torch.tensor([[0.0, 0.0, 20.0, 10.0]]))  # covers the first two centres of row 0
    assert inside.tolist() == [True, True, False, False, False, False]


def test_the_probe_reads_a_map_that_knows_perfectly_and_draws_as_many_cells_as_asked():
    # 4 x 4 maps of stride 8 over a 32 px input; channel 0 says +1 on the object, -1 elsewhere
    boxes = [torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([[16.0, 16.0, 32.0, 32.0]])]
    maps = []
    for box in boxes:
        x, y = cell_centres(4, 4, 8.0)
        knows = torch.where(on_objects(x, y, box), 1.0, -1.0).reshape(1, 1, 4, 4)
        noise = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(len(maps)))
        maps.append({"knows": torch.cat([knows, noise], 1), "blind": noise})
    probe = ObjectnessProbe(per_image=3)
    cells = probe.cells(maps, boxes, input_side=32)
    features, labels = cells["knows"]
    assert features.shape == (2 * (3 + 3), 3) and labels.tolist() == [1, 1, 1, 0, 0, 0] * 2
    assert probe.score(cells, cells)["knows"] == 1.0


def test_first_rise_is_each_terms_peak_in_the_first_tenth_over_its_first_value():
    rows = [{"loss_a": a, "loss_b": b} for a, b in [(1.0, 2.0), (1.5, 1.0)] + [(0.5, 0.5)] * 18]  # 20 rows
    assert analysis.first_rise(rows, terms=("loss_a", "loss_b")) == {"loss_a": 1.5, "loss_b": 1.0}


def test_bin_spread_and_roi_pool_box_worked_by_hand():
    assert analysis.bin_spread(torch.ones(3, 7, 7)) == 0.0
    crop = torch.zeros(1, 2, 2)
    crop[0, 0, 0] = 4.0  # bins 4, 0, 0, 0: sample std sqrt(((3)^2 + 3 * 1^2) / 3) = 2
    assert analysis.bin_spread(crop) == pytest.approx(2.0)
    box = torch.tensor([13.6, 21.3, 45.1, 58.9])  # / 4 = 3.4, 5.325, 11.275, 14.725 -> 3, 5, 11, 15 cells
    assert analysis.roi_pool_box(box, 4).tolist() == [12.0, 20.0, 44.0, 60.0]


def test_cross_class_pairs_counts_overlapping_boxes_of_different_classes_only():
    found = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [50, 50, 60, 60]]),
        "labels": torch.tensor([1, 2, 1, 2]),
    }
    # 0-1: classes 1, 2 at IoU 0.9; 1-2: the same; 0-2: one class; 3 overlaps nothing
    assert analysis.cross_class_pairs([found]) == 2 and analysis.cross_class_pairs([found], iou=0.95) == 0


def test_objectness_inside_takes_the_best_anchor_of_the_cells_whose_centre_is_in_the_box():
    logits = torch.full((1, 3, 4, 4), -10.0)  # stride 8 over 32 px
    logits[0, 2, 1, 1] = 0.0  # anchor 2 of the cell centred on (12, 12): probability 0.5
    logits[0, 0, 3, 3] = 10.0  # a cell centred on (28, 28), outside the box
    seen = SimpleNamespace(
        objectness={"p3": logits, "p4": torch.full((1, 3, 1, 1), 5.0)}, images=torch.zeros(1, 3, 32, 32)
    )
    peaks = analysis.objectness_inside(seen, torch.tensor([4.0, 4.0, 20.0, 20.0]))
    # p4's one cell (stride 32) is centred on (16, 16), inside the box too
    assert peaks == {"p3": pytest.approx(0.5), "p4": pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())}


def tiny_detector() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector(
        num_classes=3,
        backbone="resnet_tiny",
        norm="bn",
        min_size=64,
        max_size=64,
        anchor_sizes=(16, 32, 64, 128),
        fpn_channels=8,
        levels=("p2", "p3", "p4", "p5"),
        box={"representation_size": 16, "batch_size_per_image": 32},
    ).eval()


def test_head_accuracy_of_a_head_that_always_says_background_is_the_background_share():
    model = tiny_detector()
    with torch.no_grad():  # logits (5, 0, 0) for every ROI: always background
        model.roi_heads.predictor.cls_score.weight.zero_()
        model.roi_heads.predictor.cls_score.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0], [30.0, 20.0, 60.0, 50.0]]), "labels": torch.tensor([1, 2])}
    accuracy = analysis.head_accuracy(model, image, target, seed=0)
    assert accuracy["positives"] == 0.0 and accuracy["all"] == pytest.approx(accuracy["background share"])
    assert 0 < accuracy["background share"] < 1  # the gt boxes are in the sample: some ROIs are positive


def test_a_measurement_is_taken_once_and_kept_for_other_processes_by_the_models_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("FPNLAB_FACTS_CACHE", str(tmp_path))
    calls = []

    def measured_sum(offset: float, *, model: torch.nn.Module) -> dict:
        calls.append(offset)
        return {"sum": sum(p.detach().sum().item() for p in model.parameters()) + offset}

    model = tiny_detector()
    first = facts.per_model(measured_sum)(1.0, model=model)
    again = facts.per_model(measured_sum)(1.0, model=model)  # a fresh cache in memory, as in another process
    assert again == first and calls == [1.0] and len(list(tmp_path.iterdir())) == 1
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # other weights: another measurement
    facts.per_model(measured_sum)(1.0, model=model)
    assert calls == [1.0, 1.0] and len(list(tmp_path.iterdir())) == 2
