"""What the test cases compare with: tensors of the right shape and dtype, equal or close, failures in words.

expect_close(got, expected, "iou of 3 boxes")     # AssertionError saying where and by how much
expect_equal(got, expected, "matched gt index")
shown(got)                                        # "a dict with keys boxes, scores", "a tensor of shape (3, 4)"
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fpnlab.grading.frames import opaque_name

DETAIL = " | details: "  # what follows it in a failure holds values: shown for visible cases, not for hidden ones


def expect_tensor(got: Any, expected: Tensor, what: str) -> Tensor:
    """`got` on the CPU, after an AssertionError in words unless it is a tensor of expected's shape and dtype."""
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(expected.shape):
        shape = (
            f"shape {tuple(got.shape)}" if isinstance(got, Tensor) else f"a {opaque_name(got) or type(got).__name__}"
        )
        raise AssertionError(f"{what}: got {shape}, expected a tensor of shape {tuple(expected.shape)}.")
    if got.dtype != expected.dtype:
        raise AssertionError(f"{what}: dtype {str(got.dtype)[6:]}, expected {str(expected.dtype)[6:]}.")
    return got.detach().cpu()


def expect_close(got: Any, expected: Tensor, what: str, rtol: float | None = None, atol: float | None = None) -> None:
    """AssertionError in words unless `got` equals `expected` within a relative error (float64: 1e-9, else 1e-4),
    plus `atol` for values near 0, so results of the CPU and of a GPU both pass."""
    got, expected = expect_tensor(got, expected, what), expected.detach().cpu()
    double = expected.dtype == torch.float64
    rtol = rtol if rtol is not None else 1e-9 if double else 1e-4
    atol = atol if atol is not None else 1e-9 if double else 1e-5
    ok = torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if bool(ok.all()):
        return
    error = ((got - expected).abs() / (atol + rtol * expected.abs())).nan_to_num(float("inf")).masked_fill(ok, 0)
    index = tuple(int(i) for i in torch.unravel_index(error.argmax(), error.shape)) if error.dim() else ()
    raise AssertionError(
        f"{what}: {int((~ok).sum())} of {ok.numel()} values differ by more than a relative "
        f"{rtol:g}{DETAIL}the worst, at {list(index)}: got {got[index].item():.6g}, expected "
        f"{expected[index].item():.6g}."
    )


def expect_equal(got: Any, expected: Tensor, what: str) -> None:
    """AssertionError in words unless `got` is exactly `expected` (indices, labels, levels)."""
    got, expected = expect_tensor(got, expected, what), expected.detach().cpu()
    if torch.equal(got, expected):
        return
    differ = f"{what}: {int((got != expected).sum())} of {got.numel()} values differ{DETAIL}"
    if got.numel() <= 16:
        raise AssertionError(f"{differ}got {got.tolist()}, expected {expected.tolist()}.")
    first = tuple(int(i) for i in (got != expected).nonzero()[0])
    raise AssertionError(
        f"{differ}the first, at {list(first)}: got {got[first].item()}, expected {expected[first].item()}."
    )


def shown(value: Any) -> str:
    """A few words on what a unit returned, for a failure message (never its values)."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict) and opaque_name(value) is None:
        return f"a dict with keys {', '.join(map(str, value)) or 'none'}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {opaque_name(value) or type(value).__name__}"
