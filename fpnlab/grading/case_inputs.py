"""Reproducible inputs for the assignment's test cases (assignments/tests/), made where the cases run.

    random_boxes(50, seed=0, low=-50, span=300, min_size=0, max_size=120)   # (50, 4) on grading.DEVICE

Drawn in float64 from their own generator, then cast: a case gives the same boxes in float32 and float64,
on any device, whatever else drew random numbers before it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fpnlab.grading.registry import DEVICE


def random_boxes(
    n: int,
    seed: int,
    low: float = -30.0,
    span: float = 200.0,
    min_size: float = 1.0,
    max_size: float = 91.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(n, 4) boxes (x1, y1, x2, y2): corners uniform in [low, low + span), sides in [min_size, max_size)."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * span + low  # (n, 2) top-left corners
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (max_size - min_size) + min_size  # (n, 2)
    return torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=DEVICE)
