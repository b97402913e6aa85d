"""Stage 5: ROI-to-level assignment, FPN paper Eq. 1, against hand-worked answers and torchvision."""

import math

import pytest
import torch
from torchvision.ops.poolers import LevelMapper

from fpnlab.errors import FpnlabError
from fpnlab.model.levels import LEVEL_EPS, assign_levels, continuous_level, known_level, level_number


def square(side: float, x0: float = 0.0) -> list[float]:
    return [x0, x0, x0 + side, x0 + side]


def test_known_answers():
    boxes = torch.tensor([square(224), square(112), square(10), square(2000), square(448), square(111)])
    # 224 -> k0 = 4; 112 -> 3; 10 -> 4 + log2(10/224) = -0.49 -> 0, clamped to 2; 2000 -> 7.2, clamped to 5
    assert assign_levels(boxes).tolist() == [4, 3, 2, 5, 5, 2]
    assert assign_levels(boxes, k_min=3, k_max=6).tolist() == [4, 3, 3, 6, 5, 3]
    assert assign_levels(boxes).dtype == torch.int64  # used as an index into the list of levels


def test_continuous_level():
    assert continuous_level(224.0, 224.0) == 4.0
    assert continuous_level(112.0, 448.0) == 4.0  # sqrt(w * h) = 224
    assert math.isclose(continuous_level(10.0, 10.0), 4 + math.log2(10 / 224))
    ks = continuous_level(torch.tensor([112.0, 448.0]), torch.tensor([112.0, 448.0]))
    assert torch.allclose(ks, torch.tensor([3.0, 5.0]))
    # a tensor of widths with one float height (a square-ish sweep in a widget) stays a tensor
    ks = continuous_level(torch.tensor([56.0, 896.0]), 224.0)
    assert torch.allclose(ks, torch.tensor([3.0, 5.0]))


def test_epsilon_keeps_boundary_boxes_on_the_coarser_level():
    # In float32, 288.6 + 224 is stored as 512.59998, so this box is 223.99998 wide: mathematically a
    # 224 box (level 4), but log2 gives 3.9999999; without the epsilon the floor would say level 3.
    box = torch.tensor([square(224.0, x0=288.6)])
    raw = 4 + torch.log2(torch.sqrt((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])) / 224)
    assert torch.floor(raw).item() == 3.0 and torch.floor(raw + LEVEL_EPS).item() == 4.0
    assert assign_levels(box).tolist() == [4]


def test_equals_torchvision_level_mapper_on_random_boxes():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(5000, 2, generator=gen) * 800
    wh = torch.rand(5000, 2, generator=gen) ** 2 * 900 + 0.1  # many small boxes, some huge
    boxes = torch.cat([xy, xy + wh], dim=1)
    for k_min, k_max in [(2, 5), (3, 6), (4, 4)]:
        expected = LevelMapper(k_min, k_max)([boxes]) + k_min  # torchvision returns k - k_min
        assert torch.equal(assign_levels(boxes, k_min, k_max), expected)


def test_equals_torchvision_level_mapper_on_boundaries():
    offsets = torch.arange(0.0, 600.0, 0.37)  # non-integer corners give float round-off in the widths
    sides = torch.tensor([56.0, 112.0, 224.0, 448.0, 896.0])
    boxes = torch.tensor([square(s.item(), x0=o.item()) for s in sides for o in offsets])
    # rectangles with w * h = 224^2 exactly in real numbers
    widths = torch.arange(1.0, 2000.0)
    rects = torch.stack([torch.zeros_like(widths), torch.zeros_like(widths), widths, 224.0 * 224.0 / widths], dim=1)
    for b in (boxes, rects):
        assert torch.equal(assign_levels(b), LevelMapper(2, 5)([b]) + 2)
    assert set(assign_levels(rects).tolist()) == {4}


def test_degenerate_and_invalid_boxes():
    assert assign_levels(torch.tensor([[5.0, 5.0, 5.0, 9.0]])).tolist() == [2]  # zero area -> k_min
    with pytest.raises(FpnlabError, match=r"^assign_levels: boxes has 1 box\(es\) with x2 < x1"):
        assign_levels(torch.tensor([[50.0, 0.0, 10.0, 224.0]]))
    assert assign_levels(torch.zeros(0, 4)).shape == (0,)


@pytest.mark.parametrize("name, k", [("p2", 2), ("c4", 4), ("p6", 6), ("pool10", 10)])
def test_level_number_reads_the_level_from_the_name(name, k):
    assert level_number(name) == k


@pytest.mark.parametrize("name", ["pool", "P3", "3", "p3a", "", "p-1"])
def test_level_number_rejects_names_without_a_level(name):
    with pytest.raises(FpnlabError, match=f"like 'p2' or 'c4', got {name!r}"):
        level_number(name)


def test_eq1_refuses_a_canonical_size_that_is_not_a_finite_positive_number():
    for bad in (0, 0.0, -1.0, math.inf, math.nan, "224"):
        with pytest.raises(FpnlabError) as caught:
            continuous_level(224.0, 224.0, canonical_size=bad)
        assert str(caught.value) == f"Eq. 1's canonical size must be a number > 0 (224 in the paper), got {bad!r}."
    assert continuous_level(1.0, 1.0, canonical_size=0.5) == 5.0  # 4 + log2(1 / 0.5): any size > 0 will do


def test_eq1_refuses_a_box_without_area_and_takes_any_box_with_one():
    for w, h in ((0.0, 10.0), (10.0, 0.0), (-4.0, 10.0), (10.0, math.nan)):
        with pytest.raises(FpnlabError) as caught:
            continuous_level(w, h)
        assert str(caught.value) == f"an ROI needs a width and a height > 0 for Eq. 1, got {w} x {h}."
    assert continuous_level(0.5, 0.5) == 4 + math.log2(0.5 / 224)  # below one pixel: still a level


def test_a_level_name_is_checked_against_the_models_levels():
    assert known_level("p3", ["p2", "p3"]) == "p3"
    for bad in ("p6", "P3", 3, None):
        with pytest.raises(FpnlabError) as caught:
            known_level(bad, ["p2", "p3"])
        assert str(caught.value) == f"unknown pyramid level {bad!r}; this model has p2, p3."
