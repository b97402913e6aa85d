"""Unit 'filter_image': one image's proposals from its candidates (clip, drop tiny and low-scoring boxes,
NMS within each level, keep the best), fpnlab/rpn.py `RegionProposalNetwork.filter_image`.

Expected values: proposals worked out by hand, and torchvision's RegionProposalNetwork.filter_proposals
(given every candidate, so that its per-level top-k keeps them all); the level of each proposal is the
level of the candidate it came from.
"""

import torch
import torchvision
from otter.test_files import test_case
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator

from fpnlab import grading as units
from fpnlab.model import anchors, rpn
from fpnlab.model import config as model_config

OK_FORMAT = False
name = "filter_image"
points = 4
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def ours(nms_thresh=0.7, score_thresh=0.0):
    config = model_config.RPNConfig(nms_thresh=nms_thresh, score_thresh=score_thresh)
    return units.build(
        rpn.RegionProposalNetwork, units.build(anchors.AnchorGenerator), units.build(rpn.RPNHead, 4, 3), config
    )


def candidates(per_level, image_size, seed, dtype=torch.float32):
    """Random candidates of each level (grouped by level, as torchvision wants), some off the image."""
    gen = torch.Generator().manual_seed(seed)
    n = sum(per_level)
    height, width = image_size
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor([width, height]) * 1.2 - 10
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 50 + 0.0005
    boxes = torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=units.DEVICE)
    scores = torch.rand(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=units.DEVICE)
    levels = torch.repeat_interleave(torch.arange(len(per_level)), torch.tensor(per_level)).to(units.DEVICE)
    return boxes, scores, levels


def expected(boxes, scores, levels, image_size, top_n, nms_thresh=0.7, score_thresh=0.0):
    """torchvision's proposals and scores, and the level each came from."""
    theirs = tv_rpn.RegionProposalNetwork(
        TvAnchorGenerator(),
        tv_rpn.RPNHead(4, 3),
        0.7,
        0.3,
        256,
        0.5,
        dict(training=10**6, testing=10**6),
        dict(training=top_n, testing=top_n),
        nms_thresh,
        score_thresh,
    ).eval()
    counts = torch.bincount(levels, minlength=int(levels.max()) + 1 if len(levels) else 1).tolist()
    kept, kept_scores = theirs.filter_proposals(boxes[None], torch.logit(scores)[None], [image_size], counts)
    clipped = torchvision.ops.clip_boxes_to_image(boxes, image_size)
    source = [int(torch.where((clipped == box).all(dim=1))[0][0]) for box in kept[0]]
    return kept[0], kept_scores[0], levels[source]


def run(filter_, boxes, scores, levels, image_size, top_n):
    got = units.run("filter_image", filter_.method("filter_image"), boxes, scores, levels, image_size, top_n)
    if not isinstance(got, tuple) or len(got) != 3:
        raise AssertionError(f"filter_image must return (boxes, scores, levels), got {type(got).__name__}.")
    return got


def compare(got, want, what):
    units.expect_close(got[0], want[0], f"{what}: boxes")
    units.expect_close(got[1], want[1], f"{what}: scores", rtol=1e-4, atol=1e-6)
    units.expect_equal(got[2], want[2], f"{what}: levels")


@test_case(name="by hand: NMS within a level only, clipping to a 20 x 30 image, a too-thin box dropped")
def by_hand():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [-5.0, -5.0, 50.0, 50.0],
            [3.0, 3.0, 3.0005, 9.0],
        ],
        device=units.DEVICE,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95], device=units.DEVICE)
    levels = torch.tensor([0, 1, 0, 2, 0], device=units.DEVICE)
    got = run(ours(), boxes, scores, levels, (20, 30), 10)
    want = (
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 30.0, 20.0]]),
        torch.tensor([0.9, 0.8, 0.6]),
        torch.tensor([0, 1, 2]),
    )
    compare(got, want, "proposals of 5 candidates")


@test_case(name="90 candidates on 3 levels of a 120 x 90 image, the best 50, against torchvision")
def random_against_torchvision():
    boxes, scores, levels = candidates([40, 30, 20], (120, 90), seed=0)
    compare(
        run(ours(), boxes, scores, levels, (120, 90), 50),
        expected(boxes, scores, levels, (120, 90), 50),
        "proposals of 90 candidates",
    )


@test_case(name="a score threshold of 0.5 and NMS at 0.5, 4 levels, float64", hidden=True)
def thresholds_float64():
    boxes, scores, levels = candidates([30, 25, 20, 7], (97, 131), seed=SEED + 1, dtype=torch.float64)
    got = run(ours(0.5, 0.5), boxes, scores, levels, (97, 131), 1000)
    compare(got, expected(boxes, scores, levels, (97, 131), 1000, 0.5, 0.5), "proposals above score 0.5")


@test_case(name="top_n smaller than the survivors keeps the best; many boxes off the image", hidden=True)
def top_n_off_image():
    boxes, scores, levels = candidates([60, 60], (40, 50), seed=SEED + 2)
    boxes = boxes * 2 - 30  # most reach past the image
    compare(
        run(ours(), boxes, scores, levels, (40, 50), 7),
        expected(boxes, scores, levels, (40, 50), 7),
        "the 7 best proposals",
    )


@test_case(name="by hand: no candidates, no proposals", hidden=True)
def empty():
    got = run(
        ours(),
        torch.zeros(0, 4, device=units.DEVICE),
        torch.zeros(0, device=units.DEVICE),
        torch.zeros(0, dtype=torch.int64, device=units.DEVICE),
        (20, 30),
        10,
    )
    compare(got, (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)), "no candidates")
