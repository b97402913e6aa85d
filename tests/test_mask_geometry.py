"""fpnlab/model/masks.py worked by hand and against torchvision's own mask functions: targets, the loss, the paste,
the round trip and mask IoU (fast: the module's mutation tests, tools/mutate.py)."""

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes

from fpnlab.model.masks import crop_and_paste, expand_boxes, mask_iou, mask_loss, paste_masks, project_masks


def test_mask_geometry_by_hand():
    masks = torch.zeros(1, 8, 8)
    masks[0, 2:6, 2:6] = 1  # pixels 2..5
    # aligned=False samples at 2.5, 3.5, 4.5, 5.5 in pixel-index coordinates: the last sample lies halfway between
    # pixel 5 (object) and pixel 6 (background), so the last row and column are 0.5 and the corner 0.25
    expected = torch.ones(1, 4, 4)
    expected[0, 3], expected[0, :, 3], expected[0, 3, 3] = 0.5, 0.5, 0.25
    assert torch.equal(project_masks(masks, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), torch.tensor([0]), 4), expected)
    left = torch.zeros(1, 4, 8)
    left[0, :, :2] = 1
    crop = project_masks(left, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([0]), 4, aligned=True)
    assert crop[0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]  # aligned: sample centres 0.5..3.5 on pixel centres
    assert torch.equal(
        expand_boxes(torch.tensor([[0.0, 0.0, 10.0, 4.0]]), 1.5), torch.tensor([[-2.5, -1.0, 12.5, 5.0]])
    )
    logits = torch.tensor([[[[0.0]], [[2.0]]]])  # 1 ROI, 2 classes, 1 x 1 mask
    target = torch.tensor([[[1.0]]])
    assert float(mask_loss(logits, target, torch.tensor([1]))) == pytest.approx(np.log(1 + np.exp(-2.0)))
    assert float(mask_loss(logits, target, torch.tensor([0]))) == pytest.approx(np.log(2.0))
    empty = mask_loss(
        torch.zeros(0, 2, 4, 4, requires_grad=True), torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.int64)
    )
    assert float(empty) == 0.0 and empty.requires_grad
    # a mask of ones pasted at a 4 x 4 box: padding 1 grows the box by 6/4 -> 6 x 6 pixels, ramping at the edge
    pasted = paste_masks(torch.ones(1, 1, 4, 4), torch.tensor([[2.0, 2.0, 6.0, 6.0]]), (10, 10))[0, 0]
    assert (pasted >= 0.5).sum() == 25 and pasted[0].sum() == 0 and pasted[4, 4] == 1.0


def test_mask_iou_by_hand():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 pixels
    b = torch.zeros(1, 4, 4, dtype=torch.bool)
    b[0, :, :2] = True  # 8 pixels, 4 shared with a[0]
    assert mask_iou(a, b)[:, 0].tolist() == pytest.approx([4 / 12, 0.0])


def test_crop_and_paste_of_a_box_shaped_mask():
    """A 32 x 16 rectangle filling its box comes back with its 16 rows and 34 columns: the paste works in whole
    pixels (the grown box truncated to integers, x1..x2 inclusive), which here adds a column on each side."""
    mask = torch.zeros(1, 40, 40, dtype=torch.uint8)
    mask[0, 8:24, 4:36] = 1
    back = crop_and_paste(mask, torch.tensor([[4.0, 8.0, 36.0, 24.0]]), 28, aligned=True)
    assert int(back.sum()) == 16 * 34 and back[0, 8:24, 3:37].all()
    assert float(mask_iou(back, mask)[0, 0]) == pytest.approx(512 / 544)


def test_mask_geometry_equals_torchvision_on_hand_made_cases():
    gen = torch.Generator().manual_seed(0)
    gt = (torch.rand(3, 60, 80, generator=gen) > 0.5).float()
    boxes = torch.tensor([[0.0, 0.0, 80.0, 60.0], [10.5, 5.2, 30.7, 44.1], [-5.0, 50.0, 20.0, 70.0]])
    matched = torch.tensor([2, 0, 1])
    torch.testing.assert_close(project_masks(gt, boxes, matched, 28), project_masks_on_boxes(gt, boxes, matched, 28))
    probabilities = torch.rand(3, 1, 28, 28, generator=gen)
    for size in [(60, 80), (13, 17)]:  # boxes inside, across and beyond the image
        torch.testing.assert_close(
            paste_masks(probabilities, boxes, size), paste_masks_in_image(probabilities, boxes, size)
        )
    assert paste_masks(probabilities[:0], boxes[:0], (5, 6)).shape == (0, 1, 5, 6)


def test_paste_with_other_padding_and_degenerate_boxes_equals_torchvision():
    gen = torch.Generator().manual_seed(3)
    probabilities = torch.rand(4, 1, 14, 14, generator=gen)
    boxes = torch.tensor([[3.0, 4.0, 3.0, 4.0], [5.0, 1.0, 5.6, 9.0], [0.0, 0.0, 20.0, 12.0], [2.5, 2.5, 30.0, 3.0]])
    for padding in (1, 2, 3):
        expected = paste_masks_in_image(probabilities, boxes, (16, 24), padding=padding)
        torch.testing.assert_close(paste_masks(probabilities, boxes, (16, 24), padding), expected)


def test_crop_and_paste_follows_torchvision_by_default_and_keeps_probability_one_half():
    """By default the round trip is torchvision's pair: project_masks_on_boxes, paste_masks_in_image, >= 0.5. The
    4 x 4 square seen through its own box has 0.5 at its far edge, which the threshold keeps."""
    masks = torch.zeros(1, 12, 12, dtype=torch.uint8)
    masks[0, 2:6, 2:6] = 1
    box = torch.tensor([[2.0, 2.0, 6.0, 6.0]])
    crop = project_masks_on_boxes(masks.float(), box, torch.tensor([0]), 4)
    expected = paste_masks_in_image(crop[:, None], box, (12, 12))[:, 0] >= 0.5
    assert torch.equal(crop_and_paste(masks, box, 4), expected)
    assert not torch.equal(crop_and_paste(masks, box, 4), crop_and_paste(masks, box, 4, aligned=True))


def test_mask_iou_of_single_pixels_and_of_masks_of_other_sizes():
    a = torch.zeros(1, 3, 3, dtype=torch.bool)
    a[0, 1, 1] = True
    b = torch.zeros(2, 3, 3, dtype=torch.bool)
    b[0, 1, 1] = True  # the same single pixel: IoU 1
    b[1, :2] = True  # 6 pixels holding a's: IoU 1 / 6
    assert mask_iou(a, b)[0].tolist() == pytest.approx([1.0, 1 / 6])
    assert mask_iou(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)).tolist() == [[0.0]]  # both empty: 0, not NaN
