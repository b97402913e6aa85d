"""Test cases call a unit in its own process and get plain tensors back: the verdict stays in the caller.

    got = units.run("iou", boxes._iou, a, b)                      # _iou(a, b) in the unit's process
    matcher = units.build(matching.Matcher, 0.7, 0.3, True)        # built here and there alike
    got = units.run("matcher", matcher, iou)                       # matcher(iou) there
    got = units.run("rpn_loss", net.method("loss"), *inputs, grad=(0, 1))   # (losses, gradients of args 0, 1)

A case builds its inputs and computes its expected values here, with torchvision or by hand; only the
inputs travel (fpnlab.grading.frames), and only the result comes back. The unit's process is fresh for each
unit (fpnlab.grading.process) and imports the student's package alone: nothing the student's code does can
reach the expected values, the comparisons or the grader. An object built with `build` is rebuilt there
from the same class and arguments, with this side's weights (nn.Module state) and train/eval modes.
"""

from __future__ import annotations

import atexit
import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from fpnlab.grading.frames import BUILT, GRADERS_OWN
from fpnlab.grading.markers import PACKAGE, refusal, unit_code
from fpnlab.grading.process import Setup, UnitProcess
from fpnlab.grading.registry import UNITS, where

YOURS = " | your code's message: "  # what follows it in a failure comes from the student's code


@dataclass
class Built:
    """An object built here (`obj`) and rebuilt in the unit's process from the same class and arguments."""

    obj: Any
    cls: type
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def method(self, name: str) -> Call:
        """Call `obj.<name>` in the unit's process instead of `obj` itself."""
        return Call(self, name)


@dataclass(frozen=True)
class Call:
    built: Built
    method: str


_setup: Setup | None = None
_workers: dict[str, UnitProcess] = {}


def configure(setup: Setup | None) -> None:
    """Where units' processes come from from now on (None: the fpnlab this module belongs to, for `check`)."""
    global _setup
    close_all()
    _setup = setup


def current_setup() -> Setup:
    return _setup if _setup is not None else Setup(package=PACKAGE.parent)


def build(cls: type, *args: Any, **kwargs: Any) -> Built:
    """`cls(*args, **kwargs)` here (Built arguments become their objects), to be rebuilt in a unit's process."""
    return Built(cls(*_objects(args), **_objects(kwargs)), cls, args, kwargs)


def run(unit: str, target: Any, *args: Any, grad: tuple[int, ...] | None = None, **kwargs: Any) -> Any:
    """`target(*args, **kwargs)` in `unit`'s process, the unit checked (fallback off, stand-ins for the others).

    `target` is a function of fpnlab (or "module:function"), a Built (called) or a Built's `method`.
    Returns the result as plain data; with `grad`, (result, gradients of the sum of its floating-point
    tensors with respect to those positional arguments). A failure there is an AssertionError here.
    """
    return ask(unit, {"mode": "unit", "call": _target(target), "args": _spec(args), "kwargs": _spec(kwargs)}, grad)


def run_job(unit: str, target: str, *args: Any, time_limit_s: float | None = None) -> Any:
    """A grading job ("module:function") in a fresh process of its own with every fallback off (the capstone)."""
    request = {"mode": "strict", "call": {"function": target}, "args": _spec(args), "kwargs": {}}
    try:
        return ask(unit, request, None, time_limit_s)
    finally:
        close(unit)


def ask(unit: str, request: dict[str, Any], grad: tuple[int, ...] | None, time_limit_s: float | None = None) -> Any:
    """Send `request` to `unit`'s process (started when it has none alive); its answer, or AssertionError."""
    setup, upcoming = current_setup(), _next(unit)
    for other in [name for name in _workers if name not in (unit, upcoming)]:
        close(other)  # a unit's process never outlives its cases
    if (reason := _not_run(unit, setup)) is not None and request["mode"] == "unit":
        raise AssertionError(reason)  # refused on sight: no process needed
    worker = _workers.get(unit)
    if worker is None or not worker.alive():
        worker = _workers[unit] = UnitProcess(unit, setup)
    if upcoming is not None and upcoming not in _workers and _not_run(upcoming, setup) is None:
        _workers[upcoming] = UnitProcess(upcoming, setup)  # it imports while this unit's cases run
    answer = worker.ask({**request, "grad": list(grad or ())}, time_limit_s)
    if not isinstance(answer, dict):
        raise AssertionError(f"unit {unit!r}'s process sent an answer the grader cannot read.")
    if "ok" in answer:
        return answer["ok"]
    raise AssertionError(failure(answer.get("error", {})))


