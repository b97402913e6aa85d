"""What passes between the grader and a unit's process: plain data in length-prefixed frames.

    write_frame(stream, {"ok": tensor})      # 8 bytes of length, then torch.save of the value
    read_frame(stream)                       # the value, loaded with torch.load(weights_only=True)

Only tensors, numbers, strings, None, lists, tuples and dicts cross: `weights_only=True` loads no class and
runs no code, so whatever a student's code returns, reading it cannot run anything in the grader.
`to_plain` turns a unit's result into such data in the unit's process (a `Match` becomes a tuple, an
OrderedDict a dict); anything else becomes {OPAQUE: "its type name"}, which the comparisons report.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import IO, Any

import torch
from torch import Tensor

MAX_FRAME_BYTES = 512 * 2**20  # a larger answer is an error: no test case expects anything near it
OPAQUE = "fpnlab:opaque"  # {OPAQUE: type name}: a value that is not plain data
GRADERS_OWN = "fpnlab:grader"  # the error type of the grader's own messages (a colon: no class is named so)
BUILT = "fpnlab:built"  # {BUILT: "module:Class", ...}: an object the unit's process builds (fpnlab.grading.remote)
LENGTH = struct.Struct(">Q")


class FrameError(Exception):
    """A frame that could not be read: the other side ended, sent too much, or sent what is not plain data."""


def write_frame(stream: IO[bytes], value: Any) -> None:
    """`value` (plain data) onto `stream`, length first, and flush."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    stream.write(LENGTH.pack(buffer.tell()) + buffer.getvalue())
    stream.flush()


def read_frame(stream: IO[bytes], limit: int = MAX_FRAME_BYTES) -> Any:
    """The next value on `stream`; None at its end (the other side closed it before a frame began)."""
    head = _read_exactly(stream, LENGTH.size)
    if head is None:
        return None
    (length,) = LENGTH.unpack(head)
    if length > limit:
        raise FrameError(f"an answer of {length} bytes, over the limit of {limit}")
    body = _read_exactly(stream, length)
    if body is None:
        raise FrameError("the answer ended half-way")
    try:
        return torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")
    except Exception as err:  # weights_only refuses every class it does not know: not plain data
        raise FrameError(f"the answer is not plain data ({type(err).__name__})") from None


def _read_exactly(stream: IO[bytes], count: int) -> bytes | None:
    """`count` bytes from `stream`, or None when it ends first."""
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def to_plain(value: Any, depth: int = 0) -> Any:
    """`value` as plain data: tensors detached on the CPU, tuples (a Match too), lists, dicts with str keys."""
    if depth > 20:
        return {OPAQUE: "a structure nested more than 20 deep"}
    if isinstance(value, Tensor):
        plain = value.detach().cpu()
        return plain if type(plain) is Tensor else plain.as_subclass(Tensor).clone()
    if value is None or type(value) in (bool, int, float, str, torch.dtype, torch.device):
        return value
    if isinstance(value, Mapping) and all(type(key) is str for key in value):
        return {key: to_plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        items = [to_plain(item, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return {OPAQUE: type(value).__name__}


def opaque_name(value: Any) -> str | None:
    """The type name an opaque value stands for, or None for plain data."""
    return value.get(OPAQUE) if isinstance(value, dict) and set(value) == {OPAQUE} else None
