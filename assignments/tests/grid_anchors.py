"""Unit 'grid_anchors': one level's anchors on every cell of its grid, fpnlab/anchors.py
`AnchorGenerator._level_anchors` (which `grid_anchors` calls once per level).

Expected values: anchors worked out by hand, and torchvision's AnchorGenerator on the same feature sizes.
"""

import torch
from otter.test_files import test_case
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from fpnlab import grading as units
from fpnlab.model import anchors

OK_FORMAT = False
name = "grid_anchors"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def torchvision_levels(sizes, ratios, image_size, feature_sizes, dtype=torch.float32):
    """torchvision's anchors for one image, split into its levels."""
    generator = TvAnchorGenerator(sizes, (ratios,) * len(sizes) if not isinstance(ratios[0], tuple) else ratios)
    images = ImageList(torch.zeros(1, 3, *image_size, dtype=dtype, device=units.DEVICE), [image_size])
    maps = [torch.zeros(1, 1, h, w, dtype=dtype, device=units.DEVICE) for h, w in feature_sizes]
    counts = [h * w * n for (h, w), n in zip(feature_sizes, generator.num_anchors_per_location())]
    return list(generator(images, maps)[0].split(counts))


def ours(sizes, ratios, image_size, feature_sizes, dtype=torch.float32):
    generator = units.build(anchors.AnchorGenerator, sizes, ratios)
    return units.run("grid_anchors", generator.method("grid_anchors"), image_size, feature_sizes, units.DEVICE, dtype)


@test_case(name="by hand: size 32, ratio 1:1, a 2 x 3 grid at stride 4: centres (0, 0) .. (8, 4), row by row")
def by_hand():
    got = ours(((32,),), (1.0,), (8, 12), [(2, 3)])
    expected = torch.tensor([[x - 16.0, y - 16.0, x + 16.0, y + 16.0] for y in (0, 4) for x in (0, 4, 8)])
    units.expect_close(got[0], expected, "anchors of a 2 x 3 grid")


@test_case(name="four FPN levels of a 64 x 96 input, three ratios each, against torchvision")
def levels_against_torchvision():
    sizes, features = ((32,), (64,), (128,), (256,)), [(16, 24), (8, 12), (4, 6), (2, 3)]
    got = ours(sizes, (0.5, 1.0, 2.0), (64, 96), features)
    for level, expected in enumerate(torchvision_levels(sizes, (0.5, 1.0, 2.0), (64, 96), features)):
        units.expect_close(got[level], expected, f"anchors of level {level}")


@test_case(name="odd, non-square image and grids (strides 4 x 3 and 7 x 7), float64", hidden=True)
def odd_float64():
    sizes, features = ((16,), (40,)), [(25, 38), (13, 19)]
    got = ours(sizes, (0.5, 1.0, 2.0), (100, 150), features, torch.float64)
    for level, expected in enumerate(torchvision_levels(sizes, (0.5, 1.0, 2.0), (100, 150), features, torch.float64)):
        units.expect_close(got[level], expected, f"float64 anchors of level {level}")


@test_case(name="a single level carrying all five sizes (the C4 baseline): 15 anchors per cell", hidden=True)
def single_level_fifteen():
    sizes, features = ((32, 64, 128, 256, 512),), [(5, 7)]
    got = ours(sizes, (0.5, 1.0, 2.0), (80, 112), features)
    units.expect_close(got[0], torchvision_levels(sizes, (0.5, 1.0, 2.0), (80, 112), features)[0], "15 anchors a cell")
