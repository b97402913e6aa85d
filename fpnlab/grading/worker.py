"""Inside a unit's own process (fpnlab.grading.process starts it): build, call the student's code, answer.

Each request names what to call (a function of fpnlab, or an object to rebuild and one of its methods) and
its arguments, all plain data. The call runs inside `checking(unit)`: the unit's code must pass the
refusals, its fallback is off and torchvision stands in for the other units; a grading job runs inside
`strict()` instead (every unit the student's own). The answer is {"ok": plain result} or {"error": what
went wrong, where in fpnlab, and the message}. What the student's code prints goes to stderr: the answers
have stdout to themselves.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fpnlab.grading.frames import BUILT, GRADERS_OWN, read_frame, to_plain, write_frame
from fpnlab.grading.markers import PACKAGE, refusal
from fpnlab.grading.registry import UNITS
from fpnlab.grading.runtime import checking, strict

GRADER = PACKAGE / "grading"  # an error raised here (a stub's NotImplementedError, a time limit) is the grader's


def main(unit: str) -> None:
    """Answer requests from stdin until it closes."""
    answers = os.fdopen(os.dup(1), "wb")  # the answers keep the real stdout...
    os.dup2(2, 1)  # ...and the student's prints go to stderr
    requests = sys.stdin.buffer
    while (request := read_frame(requests)) is not None:
        write_frame(answers, answer(unit, request))


def answer(unit: str, request: dict[str, Any]) -> dict[str, Any]:
    """{"ok": result} or {"error": {...}} for one request."""
    refused = [reason for name in (UNITS if request["mode"] == "strict" else [unit]) if (reason := refusal(name))]
    if refused:  # a unit's own case, or a job that runs every unit: no refused code runs
        return {"error": {"type": GRADERS_OWN, "message": refused[0]}}
    context: AbstractContextManager[None] = checking(unit) if request["mode"] == "unit" else strict()
    try:
        with context:
            function = callable_of(request["call"])
            args, kwargs = rebuild(request["args"]), rebuild(request["kwargs"])
            grad = request["grad"] if request["mode"] == "unit" else None  # a job (training) sets up its own
            return {"ok": invoke(function, list(args), kwargs, grad)}
    except Exception as err:  # the student's code may raise anything: it is reported, not fatal
        return {"error": described(err)}


def described(err: BaseException) -> dict[str, str]:
    """The error's type, where in fpnlab it was raised, and its message; the grader's own (a stub not done,
    a time limit) as a plain message."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if PACKAGE in Path(f.filename).resolve().parents]
    ours = frames and Path(frames[-1].filename).resolve().parent == GRADER
    if ours and isinstance(err, (NotImplementedError, TimeoutError)):
        return {"type": GRADERS_OWN, "message": str(err)}
    where = (
        f"fpnlab/{Path(frames[-1].filename).resolve().relative_to(PACKAGE).as_posix()}, line {frames[-1].lineno}"
        if frames
        else ""
    )
    return {"type": type(err).__name__, "where": where, "message": str(err)}


def invoke(function: Any, args: list[Any], kwargs: dict[str, Any], grad: list[int] | None) -> Any:
    """function(*args, **kwargs) as plain data, without autograd when `grad` is empty; with `grad`, also the
    gradients of the sum of its floating-point tensors with respect to those arguments (None where it does
    not depend on one); with None (a job), as the function itself sets autograd up."""
    if grad is None:
        return to_plain(function(*args, **kwargs))
    if not grad:
        with torch.no_grad():
            return to_plain(function(*args, **kwargs))
    for index in grad:
        args[index] = args[index].clone().requires_grad_()
    result = function(*args, **kwargs)
    total = [t.sum() for t in floating(result) if t.requires_grad]
    inputs = [args[index] for index in grad]
    grads = torch.autograd.grad(sum(total), inputs, allow_unused=True) if total else [None] * len(inputs)
    return [to_plain(result), [to_plain(g) for g in grads]]


def floating(value: Any) -> list[Tensor]:
    """The floating-point tensors in a result (a tensor, or tensors in dicts, lists and tuples)."""
    if isinstance(value, Tensor):
        return [value] if value.is_floating_point() else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return [tensor for item in items for tensor in floating(item)]


def callable_of(call: dict[str, Any]) -> Any:
    """The function to call: "module:name" resolved, or a rebuilt object (or its method)."""
    if "function" in call:
        return resolve(call["function"])
    obj = rebuild(call["object"])
    return obj if call["method"] is None else getattr(obj, call["method"])


def resolve(path: str) -> Any:
    """ "fpnlab.model.boxes:BoxCoder.encode" -> the object that name stands for, imported here."""
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def rebuild(value: Any) -> Any:
    """`value` with every recipe {BUILT: "module:Class", ...} built: same arguments, the sender's weights and modes."""
    if isinstance(value, dict) and BUILT in value:
        obj = resolve(value[BUILT])(*rebuild(value["args"]), **rebuild(value["kwargs"]))
        if isinstance(obj, nn.Module) and value["state"] is not None:
            obj.load_state_dict(value["state"], assign=True)
            for module, training in zip(obj.modules(), value["training"]):
                module.training = training
        return obj
    if isinstance(value, dict):
        return {key: rebuild(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [rebuild(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value
