"""Typed changes to settings dataclasses: from Python dicts, from `--set key=value` strings, from checkpoints.

    update(cfg, {"lr": 0.01, "model": {"rpn": {"nms_thresh": 0.6}}})    # a checked copy of cfg
    parse_set(["lr=0.01", "model.rpn.nms_thresh=0.6"])
        -> {"lr": 0.01, "model": {"rpn": {"nms_thresh": 0.6}}}

Every name is looked up among the dataclass's fields and every value converted to the field's declared
type (`typing.get_type_hints`, not the text of the annotation) when it is given, so a typo or a wrong
type fails at once, naming the setting and what it expects:

    update(TrainConfig(), {"model": {"rpn": {"nms_tresh": 0.6}}})
    FpnlabError: unknown setting TrainConfig.model.rpn.nms_tresh; known: train, test, nms_thresh, ...
"""

from __future__ import annotations

import ast
import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from fpnlab.errors import FpnlabError

T = TypeVar("T")


def update(obj: T, values: Mapping[str, Any], where: str | None = None) -> T:
    """A copy of the dataclass `obj` with `values` applied; a nested dataclass takes a nested dict.

    The copy is made by the dataclass's own constructor, so its checks (`__post_init__`) run too.
    """
    where = where or type(obj).__name__
    if not isinstance(values, Mapping):
        raise FpnlabError(f"{where} expects a dict of settings, got {values!r}.")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    changes = {}
    for name, value in values.items():
        if name not in names:
            raise FpnlabError(f"unknown setting {where}.{name}; known: {', '.join(names)}.")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[name] = update(current, value, f"{where}.{name}")
        else:
            changes[name] = coerce(value, hints[name], f"{where}.{name}")
    return dataclasses.replace(obj, **changes)


def coerce(value: Any, kind: Any, where: str) -> Any:
    """`value` as type `kind` (int, float, bool, str, X | None, tuple[X, ...], a dataclass), else FpnlabError.

    Integers are accepted where a float is expected, lists where a tuple is, a single number where
    a tuple of numbers is (`lr_steps=0.5` -> (0.5,)), and a comma-separated string where a tuple is
    (`levels="p2,p3,p4,p5"`, the command line's form); nothing else is converted. A float must be finite.
    """
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, where)
            except FpnlabError:
                pass
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(value, str) and "," in value:
            value = [literal(part.strip()) for part in value.split(",") if part.strip()]
        items = value if isinstance(value, (list, tuple)) else [value]
        try:
            return tuple(coerce(item, args[0], where) for item in items)
        except FpnlabError:
            pass
    elif dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if isinstance(value, Mapping):
            return update(kind(), value, where)
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise FpnlabError(f"{where} expects a finite number, got {value!r}.")
        return float(value)
    elif kind in (int, bool, str) and type(value) is kind:
        return value
    raise FpnlabError(f"{where} expects {type_name(kind)}, got {value!r}.")


def type_name(kind: Any) -> str:
    """How a type reads in an error message: 'int', 'float | None', 'tuple[float, ...]'."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is tuple:
        return f"tuple[{type_name(args[0])}, ...]"
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))


@contextmanager
def temporarily(owner: Any, allowed: tuple[str, ...], values: Mapping[str, Any]) -> Iterator[None]:
    """`owner.config` with `values` applied inside a ``with`` block, restored afterwards.

    Only the settings named in `allowed` may change (those read at every call, not at construction).
    """
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise FpnlabError(f"{type(owner).__name__}.settings takes {', '.join(allowed)}, not {', '.join(unknown)}.")
    saved = owner.config
    owner.config = update(saved, values)
    try:
        yield
    finally:
        owner.config = saved


# --- the command line ---------------------------------------------------------------------------------


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` strings -> nested overrides; a dotted key reaches into nested settings.

    Values are Python literals (`0.01`, `(0.5, 0.9)`, `1,2`) or `true` / `false` / `none`; anything else
    stays a string (`model.norm=gn`).
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise FpnlabError(f"--set expects key=value (e.g. lr=0.01 or model.rpn.nms_thresh=0.6), got {item!r}.")
        *parents, name = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FpnlabError(f"--set {item!r}: {part} was already given a value.")
        node[name] = literal(text)
    return overrides


def literal(text: str) -> Any:
    """'0.01' -> 0.01, 'true' -> True, 'none' -> None, '1,2' -> (1, 2), 'resnet18' -> 'resnet18'."""
    spelled = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in spelled:
        return spelled[text.lower()]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    return tuple(value) if isinstance(value, list) else value
