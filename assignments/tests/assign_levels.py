"""Unit 'assign_levels': the pyramid level that pools each ROI, FPN paper Eq. 1, fpnlab/levels.py
`assign_levels`: k = floor(k0 + log2(sqrt(w * h) / 224)), clamped to [k_min, k_max].

Expected values: levels worked out by hand, and torchvision's LevelMapper (plus k_min: it counts from 0).
"""

import torch
from otter.test_files import test_case
from torchvision.ops.poolers import LevelMapper

from fpnlab import grading as units
from fpnlab.model import levels

OK_FORMAT = False
name = "assign_levels"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def random_boxes(n, seed, dtype=torch.float32, offset=0.0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 400 + offset
    wh = torch.exp(torch.rand(n, 2, generator=gen, dtype=torch.float64) * 6.5)  # 1 .. 665 px, all scales
    return torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=units.DEVICE)


def assign(boxes, *args):
    return units.run("assign_levels", levels.assign_levels, boxes, *args)


def mapper(boxes, k_min=2, k_max=5, size=224.0, level=4):
    return LevelMapper(k_min, k_max, size, level)([boxes]) + k_min


@test_case(name="by hand: 224 -> 4, 112 -> 3 (on the boundary), 448 -> 5, 100 x 400 -> 3, 10 -> 2, 1000 -> 5")
def by_hand():
    sides = [(224, 224), (112, 112), (448, 448), (100, 400), (10, 10), (1000, 1000)]
    boxes = torch.tensor([[0.0, 0.0, float(w), float(h)] for w, h in sides], device=units.DEVICE)
    units.expect_equal(assign(boxes), torch.tensor([4, 3, 5, 3, 2, 5]), "levels of six boxes")


@test_case(name="200 random boxes of every scale against torchvision's LevelMapper")
def random_against_torchvision():
    boxes = random_boxes(200, seed=0)
    units.expect_equal(assign(boxes), mapper(boxes), "levels of 200 boxes")


@test_case(name="the lab's CPU scale: canonical size 89.6 px; levels 3..4 around k0 = 5", hidden=True)
def other_settings():
    boxes = random_boxes(150, seed=SEED + 1)
    units.expect_equal(assign(boxes, 2, 5, 89.6), mapper(boxes, 2, 5, 89.6), "levels with canonical size 89.6")
    units.expect_equal(assign(boxes, 3, 4, 224, 5), mapper(boxes, 3, 4, 224, 5), "levels clamped to 3..4, k0 = 5")


@test_case(name="float64 boxes, some off the image, and zero-area ones (k_min)", hidden=True)
def float64_off_image():
    boxes = random_boxes(77, seed=SEED + 2, dtype=torch.float64, offset=-300.0)
    boxes[:5, 2] = boxes[:5, 0]  # zero width
    units.expect_equal(assign(boxes), mapper(boxes), "levels of 77 float64 boxes")


@test_case(name="no boxes: an empty int64 result", hidden=True)
def empty():
    units.expect_equal(
        assign(torch.zeros(0, 4, device=units.DEVICE)), torch.zeros(0, dtype=torch.int64), "levels of no boxes"
    )


@test_case(
    name="level boundaries: exactly 2^k times the canonical size, and within 1e-6 of it (the epsilon)", hidden=True
)
def level_boundaries():
    shift = float(SEED % 97)  # the boxes' place is secret; Eq. 1 sees only their size
    for size in (224.0, 89.6):
        for dtype, nudges in ((torch.float32, (0.0,)), (torch.float64, (0.0, -5e-7, 5e-7, -3e-6, 3e-6))):
            sides = [size * 2.0**k * (1 + nudge) for k in (-2, -1, 0, 1, 2) for nudge in nudges]
            rows = [[shift, -shift, shift + s, -shift + s] for s in sides]
            boxes = torch.tensor(rows, dtype=dtype, device=units.DEVICE)
            units.expect_equal(
                assign(boxes, 2, 5, size), mapper(boxes, 2, 5, size), f"levels of boxes on the boundaries, {size:g} px"
            )
