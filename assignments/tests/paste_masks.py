"""Unit 'paste_masks': predicted masks back into the image, fpnlab/model/masks.py `paste_masks`: pad each M x M
mask by `padding` zeros, grow its box by (M + 2 padding) / M, truncate to whole pixels, resize bilinearly to the
box's pixels (both ends included), and copy the part inside the image.

Expected values: a paste worked out by hand, and torchvision's paste_masks_in_image.
"""

import torch
from otter.test_files import test_case
from torchvision.models.detection.roi_heads import paste_masks_in_image

from fpnlab import grading as units
from fpnlab.model import masks

OK_FORMAT = False
name = "paste_masks"
points = 3
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def paste(probabilities, boxes, image_size, padding=1):
    return units.run("paste_masks", masks.paste_masks, probabilities, boxes, image_size, padding)


def problem(n, size, image_size, seed, dtype=torch.float32):
    """Random probabilities and boxes inside the image and across its edges (a box wholly above or left of the
    image is left out: torchvision's paste fails on it, its slice ends turning negative)."""
    gen = torch.Generator().manual_seed(seed)
    height, width = image_size
    probabilities = torch.rand(n, 1, size, size, generator=gen, dtype=dtype)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor([width + 10, height + 10]) - 10
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 50 + 12  # every box reaches into the image
    boxes = torch.cat([xy, xy + wh], 1).to(dtype)
    return probabilities.to(units.DEVICE), boxes.to(units.DEVICE)


@test_case(name="by hand: ones at a 4 x 4 box grow to 6 x 6 pixels; 25 of them >= 0.5; nothing outside")
def by_hand():
    got = paste(
        torch.ones(1, 1, 4, 4, device=units.DEVICE), torch.tensor([[2.0, 2.0, 6.0, 6.0]], device=units.DEVICE), (10, 10)
    )
    got = units.expect_tensor(got, torch.zeros(1, 1, 10, 10), "the pasted mask")
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[2:7, 2:7] = True  # the box 2..6 grown by 6/4 to 1..7, the ramp of the padding at the edge
    units.expect_equal(got[0, 0] >= 0.5, expected, "the pixels at probability >= 0.5")
    units.expect_equal(got[0, 0, 0], torch.zeros(10), "the first row, outside the grown box")


@test_case(name="12 masks of 28 x 28 on a 60 x 80 image, against torchvision's paste_masks_in_image")
def against_torchvision():
    probabilities, boxes = problem(12, 28, (60, 80), seed=0)
    units.expect_close(
        paste(probabilities, boxes, (60, 80)), paste_masks_in_image(probabilities, boxes, (60, 80)), "12 pasted masks"
    )


@test_case(name="float64, padding 2, 14 x 14 masks on a 37 x 23 image", hidden=True)
def float64_padding():
    probabilities, boxes = problem(9, 14, (37, 23), seed=SEED + 1, dtype=torch.float64)
    expected = paste_masks_in_image(probabilities, boxes, (37, 23), padding=2)
    units.expect_close(paste(probabilities, boxes, (37, 23), padding=2), expected, "9 pasted masks")


@test_case(name="no masks: a (0, 1, H, W) tensor", hidden=True)
def no_masks():
    probabilities, boxes = problem(3, 28, (20, 30), seed=SEED + 2)
    units.expect_close(paste(probabilities[:0], boxes[:0], (20, 30)), torch.zeros(0, 1, 20, 30), "no pasted mask")
