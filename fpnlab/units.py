"""The graded assignment's units: the functions students write, what runs while one is not done, and `check`.

The student release (assignments/README.md) is a copy of fpnlab in which the code of each unit, between
`# BEGIN UNIT <name>` and `# END UNIT <name>`, is a stub returning `todo(name, ...)`: torchvision's
equivalent with a one-line notice, so a student stuck on one unit can go on, or NotImplementedError naming
the unit and its notebook section. In the notebook, `check("fpn")` runs a unit's visible tests.

A test case runs the student's code inside `checking(name)`: the unit's code must pass `refusal` (no
torchvision, no lab version of the same computation), its fallback is off, and torchvision stands in for
every *other* unit it has an equivalent of, so a wrong `iou` costs `iou`'s points only, not `nms`'s.
`strict()` turns every fallback off (the capstone), as does FPNLAB_UNITS_FALLBACK=0 (the autograder).
"""
from __future__ import annotations

import ast
import os
import re
import signal
import textwrap
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops.poolers import LevelMapper

from fpnlab.errors import FpnlabError

PACKAGE = Path(__file__).resolve().parent
MARKER = re.compile(r"^\s*# (BEGIN|END) UNIT (\w+)\s*$")
TIME_LIMIT_S = 120.0  # per checked case: an endless loop fails its case instead of stalling the grading
DEVICE = torch.device(os.environ.get("FPNLAB_UNITS_DEVICE", "cpu"))  # where the test cases put their tensors
# Names no unit's code may use: torchvision, the fallback machinery, ways around both (`units.todo` is allowed).
BANNED = frozenset({"torchvision", "units", "__import__", "importlib", "exec", "eval", "compile", "globals",
                    "getattr", "setattr", "sys", "os", "subprocess"})


@dataclass(frozen=True)
class Unit:
    """One function a student writes: where it lives, where the notebook teaches it, what it may not call."""

    module: str  # file under fpnlab/
    function: str  # qualified name in that module
    section: str  # the notebook section that introduces it
    forbidden: tuple[str, ...] = ()  # the lab's own functions that already compute the same thing


UNITS: dict[str, Unit] = {
    "area": Unit("boxes.py", "box_area", "1.1 Box area"),
    "iou": Unit("boxes.py", "_iou", "1.2 Intersection over union", ("box_iou",)),
    "encode": Unit("boxes.py", "BoxCoder.encode", "1.3 Boxes to regression targets"),
    "decode": Unit("boxes.py", "BoxCoder.decode", "1.4 Regression targets to boxes"),
    "nms": Unit("boxes.py", "_nms_reference", "1.5 NMS", ("nms", "_nms", "nms_reference", "batched_nms")),
    "backbone": Unit("backbone.py", "ResNetBody.forward", "2.1 Bottom-up pathway"),
    "fpn": Unit("fpn.py", "FPN.forward", "2.2 Top-down pathway and lateral connections"),
    "cell_anchors": Unit("anchors.py", "AnchorGenerator.cell_anchors", "3.1 The anchors of one cell"),
    "grid_anchors": Unit("anchors.py", "AnchorGenerator._level_anchors", "3.2 Anchors on a grid", ("grid_anchors",)),
    "flatten_objectness": Unit("rpn.py", "flatten_objectness", "4.1 RPN outputs in anchor order"),
    "flatten_deltas": Unit("rpn.py", "flatten_deltas", "4.1 RPN outputs in anchor order"),
    "matcher": Unit("matching.py", "Matcher.__call__", "4.2 Matching anchors to objects"),
    "sampler": Unit("matching.py", "BalancedPositiveNegativeSampler.__call__", "4.3 The balanced sample"),
    "filter_image": Unit("rpn.py", "RegionProposalNetwork.filter_image", "4.4 Choosing proposals"),
    "rpn_loss": Unit("rpn.py", "RegionProposalNetwork.loss", "4.5 The RPN's losses"),
    "assign_levels": Unit("levels.py", "assign_levels", "5.1 Eq. 1: which level pools a ROI"),
    "roi_align": Unit("poolers.py", "_sample_weights", "5.2 RoIAlign's bilinear samples", ("roi_align",)),
    "pooler": Unit("poolers.py", "MultiScaleRoIPooler.forward", "5.3 Pooling from the pyramid"),
    "roi_loss": Unit("roi_heads.py", "RoIHeads.loss", "6.1 The Fast R-CNN losses"),
    "detect_image": Unit("roi_heads.py", "RoIHeads.detect_image", "6.2 Detections of one image"),
}


# --- torchvision's equivalents: the fallback while a unit is not done, the stand-in while another is checked

def _matcher(matcher: Any, iou: Tensor) -> Tensor:
    if iou.numel() == 0:  # torchvision refuses an empty matrix; no objects means background everywhere
        return torch.full((iou.shape[1],), -1, dtype=torch.int64, device=iou.device)
    return det_utils.Matcher(matcher.high_threshold, matcher.low_threshold, matcher.allow_low_quality_matches)(iou)


