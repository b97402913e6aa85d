"""Unit 'cell_anchors': the A anchors of one grid cell, centred on (0, 0), fpnlab/anchors.py
`AnchorGenerator.cell_anchors`.

Expected values: corners worked out by hand, and torchvision's AnchorGenerator.generate_anchors.
"""

import torch
from otter.test_files import test_case
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator

from fpnlab import grading as units
from fpnlab.model import anchors

OK_FORMAT = False
name = "cell_anchors"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


@test_case(name="by hand: size 32 at ratios 1:2, 1:1, 2:1 (height / width), corners rounded")
def by_hand():
    generator = units.build(anchors.AnchorGenerator, ((32,),), (0.5, 1.0, 2.0))
    got = units.run("cell_anchors", generator.method("cell_anchors"), 0)
    # ratio 0.5: w = 32 / sqrt(0.5) = 45.25, h = 32 * sqrt(0.5) = 22.63; half of each, rounded: 23 and 11
    units.expect_close(
        got,
        torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]),
        "anchors of size 32",
    )


@test_case(name="three sizes on one level: ratio-major order, against torchvision")
def sizes_against_torchvision():
    generator = units.build(anchors.AnchorGenerator, ((32, 64, 128),), (0.5, 1.0, 2.0))
    got = units.run("cell_anchors", generator.method("cell_anchors"), 0)
    expected = TvAnchorGenerator().generate_anchors((32, 64, 128), (0.5, 1.0, 2.0))
    units.expect_close(got, expected, "9 anchors of sizes 32, 64, 128")


@test_case(name="the third level of five, odd sizes and ratios 1:4 .. 4:1", hidden=True)
def third_level():
    sizes = ((16,), (33,), (100, 150), (256,), (512,))
    generator = units.build(anchors.AnchorGenerator, sizes, (0.25, 1.0, 4.0))
    got = units.run("cell_anchors", generator.method("cell_anchors"), 2)
    units.expect_close(got, TvAnchorGenerator().generate_anchors((100, 150), (0.25, 1.0, 4.0)), "level 2's anchors")


@test_case(name="ratios that differ per level", hidden=True)
def ratios_per_level():
    generator = units.build(anchors.AnchorGenerator, ((24,), (48,)), ((1.0,), (0.5, 1.0, 2.0, 3.0)))
    first = units.run("cell_anchors", generator.method("cell_anchors"), 0)
    second = units.run("cell_anchors", generator.method("cell_anchors"), 1)
    units.expect_close(first, torch.tensor([[-12.0, -12.0, 12.0, 12.0]]), "level 0's anchor")
    units.expect_close(second, TvAnchorGenerator().generate_anchors((48,), (0.5, 1.0, 2.0, 3.0)), "level 1's anchors")
