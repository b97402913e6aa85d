"""Switches: the fast path or the reference path, value checks of boxes on or off, a model in eval mode.

NMS, RoIAlign and RoIPool exist twice in fpnlab: torchvision's fused kernels (the default, fast) and
plain-PyTorch reference versions a student can read line by line (``boxes.nms_reference``,
``poolers.roi_align_reference``, ``poolers.roi_pool_reference``). This module holds the one global
flag that makes ``boxes.nms``, ``poolers.roi_align`` and ``poolers.roi_pool`` use the reference.

    with use_reference_ops():
        detections = model(images)   # every NMS / RoIAlign / RoIPool is plain PyTorch here

The box ops check their inputs' values (finite, x1 <= x2, no NaN scores), which costs a host-device
sync per call on a GPU. The detector checks its own inputs once, then runs inside
``skip_value_checks()``: every box it makes from valid inputs is valid by construction, so the
checks in between only stall the GPU. Called directly, the box ops always check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

_reference_ops = False
_value_checks = True


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


def value_checks_enabled() -> bool:
    """True (the default) when the box ops check the values of their inputs, not only their shapes."""
    return _value_checks


@contextmanager
def skip_value_checks() -> Iterator[None]:
    """Inside a ``with`` block, box ops check shapes and dtypes only (no host-device sync)."""
    global _value_checks
    previous, _value_checks = _value_checks, False
    try:
        yield
    finally:
        _value_checks = previous


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients inside a ``with`` block; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
