"""Unit 'mask_loss': Mask R-CNN's L_mask, fpnlab/model/masks.py `mask_loss`: the mean per-pixel binary
cross-entropy of each ROI's logits on its own ground-truth class's channel only; 0 (on the graph) without ROIs.

Expected values: a loss worked out by hand, and torchvision's maskrcnn_loss (given the same targets: its ROIs
are the whole mask, so RoIAlign copies each target exactly).
"""

import math

import torch
from otter.test_files import test_case
from torchvision.models.detection.roi_heads import maskrcnn_loss

from fpnlab import grading as units
from fpnlab.model import masks

OK_FORMAT = False
name = "mask_loss"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def loss(logits, targets, labels, grad=None):
    return units.run("mask_loss", masks.mask_loss, logits, targets, labels, grad=grad)


def problem(n_rois, n_classes, size, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n_rois, n_classes, size, size, generator=gen, dtype=dtype) * 3).to(units.DEVICE)
    targets = torch.rand(n_rois, size, size, generator=gen, dtype=dtype).to(units.DEVICE)  # soft, as RoIAlign's
    labels = torch.randint(1, n_classes, (n_rois,), generator=gen).to(units.DEVICE)
    return logits, targets, labels


def torchvision_loss(logits, targets, labels):
    """maskrcnn_loss with each ROI's target as its own whole-image "mask" and the ROI the whole mask: RoIAlign of a
    size x size image over the box (0, 0, size, size) at size x size samples pixel centres exactly... once shifted
    by half a pixel, so the box is (-0.5, -0.5, size - 0.5, size - 0.5)."""
    size = targets.shape[-1]
    boxes = torch.tensor([[-0.5, -0.5, size - 0.5, size - 0.5]], dtype=targets.dtype, device=targets.device)
    boxes = boxes.repeat(len(targets), 1)
    index = torch.arange(len(targets), device=targets.device)
    return maskrcnn_loss(logits, [boxes], [targets], [labels], [index])


@test_case(
    name="by hand: logits 0 on the right class: ln 2; logit 2 on a target 1: ln(1 + e^-2); the other class unseen"
)
def by_hand():
    logits = torch.zeros(2, 3, 1, 1, device=units.DEVICE)
    logits[1, 2] = 2.0
    logits[0, 1] = logits[1, 1] = 50.0  # class 1 is no ROI's class: its logits must not count
    targets = torch.ones(2, 1, 1, device=units.DEVICE)
    got = loss(logits, targets, torch.tensor([2, 2], device=units.DEVICE))
    expected = torch.tensor((math.log(2) + math.log(1 + math.exp(-2))) / 2)
    units.expect_close(got, expected, "the mean of the two ROIs' losses")


@test_case(name="20 ROIs, 5 classes, 28 x 28, against torchvision's maskrcnn_loss")
def against_torchvision():
    problem_ = problem(20, 5, 28, seed=0)
    units.expect_close(loss(*problem_), torchvision_loss(*problem_), "the mask loss of 20 ROIs")


@test_case(name="float64, 9 ROIs, 4 classes, 14 x 14, and the gradient", hidden=True)
def float64_gradient():
    logits, targets, labels = problem(9, 4, 14, seed=SEED + 1, dtype=torch.float64)
    theirs = logits.clone().requires_grad_()
    got, grads = loss(logits, targets, labels, grad=(0,))
    expected = torchvision_loss(theirs, targets, labels)
    units.expect_close(got, expected, "float64 mask loss")
    expected.backward()
    if grads[0] is None:
        raise AssertionError("the loss does not reach the mask logits: no gradient.")
    units.expect_close(grads[0], theirs.grad, "gradient for the mask logits")


@test_case(name="no positive ROI: the loss is 0", hidden=True)
def no_rois():
    logits, targets, labels = problem(3, 4, 28, seed=SEED + 2)
    units.expect_close(loss(logits[:0], targets[:0], labels[:0]), torch.tensor(0.0), "the loss of no ROI")
