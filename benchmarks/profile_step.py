"""Where one fpnlab training step and one inference step spend their time (torch.profiler).

    python benchmarks/profile_step.py                         # R50-FPN as in detector_speed.py, this device
    python benchmarks/profile_step.py --device cpu --model cpu   # the cpu preset's small detector
    python benchmarks/profile_step.py --model torchvision     # the same tables for torchvision's R50-FPN
    python benchmarks/profile_step.py --trace /tmp/step       # also write Chrome traces (chrome://tracing)

Printed for each step:
  stages    time inside each submodule of the detector (transform, backbone, neck, rpn, roi_heads;
            "other" is the forward's own code: input checks, mapping boxes back), the backward pass
            and the optimizer step, with the number of ops and of sync ops each ran;
  per image ops that run once more for every extra image in the batch (the step is profiled at
            batch 1 and at --batch): per-image Python loops, by stage;
  top ops   by self time (CPU time on a CPU, GPU kernel time on CUDA).
Sync ops are those that make the host wait for the device: .item()/bool()/int() of a tensor
(aten::_local_scalar_dense), nonzero (torch.where(mask), boolean indexing) and unique; on a CPU they cost
nothing but are counted because each one stalls the GPU pipeline. On CUDA the number of synchronising
calls reported by torch.cuda.set_sync_debug_mode is printed too.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from detector_speed import PRECISIONS, Settings, autocast, default_settings, make_batch, synchronize
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from fpnlab.engine.presets import PRESETS
from fpnlab.model.config import DetectorConfig, upgrade_flat_layout
from fpnlab.model.detector import build_detector
from fpnlab.results import write_result

SYNC_OPS = (
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::_unique2",
    "aten::unique_consecutive",
    "aten::unique_dim",
)
STAGE_PREFIX = "stage:"


@dataclass
class StepProfile:
    """One profiled step: its events and, on CUDA, the synchronising calls counted by torch."""

    events: list[Any]  # torch.autograd.profiler_util.FunctionEvent
    wall_ms: float
    cuda_syncs: int | None


# --- the model --------------------------------------------------------------------------------------


def build_model(kind: str, settings: Settings) -> nn.Module:
    """ "r50": R50-FPN like torchvision's fasterrcnn_resnet50_fpn with random weights (BatchNorm, all layers
    trained); "cpu": the cpu preset's small detector; "torchvision": torchvision's own R50-FPN, as the
    baseline to tell fpnlab's overheads from the model's. Images are fed at their size (no resize)."""
    short, long = sorted((settings.height, settings.width))
    torch.manual_seed(settings.seed)
    if kind == "torchvision":
        return fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=short, max_size=long, **settings.heads
        ).to(settings.device)
    if kind == "cpu":
        return build_detector(PRESETS["cpu"].model, num_classes=91, min_size=short, max_size=long).to(settings.device)
    fields = dict(norm="bn", trainable_layers=5, min_size=short, max_size=long, **settings.heads)  # torchvision's names
    return build_detector(DetectorConfig.from_dict(upgrade_flat_layout(fields)), num_classes=91).to(settings.device)


@contextlib.contextmanager
def stage_ranges(model: nn.Module) -> Iterator[None]:
    """Name every forward of a direct submodule "stage:<name>" in the profile (hooks, no code changes)."""
    open_ranges: dict[str, list[record_function]] = collections.defaultdict(list)

    def enter(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            open_ranges[name].append(record_function(STAGE_PREFIX + name))
            open_ranges[name][-1].__enter__()

        return hook

    def leave(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            open_ranges[name].pop().__exit__(None, None, None)

        return hook

    handles = []
    for name, child in model.named_children():
        handles += [child.register_forward_pre_hook(enter(name)), child.register_forward_hook(leave(name))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# --- profiling ----------------------------------------------------------------------------------------


def step_function(model: nn.Module, settings: Settings, batch: int, train: bool, precision: str) -> Callable[[], None]:
    """One training step (forward, backward, SGD step) or one inference call, on a fixed random batch."""
    images, targets = make_batch(settings, batch, settings.seed + 1)
    if not train:

        @torch.inference_mode()
        def infer() -> None:
            model.eval()
            with autocast(settings.device, precision):
                model(images)

        return infer
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def train_step() -> None:
        model.train()
        with autocast(settings.device, precision):
            with record_function("stage:forward"):
                loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        with record_function("stage:backward"):
            loss.backward()
        with record_function("stage:optimizer"):
            optimizer.step()

    return train_step


def profile_step(
    step: Callable[[], None], model: nn.Module, device: str, warmup: int, trace: str | None
) -> StepProfile:
    """Run `step` warmup times, then once under the profiler (and, on CUDA, under sync debug mode)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    cuda = device.startswith("cuda")
    with stage_ranges(model), profile(activities=activities, with_stack=True) as prof:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")  # a warning for every implicit synchronisation
            step()
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
            synchronize(device)
            wall_ms = 1000 * (time.perf_counter() - start)
    if trace:
        prof.export_chrome_trace(trace)
    cuda_syncs = sum("synchroniz" in str(w.message) for w in caught) if cuda else None
    return StepProfile(list(prof.events()), wall_ms, cuda_syncs)


