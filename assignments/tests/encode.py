"""Unit 'encode': the regression targets that move each proposal onto its gt box (Faster R-CNN Eq. 2),
fpnlab/boxes.py `BoxCoder.encode`.

Expected values: targets worked out by hand, and torchvision's BoxCoder.encode_single.
"""

import math
from functools import partial

import torch
from otter.test_files import test_case
from torchvision.models.detection._utils import BoxCoder as TvBoxCoder

from fpnlab import grading as units
from fpnlab.grading import case_inputs
from fpnlab.model import boxes

OK_FORMAT = False
name = "encode"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


# boxes with positive sides, some past the image's top-left corner
random_boxes = partial(case_inputs.random_boxes, low=-30.0, span=200.0, min_size=1.0, max_size=91.0)


@test_case(name="by hand: a 10 x 10 anchor, a gt shifted by half its size (0.5, 0.5, 0, 0) and one twice as wide")
def by_hand():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]], device=units.DEVICE)
    gt = torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 20.0, 10.0]], device=units.DEVICE)
    got = units.run("encode", units.build(boxes.BoxCoder, (1.0, 1.0, 1.0, 1.0)).method("encode"), gt, anchors)
    units.expect_close(
        got,
        torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.0, math.log(2), 0.0]]),
        "targets of two gt boxes against a 10 x 10 anchor",
    )


@test_case(name="20 random pairs, weights (1, 1, 1, 1), against torchvision's BoxCoder")
def random_against_torchvision():
    gt, proposals = random_boxes(20, seed=0), random_boxes(20, seed=1)
    got = units.run("encode", units.build(boxes.BoxCoder, (1.0, 1.0, 1.0, 1.0)).method("encode"), gt, proposals)
    units.expect_close(got, TvBoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(gt, proposals), "targets of 20 pairs")


@test_case(name="the Fast R-CNN head's weights (10, 10, 5, 5), float64, 17 pairs", hidden=True)
def weights_float64():
    gt, proposals = (
        random_boxes(17, seed=SEED + 3, dtype=torch.float64),
        random_boxes(17, seed=SEED + 4, dtype=torch.float64),
    )
    got = units.run("encode", units.build(boxes.BoxCoder, (10.0, 10.0, 5.0, 5.0)).method("encode"), gt, proposals)
    units.expect_close(got, TvBoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(gt, proposals), "float64 targets")


@test_case(name="uneven weights (2, 3, 0.5, 4) on boxes far off the image", hidden=True)
def uneven_weights_off_image():
    gt, proposals = random_boxes(9, seed=SEED + 7) - 500, random_boxes(9, seed=SEED + 8) - 480
    got = units.run("encode", units.build(boxes.BoxCoder, (2.0, 3.0, 0.5, 4.0)).method("encode"), gt, proposals)
    units.expect_close(
        got, TvBoxCoder((2.0, 3.0, 0.5, 4.0)).encode_single(gt, proposals), "targets, weights 2, 3, 0.5, 4"
    )


@test_case(name="no boxes: (0, 4) targets", hidden=True)
def empty():
    coder = units.build(boxes.BoxCoder, (10.0, 10.0, 5.0, 5.0))
    none = torch.zeros(0, 4, device=units.DEVICE)
    got = units.run("encode", coder.method("encode"), none, none)
    units.expect_close(got, torch.zeros(0, 4), "targets of no boxes")
