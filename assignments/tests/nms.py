"""Unit 'nms': greedy non-maximum suppression in plain PyTorch, fpnlab/boxes.py `_nms_reference`.

Expected values: kept indices worked out by hand, and torchvision.ops.nms.
"""

from functools import partial

import torch
import torchvision
from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.grading import case_inputs
from fpnlab.model import boxes

OK_FORMAT = False
name = "nms"
points = 3
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


# boxes crowded into a 120 x 120 area, so that many overlap
random_boxes = partial(case_inputs.random_boxes, low=-10.0, span=100.0, min_size=2.0, max_size=42.0)


def random_scores(n, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=units.DEVICE)


@test_case(name="by hand: a box overlapping a better one by IoU 0.68 > 0.5 goes, a far box stays")
def by_hand():
    given = torch.tensor(
        [[1.0, 1.0, 11.0, 11.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], device=units.DEVICE
    )
    scores = torch.tensor([0.8, 0.9, 0.7], device=units.DEVICE)
    got = units.run("nms", boxes._nms_reference, given, scores, 0.5)
    units.expect_equal(got, torch.tensor([1, 2]), "indices kept, best first")


@test_case(name="60 crowded random boxes at IoU 0.5 against torchvision.ops.nms")
def random_against_torchvision():
    given, scores = random_boxes(60, seed=0), random_scores(60, seed=1)
    got = units.run("nms", boxes._nms_reference, given, scores, 0.5)
    units.expect_equal(got, torchvision.ops.nms(given, scores, 0.5), "indices kept of 60 boxes")


@test_case(name="101 float64 boxes at IoU 0.3, and at 1.0 (nothing suppressed)", hidden=True)
def float64_thresholds():
    given, scores = (
        random_boxes(101, seed=SEED + 9, dtype=torch.float64),
        random_scores(101, seed=SEED + 10, dtype=torch.float64),
    )
    strict_keep = units.run("nms", boxes._nms_reference, given, scores, 0.3)
    loose_keep = units.run("nms", boxes._nms_reference, given, scores, 1.0)
    units.expect_equal(strict_keep, torchvision.ops.nms(given, scores, 0.3), "indices kept at IoU 0.3")
    units.expect_equal(loose_keep, torch.sort(scores, descending=True).indices, "indices kept at IoU 1.0: all")


@test_case(name="by hand: equal scores keep their input order", hidden=True)
def ties():
    given = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]],
        device=units.DEVICE,
    )
    scores = torch.full((4,), 0.5, device=units.DEVICE)
    got = units.run("nms", boxes._nms_reference, given, scores, 0.5)
    units.expect_equal(got, torch.tensor([0, 1]), "indices kept of four boxes with equal scores")


@test_case(name="an IoU of exactly 0.3 (60 / 200) is not above a threshold of 0.3, even in float32", hidden=True)
def exact_threshold():
    given = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 6.0]], device=units.DEVICE)
    scores = torch.tensor([0.9, 0.8], device=units.DEVICE)
    got = units.run("nms", boxes._nms_reference, given, scores, 0.3)
    units.expect_equal(got, torchvision.ops.nms(given, scores, 0.3), "indices kept at an IoU equal to the threshold")


@test_case(name="no boxes: an empty int64 result", hidden=True)
def empty():
    got = units.run(
        "nms", boxes._nms_reference, torch.zeros(0, 4, device=units.DEVICE), torch.zeros(0, device=units.DEVICE), 0.5
    )
    units.expect_equal(got, torch.zeros(0, dtype=torch.int64), "indices kept of no boxes")