def _sampler(sampler: Any, labels: Tensor) -> tuple[Tensor, Tensor]:
    tv = det_utils.BalancedPositiveNegativeSampler(sampler.batch_size_per_image, sampler.positive_fraction)
    positive, negative = tv([labels])  # one mask each per image
    return torch.where(positive[0])[0], torch.where(negative[0])[0]


LAYERS = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
FALLBACKS: dict[str, tuple[str, Callable[..., Any]]] = {  # unit -> (what stands in, how it is called)
    "area": ("torchvision.ops.box_area", torchvision.ops.box_area),
    "iou": ("torchvision.ops.box_iou", torchvision.ops.box_iou),
    "encode": ("torchvision's BoxCoder.encode_single", lambda coder, gt, proposals: det_utils.BoxCoder(
        coder.weights, coder.bbox_xform_clip).encode_single(gt, proposals)),
    "decode": ("torchvision's BoxCoder.decode_single", lambda coder, deltas, boxes: det_utils.BoxCoder(
        coder.weights, coder.bbox_xform_clip).decode_single(deltas, boxes)),
    "nms": ("torchvision.ops.nms", torchvision.ops.nms),
    "backbone": ("torchvision's IntermediateLayerGetter", lambda body, images: IntermediateLayerGetter(
        body, LAYERS)(images)),
    "cell_anchors": ("torchvision's AnchorGenerator.generate_anchors", lambda generator, level: TvAnchorGenerator(
        ).generate_anchors(generator.sizes[level], generator.aspect_ratios[level])),
    "flatten_objectness": ("torchvision's concat_box_prediction_layers", lambda logits: concat_box_prediction_layers(
        [logits], [logits.repeat(1, 4, 1, 1)])[0].reshape(logits.shape[0], -1)),  # any deltas of the right shape
    "flatten_deltas": ("torchvision's concat_box_prediction_layers", lambda deltas: concat_box_prediction_layers(
        [deltas[:, ::4]], [deltas])[1].reshape(deltas.shape[0], -1, 4)),  # any logits of the right shape
    "matcher": ("torchvision's Matcher", _matcher),
    "sampler": ("torchvision's BalancedPositiveNegativeSampler", _sampler),
    "assign_levels": ("torchvision's LevelMapper", lambda boxes, k_min, k_max, size, level: LevelMapper(
        k_min, k_max, size, level)([boxes]) + k_min),
}


# --- the switch -------------------------------------------------------------------------------------------

_strict = False
_checking: str | None = None  # the unit whose test case is running
_noticed: set[str] = set()  # units whose fallback notice was shown


def where(unit: str) -> str:
    """Where to write `unit`: its function, file and notebook section."""
    found = UNITS[unit]
    return f"write the body of {found.function} in fpnlab/{found.module} (notebook section {found.section})"


def fallback_enabled() -> bool:
    """True when a unit not done runs torchvision's equivalent: not while checking, strict() or FALLBACK=0."""
    return not _strict and _checking is None and os.environ.get("FPNLAB_UNITS_FALLBACK", "1") != "0"


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
            print(f"[fpnlab.units] {unit} is not done yet, {FALLBACKS[unit][0]} stands in: {where(unit)}.")
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


# --- the code between the markers ------------------------------------------------------------------------

def regions(source: str, path: str = "source") -> dict[str, tuple[int, int]]:
    """Unit name -> 0-based line numbers of its '# BEGIN UNIT name' and '# END UNIT name' lines in `source`."""
    found: dict[str, tuple[int, int]] = {}
    open_unit: tuple[str, int] | None = None
    for number, line in enumerate(source.splitlines()):
        match = MARKER.match(line)
        if match is None:
            continue
        kind, name = match.groups()
        if kind == "BEGIN" and (open_unit is not None or name in found):
            raise FpnlabError(f"{path}, line {number + 1}: unit {name!r} begins inside another unit or twice.")
        if kind == "END" and (open_unit is None or open_unit[0] != name):
            raise FpnlabError(f"{path}, line {number + 1}: '# END UNIT {name}' has no '# BEGIN UNIT {name}' above it.")
        if kind == "BEGIN":
            open_unit = (name, number)
        else:
            found[name], open_unit = (open_unit[1], number), None
    if open_unit is not None:
        raise FpnlabError(f"{path}: '# BEGIN UNIT {open_unit[0]}' has no '# END UNIT {open_unit[0]}' below it.")
    return found


def unit_code(unit: str) -> tuple[str, int]:
    """The code between `unit`'s markers in the fpnlab that is imported, dedented, and the line number of its
    BEGIN marker: line n of the code is line n + that of the file."""
    lines = (PACKAGE / UNITS[unit].module).read_text(encoding="utf-8").splitlines()
    found = regions("\n".join(lines), f"fpnlab/{UNITS[unit].module}")
    if unit not in found:
        raise AssertionError(f"the markers of unit {unit!r} are missing from fpnlab/{UNITS[unit].module}; put "
                             f"'# BEGIN UNIT {unit}' and '# END UNIT {unit}' back around its code.")
    begin, end = found[unit]
    return textwrap.dedent("\n".join(lines[begin + 1:end])), begin + 1


