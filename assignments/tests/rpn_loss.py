"""Unit 'rpn_loss': the RPN's two losses (Faster R-CNN Eq. 1) on the sampled anchors, fpnlab/rpn.py
`RegionProposalNetwork.loss`.

Expected values: losses worked out by hand, and torchvision's RegionProposalNetwork (assign_targets_to_anchors,
then compute_loss). The sample is made to hold every usable anchor (a batch larger than the anchors), so
that the losses do not depend on random draws; the matching, sampling and box coding the loss calls are
torchvision's while this unit is checked.
"""

import math

import torch
from otter.test_files import test_case
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from fpnlab import grading as units
from fpnlab.model import anchors as fpn_anchors
from fpnlab.model import config as model_config
from fpnlab.model import rpn

OK_FORMAT = False
name = "rpn_loss"
points = 4
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret
EVERYTHING = 10**6  # anchors sampled per image: more than there are, so every usable one is in the sample


def ours():
    config = model_config.RPNConfig(batch_size_per_image=EVERYTHING)
    net = units.build(
        rpn.RegionProposalNetwork, units.build(fpn_anchors.AnchorGenerator), units.build(rpn.RPNHead, 4, 3), config
    )
    net.obj.train()
    return net


def torchvision_losses(logits, deltas, anchors, targets):
    theirs = tv_rpn.RegionProposalNetwork(
        TvAnchorGenerator(),
        tv_rpn.RPNHead(4, 3),
        0.7,
        0.3,
        EVERYTHING,
        0.5,
        dict(training=1, testing=1),
        dict(training=1, testing=1),
        0.7,
    ).train()
    labels, matched = theirs.assign_targets_to_anchors([anchors] * len(targets), targets)
    regression_targets = theirs.box_coder.encode(matched, [anchors] * len(targets))
    labels = [label.to(logits.dtype) for label in labels]  # torchvision makes them float32 whatever the logits
    return theirs.compute_loss(logits.reshape(-1), deltas.reshape(-1, 4), labels, regression_targets)


def problem(n_images, grid, seed, dtype=torch.float32, objects=3):
    """torchvision's anchors on a grid (3 ratios, size 32, stride 8), random logits and deltas, gt boxes near
    anchors."""
    gen = torch.Generator().manual_seed(seed)
    height, width = grid
    images = ImageList(
        torch.zeros(1, 3, 8 * height, 8 * width, dtype=dtype, device=units.DEVICE), [(8 * height, 8 * width)]
    )
    anchors = TvAnchorGenerator(((32,),), ((0.5, 1.0, 2.0),))(images, [images.tensors[:, :1, :height, :width]])[0]
    logits = torch.randn(n_images, len(anchors), generator=gen, dtype=dtype).to(units.DEVICE)
    deltas = (torch.randn(n_images, len(anchors), 4, generator=gen, dtype=dtype) * 0.3).to(units.DEVICE)
    targets = []
    for image in range(n_images):
        picked = anchors[torch.randint(len(anchors), (objects if image % 2 == 0 else 0,), generator=gen)]
        jitter = (torch.rand(len(picked), 4, generator=gen, dtype=dtype) * 6 - 3).to(units.DEVICE)
        targets.append({"boxes": picked + jitter})  # odd images hold no objects
    return logits, deltas, anchors, targets


def losses(logits, deltas, anchors, targets, grad=None):
    answer = units.run("rpn_loss", ours().method("loss"), logits, deltas, anchors, targets, grad=grad)
    got = answer[0] if grad else answer
    if not isinstance(got, dict) or set(got) != {"loss_objectness", "loss_rpn_box_reg"}:
        raise AssertionError(
            f"loss must return a dict with loss_objectness and loss_rpn_box_reg, got {units.shown(got)}."
        )
    return answer


def compare(got, expected, what):
    units.expect_close(got["loss_objectness"], expected[0], f"{what}: loss_objectness")
    units.expect_close(got["loss_rpn_box_reg"], expected[1], f"{what}: loss_rpn_box_reg")


@test_case(name="by hand: one anchor on its gt, one far away, logits 0: objectness log 2, box loss 0")
def by_hand():
    anchors = torch.tensor([[0.0, 0.0, 32.0, 32.0], [100.0, 100.0, 132.0, 132.0]], device=units.DEVICE)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 32.0, 32.0]], device=units.DEVICE)}]
    got = losses(torch.zeros(1, 2, device=units.DEVICE), torch.zeros(1, 2, 4, device=units.DEVICE), anchors, targets)
    compare(got, (torch.tensor(math.log(2)), torch.tensor(0.0)), "two anchors")


@test_case(name="two images (one without objects) on a 6 x 8 grid, against torchvision")
def against_torchvision():
    logits, deltas, anchors, targets = problem(2, (6, 8), seed=0)
    compare(
        losses(logits, deltas, anchors, targets),
        torchvision_losses(logits, deltas, anchors, targets),
        "losses of 2 images",
    )


@test_case(name="three images, a 5 x 9 grid, float64, and the gradients of both losses", hidden=True)
def float64_gradients():
    logits, deltas, anchors, targets = problem(3, (5, 9), seed=SEED + 1, dtype=torch.float64, objects=4)
    theirs_in = [logits.clone().requires_grad_(), deltas.clone().requires_grad_()]
    got, grads = losses(logits, deltas, anchors, targets, grad=(0, 1))
    expected = torchvision_losses(*theirs_in, anchors, targets)
    compare(got, expected, "float64 losses of 3 images")
    (expected[0] + expected[1]).backward()
    for got_grad, want, what in zip(grads, theirs_in, ("logits", "deltas")):
        if got_grad is None:
            raise AssertionError(f"the losses do not reach the {what}: no gradient.")
        units.expect_close(got_grad, want.grad, f"gradient of the summed losses for the {what}")


@test_case(name="no objects in any image: box loss 0, objectness on the negatives alone", hidden=True)
def no_objects():
    logits, deltas, anchors, _ = problem(2, (4, 4), seed=SEED + 2)
    targets = [{"boxes": torch.zeros(0, 4, device=units.DEVICE)} for _ in range(2)]
    compare(
        losses(logits, deltas, anchors, targets),
        torchvision_losses(logits, deltas, anchors, targets),
        "losses without objects",
    )
