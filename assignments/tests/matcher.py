"""Unit 'matcher': each anchor or proposal's best gt box and its label (1 positive, 0 background, -1 ignored),
fpnlab/model/matching.py `Matcher.__call__`, with the RPN's low-quality matches.

Expected values: matches worked out by hand, and torchvision's Matcher, its packed answer (gt index, -1, -2)
split in two (except where fpnlab's docstring says it differs on purpose: a gt box overlapping nothing
rescues nothing).
"""

import torch
import torchvision
from otter.test_files import test_case
from torchvision.models.detection._utils import Matcher as TvMatcher

from fpnlab import grading as units
from fpnlab.model import matching

OK_FORMAT = False
name = "matcher"
points = 3
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def iou_of_random_boxes(gt, predictions, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(gt + predictions, 2, generator=gen, dtype=torch.float64) * 60
    wh = torch.rand(gt + predictions, 2, generator=gen, dtype=torch.float64) * 40 + 5
    boxes = torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=units.DEVICE)
    return torchvision.ops.box_iou(boxes[:gt], boxes[gt:])


def match(iou, high, low, low_quality):
    return units.run("matcher", units.build(matching.Matcher, high, low, low_quality), iou)


def expect_match(got, matches, labels, what):
    """`got` is (matches, labels): two tensors (a Match, or any pair) equal to the expected ones."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"{what}: expected two tensors (matches, labels), got {type(got).__name__}.")
    units.expect_equal(got[0], torch.as_tensor(matches, dtype=torch.int64), f"{what}: matches")
    units.expect_equal(got[1], torch.as_tensor(labels, dtype=torch.int64), f"{what}: labels")


def torchvision_match(iou, high, low, low_quality):
    """torchvision's Matcher, its packed answer split into the best gt index and the label 1 / 0 / -1."""
    packed = TvMatcher(high, low, low_quality)(iou).cpu()
    return iou.argmax(dim=0).cpu(), torch.where(packed >= 0, 1, torch.where(packed == -1, 0, -1))


IOU = [[0.9, 0.5, 0.1, 0.0], [0.2, 0.6, 0.35, 0.0]]  # 2 gt boxes x 4 anchors


@test_case(name="by hand: thresholds 0.7 / 0.3 give positive, ignored, ignored, background")
def by_hand():
    got = match(torch.tensor(IOU, device=units.DEVICE), 0.7, 0.3, False)
    expect_match(got, [0, 1, 1, 0], [1, -1, -1, 0], "4 anchors")


@test_case(name="by hand: low-quality matches give gt 1 its best anchor (IoU 0.6), which was ignored")
def low_quality_by_hand():
    got = match(torch.tensor(IOU, device=units.DEVICE), 0.7, 0.3, True)
    expect_match(got, [0, 1, 1, 0], [1, 1, -1, 0], "4 anchors, low-quality matches allowed")


@test_case(name="6 gt boxes x 40 anchors, RPN settings (0.7, 0.3, low-quality), against torchvision")
def random_against_torchvision():
    iou = iou_of_random_boxes(6, 40, seed=0)
    expect_match(match(iou, 0.7, 0.3, True), *torchvision_match(iou, 0.7, 0.3, True), "40 anchors")


@test_case(name="Fast R-CNN settings (0.5, 0.5, no low-quality) on float64 IoU, 7 x 53", hidden=True)
def fast_rcnn_float64():
    iou = iou_of_random_boxes(7, 53, seed=SEED + 7, dtype=torch.float64)
    expect_match(match(iou, 0.5, 0.5, False), *torchvision_match(iou, 0.5, 0.5, False), "53 proposals")


@test_case(name="by hand: a gt box's best IoU reached by two anchors rescues both (ties)", hidden=True)
def ties_by_hand():
    iou = torch.tensor([[0.5, 0.5, 0.1], [0.0, 0.2, 0.4]], device=units.DEVICE)
    expect_match(match(iou, 0.7, 0.3, True), [0, 0, 1], [1, 1, 1], "tied best anchors")


@test_case(name="by hand: no gt boxes, every anchor is background; no anchors, an empty result", hidden=True)
def empty_by_hand():
    got = match(torch.zeros(0, 5, device=units.DEVICE), 0.7, 0.3, True)
    expect_match(got, [0] * 5, [0] * 5, "5 anchors in an image without objects")
    expect_match(match(torch.zeros(3, 0, device=units.DEVICE), 0.7, 0.3, True), [], [], "no anchors")


@test_case(name="by hand: a gt box that overlaps no anchor at all rescues none", hidden=True)
def unreachable_gt_by_hand():
    iou = torch.tensor([[0.8, 0.1], [0.0, 0.0]], device=units.DEVICE)
    expect_match(match(iou, 0.7, 0.3, True), [0, 0], [1, 0], "gt 1 overlapping nothing")


@test_case(name="IoU exactly at the thresholds: 0.7 is positive, 0.3 ignored, just below each is not", hidden=True)
def exact_thresholds():
    rows = [[0.7, 0.3, 0.3 - 1e-6, 0.7 - 1e-6, 0.0], [0.1, 0.2, 0.29, 0.6, 0.7]]
    for dtype in (torch.float32, torch.float64):
        iou = torch.tensor(rows, dtype=dtype, device=units.DEVICE)
        for low_quality in (False, True):
            expected = torchvision_match(iou, 0.7, 0.3, low_quality)
            expect_match(match(iou, 0.7, 0.3, low_quality), *expected, f"IoU at the thresholds, {str(dtype)[6:]}")