def refusal(unit: str) -> str | None:
    """Why the code of `unit` cannot earn points, or None: it uses torchvision, the fallback machinery or the lab's
    own version of the same computation (any of which would do the work), or it imports something."""
    code, offset = unit_code(unit)
    where = f"fpnlab/{UNITS[unit].module}"
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        return f"unit {unit!r} does not parse: {err.msg} ({where}, line {offset + (err.lineno or 0)})."
    allowed = {id(node.value) for node in ast.walk(tree)  # units.todo: what an untouched stub returns
               if isinstance(node, ast.Attribute) and node.attr == "todo" and getattr(node.value, "id", "") == "units"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return (f"unit {unit!r} imports inside its code ({where}, line {offset + node.lineno}); only the code "
                    "between the markers is graded, so use what its module imports already (torch, F, math...).")
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if id(node) not in allowed and (name in BANNED or name in UNITS[unit].forbidden):
            found.append((name not in BANNED, node.lineno, name))
    if not found:
        return None
    lab, line, name = min(found)
    why = "the lab's own version of this computation" if lab else "torchvision and the fallback may not do its work"
    return (f"unit {unit!r} uses {name!r} ({where}, line {offset + line}): {why}; write it with torch operations. "
            "As it is, the unit earns no points.")


# --- checking in the notebook ------------------------------------------------------------------------------

def test_file(unit: str, tests: str | Path | None = None) -> Path:
    """The otter test file of `unit`, in `tests`, else $FPNLAB_UNIT_TESTS, else the release's tests/ folder."""
    path = Path(tests or os.environ.get("FPNLAB_UNIT_TESTS") or PACKAGE.parent / "tests") / f"{unit}.py"
    if not path.is_file():
        raise FpnlabError(f"there is no test file {path}; the units are {', '.join(UNITS)}, with 'capstone' and "
                          "'analysis'.")
    return path


def load_cases(path: Path) -> list[Any]:
    """The test cases of an otter exception-style test file (its `test_case` objects), in file order."""
    env: dict[str, Any] = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), env)
    return [value for value in env.values() if hasattr(value, "test_func") and hasattr(value, "hidden")]


def explain(err: BaseException) -> str:
    """One line for a failed case: an assertion's own words, or the error and where in fpnlab it was raised."""
    if isinstance(err, (AssertionError, NotImplementedError, TimeoutError)):
        return str(err)
    ours = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve().parent == PACKAGE]
    place = f" (fpnlab/{Path(ours[-1].filename).name}, line {ours[-1].lineno})" if ours else ""
    return f"{type(err).__name__}: {err}{place}"


def check(unit: str, tests: str | Path | None = None) -> bool:
    """Run `unit`'s visible test cases, with its fallback off, and print which pass and, in words, what is wrong
    in the others. True when all pass."""
    cases = [case for case in load_cases(test_file(unit, tests)) if not case.hidden]
    failed = {}
    for case in cases:
        try:
            case.call_func({})
        except Exception as err:  # the student's code may raise anything: each is a finding to report
            failed[case.name] = explain(err)
    lines = [f"{unit}: {len(cases) - len(failed)} of {len(cases)} visible cases pass."]
    for case in cases:
        why = failed.get(case.name)
        lines.append(f"  ✓ {case.name}" if why is None else f"  ✗ {case.name}\n" + textwrap.indent(why, " " * 6))
    print("\n".join(lines))
    return not failed


# --- what the test cases compare with ---------------------------------------------------------------------

def expect_tensor(got: Any, expected: Tensor, what: str) -> Tensor:
    """`got` on the CPU, after an AssertionError in words unless it is a tensor of expected's shape and dtype."""
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(expected.shape):
        shape = f"shape {tuple(got.shape)}" if isinstance(got, Tensor) else f"a {type(got).__name__}"
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
    raise AssertionError(f"{what}: {int((~ok).sum())} of {ok.numel()} values differ by more than a relative "
                         f"{rtol:g}; the worst, at {list(index)}: got {got[index].item():.6g}, expected "
                         f"{expected[index].item():.6g}.")


def expect_equal(got: Any, expected: Tensor, what: str) -> None:
    """AssertionError in words unless `got` is exactly `expected` (indices, labels, levels)."""
    got, expected = expect_tensor(got, expected, what), expected.detach().cpu()
    if torch.equal(got, expected):
        return
    if got.numel() <= 16:
        raise AssertionError(f"{what}: got {got.tolist()}, expected {expected.tolist()}.")
    first = tuple(int(i) for i in (got != expected).nonzero()[0])
    raise AssertionError(f"{what}: {int((got != expected).sum())} of {got.numel()} values differ; the first, at "
                         f"{list(first)}: got {got[first].item()}, expected {expected[first].item()}.")