def _not_run(unit: str, setup: Setup) -> str | None:
    """Why `unit`'s code is not run at all (not taken from the submission, or refused), or None."""
    if unit in setup.not_graded:
        return f"unit {unit!r} was not graded: {setup.not_graded[unit]}"
    if unit not in UNITS:
        return None
    if setup.release is not None and unit_code(unit, setup.release) == unit_code(unit, setup.package / "fpnlab"):
        return f"unit {unit!r} is not done yet: {where(unit)}."  # the release's stub, as it came
    return refusal(unit, setup.package / "fpnlab")


def _next(unit: str) -> str | None:
    """The unit graded after `unit` (Setup.order), whose process may start now."""
    order = current_setup().order
    return order[order.index(unit) + 1] if unit in order[:-1] else None


def failure(error: dict[str, Any]) -> str:
    """One line for a failure in the unit's process: ours first; after YOURS, the message of the student's code."""
    kind, location, message = error.get("type", "Error"), error.get("where", ""), error.get("message", "")
    if kind == GRADERS_OWN:  # a refusal, a stub not done, a time limit: no class of a student's is named so
        return str(message)
    place = f" ({location})" if location else ""
    text = " ".join(str(message).split())[:300]
    return f"your code raised {kind}{place}{YOURS}{text}" if text else f"your code raised {kind}{place}."


def refused_units() -> list[str]:
    """The units whose code the grader does not take or refuses (the capstone needs none of them)."""
    setup = current_setup()
    return [unit for unit in UNITS if _not_run(unit, setup) is not None]


def output(unit: str) -> str:
    """What `unit`'s code printed in its process so far."""
    worker = _workers.get(unit)
    return worker.output() if worker is not None else ""


def close(unit: str) -> None:
    worker = _workers.pop(unit, None)
    if worker is not None:
        worker.close()


@atexit.register
def close_all() -> None:
    for unit in list(_workers):
        close(unit)


def _target(target: Any) -> dict[str, Any]:
    if isinstance(target, str):
        return {"function": target}
    if isinstance(target, Built):
        return {"object": _spec(target), "method": None}
    if isinstance(target, Call):
        return {"object": _spec(target.built), "method": target.method}
    return {"function": f"{target.__module__}:{target.__qualname__}"}


def _spec(value: Any) -> Any:
    """`value` as plain data for the unit's process: tensors detached, Built objects and settings (frozen
    dataclasses) as their recipe."""
    if isinstance(value, Built):
        module = value.obj if isinstance(value.obj, nn.Module) else None
        return {
            BUILT: f"{value.cls.__module__}:{value.cls.__qualname__}",
            "args": _spec(value.args),
            "kwargs": _spec(value.kwargs),
            "state": None if module is None else {k: v.detach() for k, v in module.state_dict().items()},
            "training": None if module is None else [m.training for m in module.modules()],
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a setting: rebuilt from its fields
        fields = {f.name: _spec(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {
            BUILT: f"{type(value).__module__}:{type(value).__qualname__}",
            "args": (),
            "kwargs": fields,
            "state": None,
        }
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        items = [_spec(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {key: _spec(item) for key, item in value.items()}
    return value


def _objects(value: Any) -> Any:
    """`value` with each Built replaced by its object (the arguments of a `build` here)."""
    if isinstance(value, Built):
        return value.obj
    if isinstance(value, (list, tuple)):
        return type(value)(_objects(item) for item in value)
    if isinstance(value, dict):
        return {key: _objects(item) for key, item in value.items()}
    return value
