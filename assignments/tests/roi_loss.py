"""Unit 'roi_loss': the Fast R-CNN head's two losses, fpnlab/roi_heads.py `RoIHeads.loss`: cross-entropy
over classes, smooth L1 (beta 1/9) on the deltas of each positive ROI's own class, both averaged over all
sampled ROIs.

Expected values: losses worked out by hand, and torchvision's fastrcnn_loss (which takes regression
targets for every ROI; the positives' are those of `regression_targets`, in order).
"""

import math

import torch
from otter.test_files import test_case
from torchvision.models.detection.roi_heads import fastrcnn_loss

from fpnlab import grading as units
from fpnlab.model import poolers, roi_heads

OK_FORMAT = False
name = "roi_loss"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def heads():
    parts = [units.build(poolers.MultiScaleRoIPooler), units.build(roi_heads.TwoMLPHead, 4, 4)]
    return units.build(roi_heads.RoIHeads, *parts, units.build(roi_heads.FastRCNNPredictor, 4, 3))


def losses(logits, deltas, labels, targets, grad=None):
    answer = units.run("roi_loss", heads().method("loss"), logits, deltas, labels, targets, grad=grad)
    got = answer[0] if grad else answer
    if not isinstance(got, dict) or set(got) != {"loss_classifier", "loss_box_reg"}:
        raise AssertionError(f"loss must return a dict with loss_classifier and loss_box_reg, got {units.shown(got)}.")
    return answer


def problem(n_rois, n_classes, seed, dtype=torch.float32, background_only=False):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_rois, n_classes, generator=gen, dtype=dtype).to(units.DEVICE)
    deltas = torch.randn(n_rois, 4 * n_classes, generator=gen, dtype=dtype).to(units.DEVICE)
    labels = torch.randint(n_classes, (n_rois,), generator=gen).to(units.DEVICE)
    if background_only:
        labels.zero_()
    targets = torch.randn(int((labels > 0).sum()), 4, generator=gen, dtype=dtype).to(units.DEVICE) * 0.5
    return logits, deltas, labels, targets


def torchvision_losses(logits, deltas, labels, targets):
    every = torch.zeros(len(labels), 4, dtype=targets.dtype, device=targets.device)
    every[labels > 0] = targets
    return fastrcnn_loss(logits, deltas, [labels], [every])


def compare(got, expected, what):
    units.expect_close(got["loss_classifier"], expected[0], f"{what}: loss_classifier")
    units.expect_close(got["loss_box_reg"], expected[1], f"{what}: loss_box_reg")


@test_case(name="by hand: 2 ROIs, 3 classes, logits 0: log 3; one positive 1 px off in dx: (1 - 1/18) / 2")
def by_hand():
    got = losses(
        torch.zeros(2, 3, device=units.DEVICE),
        torch.zeros(2, 12, device=units.DEVICE),
        torch.tensor([2, 0], device=units.DEVICE),
        torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=units.DEVICE),
    )
    compare(got, (torch.tensor(math.log(3)), torch.tensor((1 - 1 / 18) / 2)), "two ROIs")


@test_case(name="40 ROIs, 5 classes, against torchvision's fastrcnn_loss")
def against_torchvision():
    problem_ = problem(40, 5, seed=0)
    compare(losses(*problem_), torchvision_losses(*problem_), "losses of 40 ROIs")


@test_case(name="float64, 33 ROIs, 7 classes, and the gradients of both losses", hidden=True)
def float64_gradients():
    logits, deltas, labels, targets = problem(33, 7, seed=SEED + 1, dtype=torch.float64)
    theirs_in = [logits.clone().requires_grad_(), deltas.clone().requires_grad_()]
    got, grads = losses(logits, deltas, labels, targets, grad=(0, 1))
    expected = torchvision_losses(*theirs_in, labels, targets)
    compare(got, expected, "float64 losses")
    (expected[0] + expected[1]).backward()
    for got_grad, want, what in zip(grads, theirs_in, ("class logits", "box deltas")):
        if got_grad is None:
            raise AssertionError(f"the losses do not reach the {what}: no gradient.")
        units.expect_close(got_grad, want.grad, f"gradient for the {what}")


@test_case(name="only background ROIs: the box loss is 0", hidden=True)
def background_only():
    problem_ = problem(12, 4, seed=SEED + 2, background_only=True)
    compare(losses(*problem_), torchvision_losses(*problem_), "losses of background ROIs")
