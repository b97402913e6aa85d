"""Which pyramid level pools each ROI (stage 5): FPN paper, Eq. 1.

A box of canonical ImageNet size (224 x 224) is pooled from the canonical level P4 (the level whose
stride matches a ResNet's C4 head in the single-scale Faster R-CNN); a box half as large per side
goes one level finer, twice as large one level coarser.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import box_area, check_boxes

# torchvision's epsilon convention (LevelMapper, eps=1e-6), added before the floor. A box exactly on a
# level boundary (sqrt(w*h) = 112, 224, 448, ...) should land on the coarser level, but float32
# round-off in sqrt/log2 can return 2.9999998 instead of 3.0 and the floor would drop it a level;
# the epsilon absorbs that, and using torchvision's exact value makes our levels equal to its.
LEVEL_EPS = 1e-6


def level_number(name: str) -> int:
    """The level k of a feature map from its name: "p3" -> 3, "c4" -> 4 (its stride is 2^k)."""
    match = re.fullmatch(r"[a-z]+(\d+)", name)
    if match is None:
        raise FpnlabError(f"pyramid level names end in their level number, like 'p2' or 'c4', got {name!r}.")
    return int(match.group(1))


def known_level(name: Any, known: Sequence[str]) -> str:
    """`name` when it is one of the `known` level names ("p2", ...); FpnlabError listing them otherwise."""
    if not isinstance(name, str) or name not in known:
        raise FpnlabError(f"unknown pyramid level {name!r}; this model has {', '.join(known)}.")
    return name


def check_canonical_size(canonical_size: float) -> None:
    """Eq. 1 divides by the canonical size: it must be a finite number > 0."""
    if not (isinstance(canonical_size, (int, float)) and 0 < canonical_size < math.inf):
        raise FpnlabError(f"Eq. 1's canonical size must be a number > 0 (224 in the paper), got {canonical_size!r}.")


def continuous_level(
    w: Tensor | float, h: Tensor | float, canonical_size: float = 224, canonical_level: int = 4
) -> Tensor | float:
    """Eq. 1 before the floor: k0 + log2(sqrt(w * h) / 224), e.g. 4.0 for 224 x 224, 3.5 for 158 x 158.

    A box without area has no level (FpnlabError for numbers; -inf, then clamped, for tensors)."""
    check_canonical_size(canonical_size)
    if isinstance(w, Tensor) or isinstance(h, Tensor):
        return canonical_level + torch.log2(torch.sqrt(torch.as_tensor(w) * h) / canonical_size)
    if not (w > 0 and h > 0):  # False for NaN too
        raise FpnlabError(f"an ROI needs a width and a height > 0 for Eq. 1, got {w} x {h}.")
    return canonical_level + math.log2(math.sqrt(w * h) / canonical_size)


def assign_levels(
    boxes: Tensor, k_min: int = 2, k_max: int = 5, canonical_size: float = 224, canonical_level: int = 4
) -> Tensor:
    """Pyramid level k of each box: (N, 4) -> (N,) int64, FPN paper Eq. 1,

        k = floor(k0 + log2(sqrt(w * h) / 224)),   k0 = 4,   clamped to [k_min, k_max].

    224 x 224 -> 4, 112 x 112 -> 3, 448 x 448 -> 5; a 10 x 10 box gives 0 and is clamped to k_min = 2
    (so does a zero-area box: log2(0) = -inf). Boxes with x2 < x1 or y2 < y1 raise FpnlabError.
    """
    check_canonical_size(canonical_size)
    check_boxes(boxes, "assign_levels: boxes")
    # BEGIN UNIT assign_levels
    scale = torch.sqrt(box_area(boxes))  # (N,) sqrt(w * h)
    k = canonical_level + torch.log2(scale / canonical_size)  # (N,) continuous level
    k = torch.floor(k + torch.tensor(LEVEL_EPS, dtype=k.dtype))  # see LEVEL_EPS
    return k.clamp(min=k_min, max=k_max).to(torch.int64)
    # END UNIT assign_levels
