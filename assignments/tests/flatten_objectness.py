"""Unit 'flatten_objectness': the RPN's objectness logits in the anchors' order, fpnlab/rpn.py
`flatten_objectness`: (B, A, H, W) -> (B, H*W*A), location by location, the A anchors of a location inside.

Expected values: an order worked out by hand, and torchvision's concat_box_prediction_layers.
"""

import torch
from otter.test_files import test_case
from torchvision.models.detection.rpn import concat_box_prediction_layers

from fpnlab import grading as units
from fpnlab.model import rpn

OK_FORMAT = False
name = "flatten_objectness"
points = 1
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def torchvision_flat(logits):
    batch, anchors, height, width = logits.shape
    deltas = torch.zeros(batch, 4 * anchors, height, width, dtype=logits.dtype, device=logits.device)
    return concat_box_prediction_layers([logits], [deltas])[0].reshape(batch, -1)


def random_logits(shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(units.DEVICE)


@test_case(name="by hand: logit = 100 * row + 10 * column + anchor comes out in increasing order")
def order_by_hand():
    rows, cols, anchors = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(3), indexing="ij")
    code = (100 * rows + 10 * cols + anchors).float()  # (H, W, A)
    got = units.run("flatten_objectness", rpn.flatten_objectness, code.permute(2, 0, 1)[None].to(units.DEVICE))
    units.expect_close(got, code.flatten()[None], "flattened (1, 3, 2, 3) logits")


@test_case(name="a batch of 2, A = 3, 5 x 7 grid, against torchvision")
def random_against_torchvision():
    logits = random_logits((2, 3, 5, 7), seed=0)
    got = units.run("flatten_objectness", rpn.flatten_objectness, logits)
    units.expect_close(got, torchvision_flat(logits), "flattened (2, 3, 5, 7) logits")


@test_case(name="a batch of 3, A = 15, a 1 x 9 grid, float64", hidden=True)
def odd_float64():
    logits = random_logits((3, 15, 1, 9), seed=SEED + 1, dtype=torch.float64)
    got = units.run("flatten_objectness", rpn.flatten_objectness, logits)
    units.expect_close(got, torchvision_flat(logits), "flattened (3, 15, 1, 9) logits")


@test_case(name="a non-contiguous input (a transposed view) flattens the same", hidden=True)
def non_contiguous():
    logits = random_logits((2, 3, 6, 4), seed=SEED + 2).transpose(2, 3)  # (2, 3, 4, 6), not contiguous
    got = units.run("flatten_objectness", rpn.flatten_objectness, logits)
    units.expect_close(got, torchvision_flat(logits.contiguous()), "flattened transposed logits")
