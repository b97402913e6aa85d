"""Unit 'area': the area of each box, fpnlab/boxes.py `box_area`.

Expected values: areas worked out by hand, and torchvision.ops.box_area.
"""

from functools import partial

import torch
import torchvision
from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.grading import case_inputs
from fpnlab.model import boxes

OK_FORMAT = False
name = "area"
points = 1
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


# valid boxes, some past the image's top-left corner (negative coordinates)
random_boxes = partial(case_inputs.random_boxes, low=-50.0, span=300.0, min_size=0.0, max_size=120.0)


@test_case(name="three boxes worked out by hand: 10 x 20, a zero-width one, one around the origin")
def by_hand():
    given = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 5.0, 9.0], [-3.0, -4.0, 3.0, 4.0]], device=units.DEVICE)
    got = units.run("area", boxes.box_area, given)
    units.expect_close(got, torch.tensor([200.0, 0.0, 48.0]), "areas of [0, 0, 10, 20], [5, 5, 5, 9], [-3, -4, 3, 4]")


@test_case(name="50 random boxes against torchvision.ops.box_area")
def random_against_torchvision():
    given = random_boxes(50, seed=0)
    got = units.run("area", boxes.box_area, given)
    units.expect_close(got, torchvision.ops.box_area(given), "areas of 50 random boxes")


@test_case(name="float64 boxes keep float64", hidden=True)
def float64():
    given = random_boxes(33, seed=SEED + 11, dtype=torch.float64)
    got = units.run("area", boxes.box_area, given)
    units.expect_close(got, torchvision.ops.box_area(given), "areas of 33 float64 boxes")


@test_case(name="float16 boxes give float32 areas (a 1000 x 1000 box overflows float16)", hidden=True)
def float16_upcast():
    given = torch.tensor([[0.0, 0.0, 1000.0, 1000.0], [2.0, 2.0, 4.5, 3.0]], dtype=torch.float16, device=units.DEVICE)
    got = units.run("area", boxes.box_area, given)
    units.expect_close(got, torchvision.ops.box_area(given), "areas of float16 boxes")


@test_case(name="no boxes: an empty result", hidden=True)
def empty():
    got = units.run("area", boxes.box_area, torch.zeros(0, 4, device=units.DEVICE))
    units.expect_close(got, torch.zeros(0), "areas of no boxes")
