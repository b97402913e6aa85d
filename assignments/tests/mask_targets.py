"""Unit 'mask_targets': each positive ROI's mask target, fpnlab/model/masks.py `project_masks`: the matched
object's whole-image mask RoIAligned over the ROI to size x size (spatial scale 1, adaptive sampling, not aligned).

Expected values: a crop worked out by hand, and torchvision's project_masks_on_boxes (Mask R-CNN's targets).
"""

import torch
from otter.test_files import test_case
from torchvision.models.detection.roi_heads import project_masks_on_boxes

from fpnlab import grading as units
from fpnlab.model import masks

OK_FORMAT = False
name = "mask_targets"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def targets(gt_masks, boxes, matched, size):
    return units.run("mask_targets", masks.project_masks, gt_masks, boxes, matched, size)


def problem(n_masks, n_rois, size, seed, dtype=torch.float32):
    """Random blob masks on an image of `size` (h, w) and ROIs around and across them, each matched to one."""
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    gt = (torch.rand(n_masks, height // 4 + 1, width // 4 + 1, generator=gen) > 0.5).to(dtype)
    gt = torch.nn.functional.interpolate(gt[:, None], size=size)[:, 0]  # blobs of 4 x 4 pixels
    xy = torch.rand(n_rois, 2, generator=gen, dtype=torch.float64) * torch.tensor([width, height]) - 5
    wh = torch.rand(n_rois, 2, generator=gen, dtype=torch.float64) * 40 + 1
    boxes = torch.cat([xy, xy + wh], 1).to(dtype)
    matched = torch.randint(n_masks, (n_rois,), generator=gen)
    return gt.to(units.DEVICE), boxes.to(units.DEVICE), matched.to(units.DEVICE)


@test_case(name="by hand: a 4 x 4 square seen through its own box at 4 x 4: ones, the far edge 0.5, its corner 0.25")
def by_hand():
    gt = torch.zeros(1, 8, 8, device=units.DEVICE)
    gt[0, 2:6, 2:6] = 1
    expected = torch.ones(1, 4, 4)
    expected[0, 3], expected[0, :, 3], expected[0, 3, 3] = 0.5, 0.5, 0.25  # samples at 2.5 .. 5.5: 5.5 is half out
    got = targets(
        gt, torch.tensor([[2.0, 2.0, 6.0, 6.0]], device=units.DEVICE), torch.tensor([0], device=units.DEVICE), 4
    )
    units.expect_close(got, expected, "the square's 4 x 4 target")


@test_case(name="30 ROIs on 3 masks of a 50 x 70 image at 28 x 28, against torchvision's project_masks_on_boxes")
def against_torchvision():
    gt, boxes, matched = problem(3, 30, (50, 70), seed=0)
    units.expect_close(targets(gt, boxes, matched, 28), project_masks_on_boxes(gt, boxes, matched, 28), "30 targets")


@test_case(name="float64, odd sizes: 17 ROIs at 14 x 14 on a 33 x 61 image", hidden=True)
def float64_odd_sizes():
    gt, boxes, matched = problem(4, 17, (33, 61), seed=SEED + 1, dtype=torch.float64)
    units.expect_close(targets(gt, boxes, matched, 14), project_masks_on_boxes(gt, boxes, matched, 14), "17 targets")


@test_case(name="no positive ROI: a (0, 28, 28) tensor", hidden=True)
def no_rois():
    gt, boxes, matched = problem(2, 5, (40, 40), seed=SEED + 2)
    got = targets(gt, boxes[:0], matched[:0], 28)
    units.expect_close(got, torch.zeros(0, 28, 28), "targets of no ROI")
