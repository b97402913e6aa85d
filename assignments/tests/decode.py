"""Unit 'decode': boxes from regression targets (the inverse of Eq. 2), fpnlab/boxes.py `BoxCoder.decode`.

Expected values: boxes worked out by hand, and torchvision's BoxCoder.decode_single.
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
name = "decode"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


# boxes with positive sides, some past the image's top-left corner
random_boxes = partial(case_inputs.random_boxes, low=-30.0, span=200.0, min_size=1.0, max_size=91.0)


def random_deltas(n, k, seed, dtype=torch.float32, scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4 * k, generator=gen, dtype=torch.float64) * scale).to(dtype=dtype, device=units.DEVICE)


@test_case(name="by hand: zero deltas give the box back; (0.5, 0, log 2, 0) moves and widens a 10 x 10 box")
def by_hand():
    given = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]], device=units.DEVICE)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, math.log(2), 0.0]], device=units.DEVICE)
    got = units.run("decode", units.build(boxes.BoxCoder, (1.0, 1.0, 1.0, 1.0)).method("decode"), deltas, given)
    units.expect_close(got, torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 20.0, 10.0]]), "two decoded boxes")


@test_case(name="20 random boxes and deltas, one box each (K = 1), against torchvision's BoxCoder")
def random_against_torchvision():
    given, deltas = random_boxes(20, seed=0), random_deltas(20, 1, seed=1)
    got = units.run("decode", units.build(boxes.BoxCoder, (1.0, 1.0, 1.0, 1.0)).method("decode"), deltas, given)
    units.expect_close(got, TvBoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas, given), "20 decoded boxes")


@test_case(name="one box per class (K = 3), weights (10, 10, 5, 5), float64", hidden=True)
def classes_float64():
    given, deltas = (
        random_boxes(11, seed=SEED + 2, dtype=torch.float64),
        random_deltas(11, 3, seed=SEED + 3, dtype=torch.float64),
    )
    got = units.run("decode", units.build(boxes.BoxCoder, (10.0, 10.0, 5.0, 5.0)).method("decode"), deltas, given)
    units.expect_close(got, TvBoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(deltas, given), "(11, 12) decoded boxes")


@test_case(name="huge dw and dh are clamped at log(1000 / 16) before exp()", hidden=True)
def clamped():
    given = random_boxes(5, seed=SEED + 4)
    deltas = torch.tensor([[0.1, -0.2, 10.0, 50.0], [0.0, 0.0, -3.0, 9.0]], device=units.DEVICE).repeat(3, 1)[:5]
    got = units.run("decode", units.build(boxes.BoxCoder, (1.0, 1.0, 1.0, 1.0)).method("decode"), deltas, given)
    units.expect_close(got, TvBoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas, given), "boxes from huge deltas")


@test_case(name="no boxes: (0, 4) and (0, 8) results", hidden=True)
def empty():
    coder = units.build(boxes.BoxCoder, (10.0, 10.0, 5.0, 5.0)).method("decode")
    none = torch.zeros(0, 4, device=units.DEVICE)
    got_one = units.run("decode", coder, none, none)
    got_two = units.run("decode", coder, torch.zeros(0, 8, device=units.DEVICE), none)
    units.expect_close(got_one, torch.zeros(0, 4), "no boxes, K = 1")
    units.expect_close(got_two, torch.zeros(0, 8), "no boxes, K = 2")
