"""Unit 'iou': intersection over union of every pair of boxes, fpnlab/boxes.py `_iou`.

Expected values: overlaps worked out by hand, and torchvision.ops.box_iou.
"""

from functools import partial

import torch
import torchvision
from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.grading import case_inputs
from fpnlab.model import boxes

OK_FORMAT = False
name = "iou"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


# valid boxes, some past the image's top-left corner (negative coordinates)
random_boxes = partial(case_inputs.random_boxes, low=-40.0, span=200.0, min_size=0.5, max_size=90.5)


def box_list(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype, device=units.DEVICE)


@test_case(name="by hand: a 2 x 2 square against one sharing a 1 x 1 corner (1/7), itself (1) and a far box (0)")
def by_hand():
    a = box_list([[0.0, 0.0, 2.0, 2.0]])
    b = box_list([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    got = units.run("iou", boxes._iou, a, b)
    units.expect_close(got, torch.tensor([[1 / 7, 1.0, 0.0]]), "IoU of [0, 0, 2, 2] with three boxes")


@test_case(name="5 x 7 random pairs against torchvision.ops.box_iou: shape (N, M)")
def random_against_torchvision():
    a, b = random_boxes(5, seed=0), random_boxes(7, seed=1)
    got = units.run("iou", boxes._iou, a, b)
    units.expect_close(got, torchvision.ops.box_iou(a, b), "IoU of 5 x 7 random boxes")


@test_case(name="13 x 21 float64 boxes against torchvision", hidden=True)
def float64_odd_sizes():
    a, b = random_boxes(13, seed=SEED + 5, dtype=torch.float64), random_boxes(21, seed=SEED + 6, dtype=torch.float64)
    got = units.run("iou", boxes._iou, a, b)
    units.expect_close(got, torchvision.ops.box_iou(a, b), "IoU of 13 x 21 float64 boxes")


@test_case(name="by hand: boxes touching along an edge (0), nested (1/16), off the image", hidden=True)
def touching_nested_off_image():
    a = box_list([[0.0, 0.0, 4.0, 4.0], [-10.0, -10.0, -6.0, -6.0]])
    b = box_list([[4.0, 0.0, 6.0, 4.0], [1.0, 1.0, 2.0, 2.0], [-8.0, -8.0, -6.0, -6.0]])
    got = units.run("iou", boxes._iou, a, b)
    units.expect_close(
        got, torch.tensor([[0.0, 1 / 16, 0.0], [0.0, 0.0, 0.25]]), "IoU of touching, nested and off-image boxes"
    )


@test_case(name="no boxes on either side: (0, M) and (N, 0)", hidden=True)
def empty():
    some = random_boxes(3, seed=SEED + 2)
    got_rows, got_columns = units.run("iou", boxes._iou, some[:0], some), units.run("iou", boxes._iou, some, some[:0])
    units.expect_close(got_rows, torch.zeros(0, 3), "IoU of 0 x 3 boxes")
    units.expect_close(got_columns, torch.zeros(3, 0), "IoU of 3 x 0 boxes")