# --- reading the events -------------------------------------------------------------------------------


def stage_of(event: Any) -> str:
    """The innermost "stage:" range around an event ("other" when none; backward ops: "backward")."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(STAGE_PREFIX) and parent.name != "stage:forward":
            return parent.name[len(STAGE_PREFIX) :]
        if parent.name.startswith("autograd::engine"):  # CUDA runs backward in a thread of its own
            return "backward"
        parent = parent.cpu_parent
    return "other"


def is_op(event: Any) -> bool:
    return event.name.startswith("aten::")


def self_ms(event: Any, device: str) -> float:
    """Self time of an op in ms: its GPU kernels' time on CUDA, its CPU time otherwise."""
    if device.startswith("cuda"):
        return getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)) / 1000
    return event.self_cpu_time_total / 1000


def stage_table(step: StepProfile, device: str) -> list[dict[str, Any]]:
    """Per stage: time inside its ranges (host ms), its ops' self time (GPU kernels on CUDA), ops launched
    from Python, sync ops."""
    rows: dict[str, dict[str, Any]] = collections.defaultdict(lambda: {"ms": 0.0, "op_ms": 0.0, "ops": 0, "syncs": 0})
    for event in step.events:
        if event.name.startswith(STAGE_PREFIX) and event.name != "stage:forward":
            rows[event.name[len(STAGE_PREFIX) :]]["ms"] += event.cpu_time_total / 1000
        if not is_op(event):
            continue
        row = rows[stage_of(event)]
        row["op_ms"] += self_ms(event, device)
        row["ops"] += is_top_level_op(event)
        row["syncs"] += event.name in SYNC_OPS
    return [{"stage": name, **values} for name, values in rows.items()]


def is_top_level_op(event: Any) -> bool:
    """An aten op called from Python, not from inside another aten op."""
    parent = event.cpu_parent
    return parent is None or not is_op(parent)


def op_counts(step: StepProfile) -> collections.Counter:
    """(stage, op name) -> calls, for top-level ops and sync ops."""
    counts: collections.Counter = collections.Counter()
    for event in step.events:
        if is_op(event) and (is_top_level_op(event) or event.name in SYNC_OPS):
            counts[(stage_of(event), event.name)] += 1
    return counts


def per_image_ops(single: StepProfile, batch: StepProfile, batch_size: int) -> list[tuple[str, str, float]]:
    """(stage, op, extra calls per extra image) for ops whose count grows with the batch: per-image loops."""
    one, many = op_counts(single), op_counts(batch)
    grown = [(stage, op, (many[(stage, op)] - one[(stage, op)]) / (batch_size - 1)) for stage, op in many]
    return sorted((g for g in grown if g[2] >= 1), key=lambda g: -g[2])


