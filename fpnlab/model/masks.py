"""Mask geometry (stage 9): ground-truth masks into ROIs, the mask loss, predicted masks back into the image.

Mask R-CNN (He et al. 2017, Sec. 3) predicts one M x M mask (M = 28) per ROI and class. Three pieces
move masks between the image and the ROI's grid:

    targets   RoIAlign the matched object's whole-image mask over the ROI at M x M (sampling ratio
              adaptive, not aligned, as torchvision): soft targets in [0, 1] along the object's edge;
    loss      L_mask = mean binary cross-entropy over the M x M logits of the ground-truth class's
              channel only (no competition between classes), averaged over the positive ROIs;
    paste     a mask goes back into the image at its box: padded by one pixel of zeros on each side
              and its box grown by (M + 2) / M to match, resized bilinearly to the box's whole pixels,
              then cut to the image (torchvision's paste_masks_in_image).

    >>> masks = torch.zeros(1, 8, 8); masks[0, 2:6, 2:6] = 1      # one 4 x 4 square object, pixels 2..5
    >>> project_masks(masks, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), torch.tensor([0]), 4)
    tensor([[[1.0000, 1.0000, 1.0000, 0.5000],                    # samples at 2.5 .. 5.5: the last one is
             [1.0000, 1.0000, 1.0000, 0.5000],                    # halfway to pixel 6, background
             [1.0000, 1.0000, 1.0000, 0.5000],
             [0.5000, 0.5000, 0.5000, 0.2500]]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fpnlab.model.poolers import roi_align

MASK_THRESHOLD = 0.5  # a pixel belongs to the object where its mask probability is at least this
PASTE_PADDING = 1  # pixels of zeros around each mask before pasting: its edge fades out, not cut off


def project_masks(gt_masks: Tensor, boxes: Tensor, matched: Tensor, size: int, aligned: bool = False) -> Tensor:
    """Each ROI's training target: gt_masks (G, H, W) of one image, boxes (P, 4) in its pixels, matched
    (P,) the gt index of each ROI -> (P, size, size) in [0, 1], the matched mask seen through the ROI.

    aligned=False is torchvision's (and the detector's) RoIAlign: it samples half a pixel right of and below
    where aligned=True does, so a target's content sits half a pixel up and left against paste_masks."""
    # BEGIN UNIT mask_targets
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)  # (P, 5): the gt mask is the "image" index
    return roi_align(gt_masks[:, None].to(boxes), rois, size, 1.0, aligned=aligned)[:, 0]  # (P, size, size)
    # END UNIT mask_targets


def mask_loss(mask_logits: Tensor, targets: Tensor, labels: Tensor) -> Tensor:
    """Mask R-CNN's L_mask: logits (P, K, M, M), targets (P, M, M), labels (P,) the gt class of each ROI ->
    a scalar, the mean per-pixel binary cross-entropy on each ROI's own class channel (0 with no ROI)."""
    # BEGIN UNIT mask_loss
    if targets.numel() == 0:
        return mask_logits.sum() * 0  # no positive ROI: zero, still attached to the graph
    own_class = mask_logits[torch.arange(len(labels), device=labels.device), labels]  # (P, M, M)
    return F.binary_cross_entropy_with_logits(own_class, targets)
    # END UNIT mask_loss


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """(N, 4) boxes grown (or shrunk) by `scale` about their centres."""
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale  # (N, 2): half width, half height
    centre = (boxes[:, 2:] + boxes[:, :2]) * 0.5  # (N, 2)
    return torch.cat([centre - half, centre + half], dim=1)


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = PASTE_PADDING) -> Tensor:
    """masks (N, 1, M, M) in [0, 1] and their boxes (N, 4) -> (N, 1, H, W) masks over the whole image."""
    # BEGIN UNIT paste_masks
    height, width = image_size
    size = masks.shape[-1]
    masks = F.pad(masks, (padding,) * 4)  # (N, 1, M + 2p, M + 2p)
    boxes = expand_boxes(boxes, (size + 2 * padding) / size).to(torch.int64)  # whole pixels, toward zero
    pasted = masks.new_zeros((len(masks), 1, height, width))
    for out, mask, (x1, y1, x2, y2) in zip(pasted, masks, boxes.tolist()):
        box_w, box_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)  # the box's pixels, both ends included
        resized = F.interpolate(mask[None], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
        left, top, right, bottom = max(x1, 0), max(y1, 0), min(x2 + 1, width), min(y2 + 1, height)
        if right > left and bottom > top:
            out[0, top:bottom, left:right] = resized[top - y1 : bottom - y1, left - x1 : right - x1]
    return pasted
    # END UNIT paste_masks


def crop_and_paste(masks: Tensor, boxes: Tensor, size: int, aligned: bool = False) -> Tensor:
    """The round trip of a mask through its box at size x size: (N, H, W) binary masks and their boxes -> the
    (N, H, W) binary masks that come back (project_masks, then paste_masks, then the 0.5 threshold). What a
    perfect mask head could give at that resolution."""
    crops = project_masks(masks.float(), boxes, torch.arange(len(boxes)), size, aligned)  # (N, size, size)
    return paste_masks(crops[:, None], boxes, masks.shape[-2:])[:, 0] >= MASK_THRESHOLD


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of two sets of binary masks (N, H, W) and (M, H, W) -> (N, M); 0 where both are empty."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T  # (N, M)
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
