"""Unit 'area': the area of each box, fpnlab/boxes.py `box_area`.

Expected values: areas worked out by hand, and torchvision.ops.box_area.
"""
import torch
import torchvision
from otter.test_files import test_case

from fpnlab import boxes, units

OK_FORMAT = False
name = "area"
points = 1


def random_boxes(n, seed, dtype=torch.float32):
    """n valid boxes, some reaching past the image's top-left corner (negative coordinates)."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 300 - 50
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 120
    return torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=units.DEVICE)


@test_case(name="three boxes worked out by hand: 10 x 20, a zero-width one, one around the origin")
def by_hand():
    given = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 5.0, 9.0], [-3.0, -4.0, 3.0, 4.0]], device=units.DEVICE)
    with units.checking("area"):
        got = boxes.box_area(given)
    units.expect_close(got, torch.tensor([200.0, 0.0, 48.0]), "areas of [0, 0, 10, 20], [5, 5, 5, 9], [-3, -4, 3, 4]")


@test_case(name="50 random boxes against torchvision.ops.box_area")
def random_against_torchvision():
    given = random_boxes(50, seed=0)
    with units.checking("area"):
        got = boxes.box_area(given)
    units.expect_close(got, torchvision.ops.box_area(given), "areas of 50 random boxes")


@test_case(name="float64 boxes keep float64", hidden=True)
def float64():
    given = random_boxes(33, seed=11, dtype=torch.float64)
    with units.checking("area"):
        got = boxes.box_area(given)
    units.expect_close(got, torchvision.ops.box_area(given), "areas of 33 float64 boxes")


@test_case(name="float16 boxes give float32 areas (a 1000 x 1000 box overflows float16)", hidden=True)
def float16_upcast():
    given = torch.tensor([[0.0, 0.0, 1000.0, 1000.0], [2.0, 2.0, 4.5, 3.0]], dtype=torch.float16, device=units.DEVICE)
    with units.checking("area"):
        got = boxes.box_area(given)
    units.expect_close(got, torchvision.ops.box_area(given), "areas of float16 boxes")


@test_case(name="no boxes: an empty result", hidden=True)
def empty():
    with units.checking("area"):
        got = boxes.box_area(torch.zeros(0, 4, device=units.DEVICE))
    units.expect_close(got, torch.zeros(0), "areas of no boxes")
