"""The switch a unit's stub and its test cases turn: the student's code, torchvision's fallback, or a stand-in.

The student release's stubs call this module under the name `units` (assignments/stubs.py):

    return units.todo("iou", boxes1, boxes2)         # an untouched stub: torchvision with a notice, or an error
    if units.stand_in("iou"): return units.fallback("iou", boxes1, boxes2)   # while another unit is checked

A unit's process (fpnlab.grading.worker) runs the student's code inside `checking(name)`: the unit's code
must pass fpnlab.grading.markers.refusal, its fallback is off, and torchvision stands in for every *other*
unit it has an equivalent of. `strict()` turns every fallback off (the capstone's jobs).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fpnlab.grading.fallbacks import FALLBACKS
from fpnlab.grading.markers import refusal
from fpnlab.grading.registry import where

TIME_LIMIT_S = 120.0  # per checked case: an endless loop fails its case instead of stalling the grading

_strict = False
_checking: str | None = None  # the unit whose test case is running
_noticed: set[str] = set()  # units whose fallback notice was shown


def fallback_enabled() -> bool:
    """True when a unit not done runs torchvision's equivalent: not while checking nor inside strict()."""
    return not _strict and _checking is None


@contextmanager
def strict() -> Iterator[None]:
    """Inside a `with` block every unit runs the student's own code: no fallback, no stand-in (the capstone)."""
    global _strict
    previous, _strict = _strict, True
    try:
        yield
    finally:
        _strict = previous


def stand_in(unit: str) -> bool:
    """True while another unit is checked and torchvision's equivalent of `unit` replaces the student's code."""
    return _checking is not None and unit != _checking and unit in FALLBACKS


def fallback(unit: str, *args: Any) -> Any:
    """torchvision's equivalent of `unit`, called with the unit's own arguments (self first for a method)."""
    return FALLBACKS[unit][1](*args)


def todo(unit: str, *args: Any) -> Any:
    """What a stub returns: torchvision's equivalent, with a one-line notice the first time, while fallbacks are
    on and torchvision has one; NotImplementedError naming the unit and its notebook section otherwise."""
    if unit in FALLBACKS and fallback_enabled():
        if unit not in _noticed:
            _noticed.add(unit)
            print(f"[fpnlab] {unit} is not done yet, {FALLBACKS[unit][0]} stands in: {where(unit)}.")
        return fallback(unit, *args)
    raise NotImplementedError(f"unit {unit!r} is not done yet: {where(unit)}.")


@contextmanager
def checking(unit: str, time_limit_s: float = TIME_LIMIT_S) -> Iterator[None]:
    """Run a test case of `unit` inside a `with` block: AssertionError at once when its code is refused (the
    unit loses every case), its fallback off, torchvision standing in for the other units, a time limit."""
    global _checking
    if (reason := refusal(unit)) is not None:
        raise AssertionError(reason)
    previous, _checking = _checking, unit
    try:
        with _time_limit(unit, time_limit_s):
            yield
    finally:
        _checking = previous


@contextmanager
def _time_limit(unit: str, seconds: float) -> Iterator[None]:
    """TimeoutError after `seconds` (SIGALRM, so only in the main thread of a POSIX process; elsewhere none)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"unit {unit!r} took longer than {seconds:g} s on one test case: an endless loop?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