def source_line(event: Any) -> str:
    """The innermost fpnlab function the op ran in, like "fpnlab/rpn.py(101): filter_image" (the line
    where the function starts): from the event's Python stack, or its Python-function ancestors."""
    frames = list(event.stack or ())
    parent = event.cpu_parent
    while parent is not None:
        frames.append(parent.name)
        parent = parent.cpu_parent
    for frame in frames:
        if "fpnlab/" in frame and "): " in frame:
            return "fpnlab/" + frame.rsplit("fpnlab/", 1)[1]
    return "(outside fpnlab)"


def line_table(single: StepProfile, batch: StepProfile, batch_size: int, device: str) -> list[dict[str, Any]]:
    """Per fpnlab source line: ops and sync ops added per extra image, and the ops' self ms at full batch."""

    def tally(step: StepProfile) -> dict[str, collections.Counter]:
        ops, syncs, ms = collections.Counter(), collections.Counter(), collections.Counter()
        for event in step.events:
            if is_op(event):
                line = source_line(event)
                ops[line] += is_top_level_op(event)
                syncs[line] += event.name in SYNC_OPS
                ms[line] += self_ms(event, device)
        return {"ops": ops, "syncs": syncs, "ms": ms}

    one, many = tally(single), tally(batch)
    rows = [
        {
            "line": line,
            "ops_per_image": (many["ops"][line] - one["ops"][line]) / (batch_size - 1),
            "syncs_per_image": (many["syncs"][line] - one["syncs"][line]) / (batch_size - 1),
            "syncs": many["syncs"][line],
            "ms": many["ms"][line],
        }
        for line in many["ops"]
    ]
    return sorted(rows, key=lambda r: (-r["syncs"], -r["ops_per_image"], -r["ms"]))


def top_ops(step: StepProfile, device: str, n: int) -> list[tuple[str, int, float]]:
    """(op, calls, self ms) of the n ops with the largest total self time."""
    calls: collections.Counter = collections.Counter()
    ms: dict[str, float] = collections.defaultdict(float)
    for event in step.events:
        if is_op(event):
            calls[event.name] += 1
            ms[event.name] += self_ms(event, device)
    return sorted(((name, calls[name], ms[name]) for name in ms), key=lambda r: -r[2])[:n]


# --- printing -----------------------------------------------------------------------------------------


def report(title: str, single: StepProfile, batch: StepProfile, batch_size: int, device: str, n: int) -> str:
    lines = [
        f"== {title}: batch {batch_size}, {batch.wall_ms:.1f} ms wall (under the profiler)"
        + (
            ""
            if batch.cuda_syncs is None
            else f", {batch.cuda_syncs} synchronising CUDA calls (batch 1: {single.cuda_syncs})"
        )
    ]
    kernel = "GPU" if device.startswith("cuda") else "CPU"
    lines.append(
        f"{'stage':<12}{'host ms':>10}{'op ' + kernel + ' ms':>12}{'ops':>8}{'ops b1':>8}"
        f"{'sync ops':>10}{'sync ops b1':>13}"
    )
    singles = {row["stage"]: row for row in stage_table(single, device)}
    for row in sorted(stage_table(batch, device), key=lambda r: -r["op_ms"]):
        one = singles.get(row["stage"], {})
        lines.append(
            f"{row['stage']:<12}{row['ms']:>10.1f}{row['op_ms']:>12.1f}{row['ops']:>8}{one.get('ops', 0):>8}"
            f"{row['syncs']:>10}{one.get('syncs', 0):>13}"
        )
    grown = per_image_ops(single, batch, batch_size)
    lines.append(f"per-image ops (calls added by each extra image; {sum(g[2] for g in grown):.0f} in all):")
    by_stage: dict[str, list[str]] = collections.defaultdict(list)
    for stage, op, extra in grown:
        by_stage[stage].append(f"{op.removeprefix('aten::')} x{extra:g}")
    for stage, ops in by_stage.items():
        lines.append(f"  {stage:<10} " + ", ".join(ops[:12]) + (" ..." if len(ops) > 12 else ""))
    lines.append(f"fpnlab lines with sync ops or per-image ops (at batch {batch_size}):")
    lines.append(f"  {'line':<58}{'ops/img':>8}{'syncs/img':>10}{'syncs':>7}{'self ms':>9}")
    for row in line_table(single, batch, batch_size, device):
        if row["syncs"] or row["ops_per_image"] >= 1:
            lines.append(
                f"  {row['line'][:58]:<58}{row['ops_per_image']:>8.0f}{row['syncs_per_image']:>10.0f}"
                f"{row['syncs']:>7}{row['ms']:>9.1f}"
            )
    lines.append(f"top {n} ops by self {'GPU' if device.startswith('cuda') else 'CPU'} time:")
    lines.append(f"  {'op':<40}{'calls':>7}{'self ms':>10}")
    for name, calls, ms in top_ops(batch, device, n):
        lines.append(f"  {name:<40}{calls:>7}{ms:>10.2f}")
    return "\n".join(lines)


