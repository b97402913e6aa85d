"""Unit 'pooler': pool every ROI from its pyramid level, fpnlab/poolers.py `MultiScaleRoIPooler.forward`.

Expected values: torchvision's MultiScaleRoIAlign (FPN levels, Eq. 1 with the same canonical size and
level), torchvision.ops.roi_align for a single level, and shapes worked out by hand. Eq. 1 (unit
'assign_levels') is torchvision's while this unit is checked.
"""

import torch
from otter.test_files import test_case
from torchvision.ops import MultiScaleRoIAlign, roi_align

from fpnlab import grading as units
from fpnlab.model import poolers

OK_FORMAT = False
name = "pooler"
points = 4
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret
LEVELS = ("p2", "p3", "p4", "p5")


def pyramid(image_size, seed, dtype=torch.float32, channels=3, batch=2):
    """Random P2..P5 of a padded batch of `image_size`."""
    gen = torch.Generator().manual_seed(seed)
    height, width = image_size
    return {
        name: torch.randn(batch, channels, height // 2**k, width // 2**k, generator=gen, dtype=dtype).to(units.DEVICE)
        for k, name in zip(range(2, 6), LEVELS)
    }


def proposals(counts, image_size, seed, dtype=torch.float32):
    """Random proposals per image, of every size from 4 px to the whole image."""
    gen = torch.Generator().manual_seed(seed)
    height, width = image_size
    out = []
    for n in counts:
        wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor([width, height]) + 4
        xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (torch.tensor([width, height]) - wh).clamp(min=0)
        out.append(torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=units.DEVICE))
    return out


def pool(pooler, features, boxes, image_size):
    return units.run("pooler", pooler, features, boxes, image_size)


@test_case(name="two images' proposals on P2..P5 of a 128 x 192 batch against torchvision's MultiScaleRoIAlign")
def against_torchvision():
    features, boxes = pyramid((128, 192), seed=0), proposals([6, 9], (128, 192), seed=1)
    got = pool(units.build(poolers.MultiScaleRoIPooler, LEVELS), features, boxes, (128, 192))
    expected = MultiScaleRoIAlign(list(LEVELS), 7, 2)(features, boxes, [(128, 192)] * 2)
    units.expect_close(got, expected, "pooled (15, 3, 7, 7) features")


@test_case(name="a single level (the C4 baseline): every ROI from C4, stride 16")
def single_level():
    features = {"c4": pyramid((128, 192), seed=2)["p4"]}
    boxes = proposals([4, 3], (128, 192), seed=3)
    got = pool(units.build(poolers.MultiScaleRoIPooler, ("c4",)), features, boxes, (128, 192))
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i), device=units.DEVICE), b], 1) for i, b in enumerate(boxes)]
    )
    units.expect_close(got, roi_align(features["c4"], rois, 7, 1 / 16, 2), "pooled features of C4")


@test_case(name="the lab's CPU scale (canonical size 89.6), a 5 x 5 output, float64", hidden=True)
def cpu_scale_float64():
    features = pyramid((96, 160), seed=SEED + 4, dtype=torch.float64)
    boxes = proposals([11, 2], (96, 160), seed=SEED + 5, dtype=torch.float64)
    got = pool(
        units.build(poolers.MultiScaleRoIPooler, LEVELS, output_size=5, canonical_size=89.6), features, boxes, (96, 160)
    )
    expected = MultiScaleRoIAlign(list(LEVELS), 5, 2, canonical_scale=89.6)(features, boxes, [(96, 160)] * 2)
    units.expect_close(got, expected, "float64 pooled features")


@test_case(name="an image without proposals between two with some", hidden=True)
def an_empty_image():
    features = pyramid((64, 64), seed=SEED + 6, batch=3)
    boxes = proposals([5, 0, 4], (64, 64), seed=SEED + 7)
    got = pool(units.build(poolers.MultiScaleRoIPooler, LEVELS), features, boxes, (64, 64))
    expected = MultiScaleRoIAlign(list(LEVELS), 7, 2)(features, boxes, [(64, 64)] * 3)
    units.expect_close(got, expected, "pooled features, the middle image without proposals")


@test_case(name="by hand: no proposals at all give a (0, C, 7, 7) result", hidden=True)
def no_proposals():
    features = pyramid((64, 64), seed=SEED + 8, channels=5)
    empty = [torch.zeros(0, 4, device=units.DEVICE)] * 2
    got = pool(units.build(poolers.MultiScaleRoIPooler, LEVELS), features, empty, (64, 64))
    units.expect_close(got, torch.zeros(0, 5, 7, 7), "pooled features of no proposals")
