"""One switch between the fast path and the reference path.

NMS, RoIAlign and RoIPool exist twice in fpnlab: torchvision's fused kernels (the default, fast) and
plain-PyTorch reference versions a student can read line by line (``boxes.nms_reference``,
``poolers.roi_align_reference``, ``poolers.roi_pool_reference``). This module holds the one global
flag that makes ``boxes.nms``, ``poolers.roi_align`` and ``poolers.roi_pool`` use the reference.

    with use_reference_ops():
        detections = model(images)   # every NMS / RoIAlign / RoIPool is plain PyTorch here
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_reference_ops = False


def reference_ops_enabled() -> bool:
    """True when nms / roi_align / roi_pool use the plain-PyTorch reference implementations."""
    return _reference_ops


def set_reference_ops(enabled: bool) -> None:
    """Select the reference path (True) or torchvision's kernels (False) from now on."""
    global _reference_ops
    _reference_ops = bool(enabled)


@contextmanager
def use_reference_ops(enabled: bool = True) -> Iterator[None]:
    """Use the reference path (or, with ``enabled=False``, the kernels) inside a ``with`` block."""
    previous = _reference_ops
    set_reference_ops(enabled)
    try:
        yield
    finally:
        set_reference_ops(previous)
