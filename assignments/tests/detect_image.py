"""Unit 'detect_image': one image's detections from every (ROI, class) box and score, fpnlab/roi_heads.py
`RoIHeads.detect_image`: clip, drop the background class and low scores and tiny boxes, NMS within each
class, keep the best.

Expected values: detections worked out by hand, and torchvision's RoIHeads.postprocess_detections on the
same class logits, box deltas and proposals (decoded here with torchvision's BoxCoder).
"""

import torch
import torch.nn.functional as F
from otter.test_files import test_case
from torchvision.models.detection._utils import BoxCoder as TvBoxCoder
from torchvision.models.detection.roi_heads import RoIHeads as TvRoIHeads

from fpnlab import grading as units
from fpnlab.model import config as model_config
from fpnlab.model import poolers, roi_heads

OK_FORMAT = False
name = "detect_image"
points = 4
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret
WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def heads(score_thresh=0.05, nms_thresh=0.5, detections=100):
    config = model_config.BoxHeadConfig(score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections)
    parts = [units.build(poolers.MultiScaleRoIPooler), units.build(roi_heads.TwoMLPHead, 4, 4)]
    return units.build(roi_heads.RoIHeads, *parts, units.build(roi_heads.FastRCNNPredictor, 4, 3), config)


def detect(boxes, scores, image_size, **settings):
    got = units.run("detect_image", heads(**settings).method("detect_image"), boxes, scores, image_size)
    if not isinstance(got, dict) or set(got) != {"boxes", "labels", "scores"}:
        raise AssertionError(f"detect_image must return a dict with boxes, labels and scores, got {units.shown(got)}.")
    return got


def problem(n_rois, n_classes, image_size, seed, dtype=torch.float32):
    """Random proposals (some off the image), class logits and box deltas."""
    gen = torch.Generator().manual_seed(seed)
    height, width = image_size
    xy = torch.rand(n_rois, 2, generator=gen, dtype=torch.float64) * torch.tensor([width, height]) - 10
    wh = torch.rand(n_rois, 2, generator=gen, dtype=torch.float64) * 60 + 2
    proposals = torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=units.DEVICE)
    logits = (torch.randn(n_rois, n_classes, generator=gen, dtype=dtype) * 2).to(units.DEVICE)
    deltas = torch.randn(n_rois, 4 * n_classes, generator=gen, dtype=dtype).to(units.DEVICE)
    return logits, deltas, proposals


def compare_with_torchvision(problem_, image_size, score_thresh=0.05, nms_thresh=0.5, detections=100):
    logits, deltas, proposals = problem_
    boxes = TvBoxCoder(WEIGHTS).decode(deltas, [proposals])  # (R, C, 4)
    got = detect(
        boxes,
        F.softmax(logits, -1),
        image_size,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections=detections,
    )
    theirs = TvRoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, WEIGHTS, score_thresh, nms_thresh, detections)
    expected = [out[0] for out in theirs.postprocess_detections(logits, deltas, [proposals], [image_size])]
    units.expect_close(got["boxes"], expected[0], "detected boxes")
    units.expect_close(got["scores"], expected[1], "their scores")
    units.expect_equal(got["labels"], expected[2], "their labels")


@test_case(name="by hand: clipped to a 50 x 60 image, background and scores <= 0.05 dropped, NMS per class")
def by_hand():
    boxes = torch.tensor(
        [
            [[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]],
            [[0.0, 0.0, 9.0, 9.0], [1.0, 1.0, 10.0, 10.0], [-5.0, -5.0, 100.0, 100.0]],
        ],
        device=units.DEVICE,
    )  # (2 ROIs, 3 classes, 4)
    scores = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.45, 0.05]], device=units.DEVICE)
    got = detect(boxes, scores, (50, 60))
    # class 1: ROI 1's box overlaps ROI 0's by IoU 0.81 > 0.5 and goes; class 2: ROI 1 scores 0.05, not above
    units.expect_close(got["boxes"], torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]), "boxes")
    units.expect_close(got["scores"], torch.tensor([0.6, 0.3]), "scores")
    units.expect_equal(got["labels"], torch.tensor([1, 2]), "labels")


@test_case(name="30 ROIs, 4 classes, an 80 x 100 image, against torchvision's postprocess_detections")
def against_torchvision():
    compare_with_torchvision(problem(30, 4, (80, 100), seed=0), (80, 100))


@test_case(name="float64, a score threshold of 0.2, NMS at 0.3, at most 6 detections", hidden=True)
def settings_float64():
    compare_with_torchvision(
        problem(45, 6, (73, 91), seed=SEED + 1, dtype=torch.float64),
        (73, 91),
        score_thresh=0.2,
        nms_thresh=0.3,
        detections=6,
    )


@test_case(name="by hand: no ROIs give no detections", hidden=True)
def empty():
    got = detect(torch.zeros(0, 3, 4, device=units.DEVICE), torch.zeros(0, 3, device=units.DEVICE), (50, 60))
    units.expect_close(got["boxes"], torch.zeros(0, 4), "boxes")
    units.expect_close(got["scores"], torch.zeros(0), "scores")
    units.expect_equal(got["labels"], torch.zeros(0, dtype=torch.int64), "labels")
