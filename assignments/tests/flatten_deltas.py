"""Unit 'flatten_deltas': the RPN's box deltas in the anchors' order, fpnlab/rpn.py `flatten_deltas`:
(B, 4A, H, W), the 4 deltas of anchor a in channels 4a..4a+3 -> (B, H*W*A, 4).

Expected values: an order worked out by hand, and torchvision's concat_box_prediction_layers.
"""

import torch
from otter.test_files import test_case
from torchvision.models.detection.rpn import concat_box_prediction_layers

from fpnlab import grading as units
from fpnlab.model import rpn

OK_FORMAT = False
name = "flatten_deltas"
points = 1
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def torchvision_flat(deltas):
    batch, channels, rows, columns = deltas.shape
    logits = torch.zeros(batch, channels // 4, rows, columns, dtype=deltas.dtype, device=deltas.device)
    return concat_box_prediction_layers([logits], [deltas])[1].reshape(batch, -1, 4)


def random_deltas(shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(units.DEVICE)


@test_case(name="by hand: delta k of the anchor at (row, column, a) = 100 * row + 10 * column + a + k / 10")
def order_by_hand():
    rows, cols, anchors = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(3), indexing="ij")
    code = (100 * rows + 10 * cols + anchors).float()  # (H, W, A)
    deltas = torch.stack([code + k / 10 for k in range(4)], dim=-1)  # (H, W, A, 4)
    packed = deltas.permute(2, 3, 0, 1).reshape(1, 12, 2, 3)  # (1, 4A, H, W), as the conv outputs them
    got = units.run("flatten_deltas", rpn.flatten_deltas, packed.to(units.DEVICE))
    units.expect_close(got, deltas.reshape(1, -1, 4), "flattened (1, 12, 2, 3) deltas")


@test_case(name="a batch of 2, A = 3, 5 x 7 grid, against torchvision")
def random_against_torchvision():
    deltas = random_deltas((2, 12, 5, 7), seed=0)
    got = units.run("flatten_deltas", rpn.flatten_deltas, deltas)
    units.expect_close(got, torchvision_flat(deltas), "flattened (2, 12, 5, 7) deltas")


@test_case(name="a batch of 3, A = 15, a 9 x 1 grid, float64", hidden=True)
def odd_float64():
    deltas = random_deltas((3, 60, 9, 1), seed=SEED + 1, dtype=torch.float64)
    got = units.run("flatten_deltas", rpn.flatten_deltas, deltas)
    units.expect_close(got, torchvision_flat(deltas), "flattened (3, 60, 9, 1) deltas")


@test_case(name="a non-contiguous input (a transposed view) flattens the same", hidden=True)
def non_contiguous():
    deltas = random_deltas((2, 12, 6, 4), seed=SEED + 2).transpose(2, 3)  # (2, 12, 4, 6), not contiguous
    got = units.run("flatten_deltas", rpn.flatten_deltas, deltas)
    units.expect_close(got, torchvision_flat(deltas.contiguous()), "flattened transposed deltas")