def summary(single: StepProfile, batch: StepProfile, batch_size: int, device: str) -> dict[str, Any]:
    """The figures worth keeping: sync ops and ops launched, in all and per extra image, and the stages."""

    def totals(step: StepProfile) -> dict[str, int]:
        rows = stage_table(step, device)
        return {"ops": sum(r["ops"] for r in rows), "syncs": sum(r["syncs"] for r in rows)}

    one, many = totals(single), totals(batch)
    return {
        "sync_ops_batch1": one["syncs"],
        f"sync_ops_batch{batch_size}": many["syncs"],
        "sync_ops_per_image": (many["syncs"] - one["syncs"]) / (batch_size - 1),
        "ops_per_image": sum(g[2] for g in per_image_ops(single, batch, batch_size)),
        "wall_ms": round(batch.wall_ms, 1),
        "cuda_syncs": batch.cuda_syncs,
        "stages": stage_table(batch, device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--model",
        choices=("r50", "cpu", "torchvision"),
        default="r50",
        help="fpnlab R50-FPN (default), the cpu preset's detector, or torchvision's R50-FPN",
    )
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch", type=int, help="must be >= 2 (the step is also profiled at batch 1)")
    parser.add_argument("--boxes", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    parser.add_argument("--top", type=int, default=15, help="rows of the top-ops table")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--trace",
        default=None,
        metavar="PREFIX",
        help="write PREFIX-{train,inference}-b{1,BATCH}.json (Chrome trace format)",
    )
    parser.add_argument(
        "--save", action="store_true", help="write the sync and op counts to results/profile_<model>_<device type>.json"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = default_settings(args.device)
    chosen = {
        k: v
        for k, v in dict(height=args.height, width=args.width, batch=args.batch, warmup=args.warmup).items()
        if v is not None
    }
    settings = Settings(
        device=args.device,
        boxes=args.boxes,
        precisions=(args.precision,),
        **{**defaults, "train_iters": 1, "infer_iters": 1, **chosen},
    )
    if settings.batch < 2:
        parser.error("--batch must be >= 2")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = build_model(args.model, settings)
    library = "torchvision" if args.model == "torchvision" else "fpnlab"
    print(
        f"profiling {library} ({args.model}) on {args.device}, {settings.height}x{settings.width}, "
        f"{args.precision}, {settings.boxes} boxes/image"
    )
    summaries = {}
    for train in (True, False):
        name = "train step" if train else "inference"
        steps = [
            profile_step(
                step_function(model, settings, b, train, args.precision),
                model,
                settings.device,
                settings.warmup,
                f"{args.trace}-{name.split()[0]}-b{b}.json" if args.trace else None,
            )
            for b in (1, settings.batch)
        ]
        print(report(name, steps[0], steps[1], settings.batch, settings.device, args.top))
        summaries[name.split()[0]] = summary(steps[0], steps[1], settings.batch, settings.device)
    if args.save:
        name = f"profile_{args.model}_{torch.device(args.device).type}"
        command = shlex.join(["python", "benchmarks/profile_step.py", *(sys.argv[1:] if argv is None else argv)])
        print(f"wrote {write_result(name, {'settings': vars(args), **summaries}, args.device, command)}")


if __name__ == "__main__":
    main()
