"""fpnlab against torchvision's fasterrcnn_resnet50_fpn: same weights, same images, same device (issue 7).

    python benchmarks/detector_speed.py                  # GPU: batch 8 of 800x1216, fp32 (TF32) and bf16
    python benchmarks/detector_speed.py --device cpu     # CPU: small images, few iterations (CI smoke test)
    python benchmarks/detector_speed.py --save           # also write results/benchmark_<device>.json

torchvision's detector is built with random weights (nothing is downloaded) and copied into fpnlab with
fpnlab.model.torchvision_port.from_torchvision, so both compute the same function. Measured, per precision:

    train img/s       forward + backward + SGD step on batches of `--batch` images, ~`--boxes` boxes each
    infer ms/img b1   median latency of one image (eval mode, inference_mode)
    infer img/s       throughput at batch `--batch`
    peak MiB          peak GPU memory above what was allocated before the phase (CUDA only)

and, before any timing, the fp32 detections of both (TF32 off) with their largest absolute difference.
The table's last column is fpnlab / torchvision; the issue's targets (train bf16 >= 1.5x, batch-1 latency
<= 0.7x, memory <= 1x) are checked at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from fpnlab.env import device_name
from fpnlab.model.torchvision_port import from_torchvision
from fpnlab.results import write_result

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
IMPLEMENTATIONS = ("torchvision", "fpnlab")
NUM_CLASSES = 91  # torchvision's COCO head


@dataclass
class Settings:
    device: str
    height: int
    width: int
    batch: int
    boxes: int
    warmup: int
    train_iters: int
    infer_iters: int
    precisions: tuple[str, ...]
    heads: dict[str, int]  # FasterRCNN keyword arguments (proposal and ROI counts); {} = torchvision's defaults
    seed: int = 0


# On a CPU, fewer proposals and ROIs too: torchvision's 512 ROIs per image make the 12544 x 1024 fc6
# layer alone cost ~13 GMAC per image, minutes per step on a laptop.
CPU_HEADS = dict(
    rpn_pre_nms_top_n_train=300,
    rpn_post_nms_top_n_train=300,
    rpn_pre_nms_top_n_test=150,
    rpn_post_nms_top_n_test=150,
    box_batch_size_per_image=64,
    box_detections_per_img=50,
)


def default_settings(device: str) -> dict[str, Any]:
    """The issue's sizes and torchvision's defaults on a GPU; on a CPU small enough for a CI smoke test."""
    if device.startswith("cuda"):
        return dict(height=800, width=1216, batch=8, warmup=5, train_iters=20, infer_iters=30, heads={})
    return dict(height=128, width=192, batch=2, warmup=1, train_iters=2, infer_iters=3, heads=CPU_HEADS)


# --- models and data --------------------------------------------------------------------------------


def build_pair(settings: Settings) -> tuple[nn.Module, nn.Module]:
    """(torchvision's fasterrcnn_resnet50_fpn with random weights, fpnlab's copy of it), on the device.

    The images are given at their final size (min_size/max_size = the image's sides), so neither
    detector resizes them.
    """
    torch.manual_seed(settings.seed)
    short, long = sorted((settings.height, settings.width))
    reference = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=short, max_size=long, **settings.heads
    )
    ours = from_torchvision(reference)
    return reference.to(settings.device), ours.to(settings.device)


def make_batch(settings: Settings, batch: int, seed: int) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """`batch` random images (3, H, W) in [0, 1] with `boxes` random boxes (sides 16 px to half the image)."""
    g = torch.Generator().manual_seed(seed)
    h, w, n = settings.height, settings.width, settings.boxes
    images, targets = [], []
    for _ in range(batch):
        images.append(torch.rand(3, h, w, generator=g))
        sides = 16 + torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) / 2 - 16)  # (n, 2) width, height
        corner = torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) - sides)  # (n, 2) x1, y1
        targets.append(
            {
                "boxes": torch.cat([corner, corner + sides], dim=1),
                "labels": torch.randint(1, NUM_CLASSES, (n,), generator=g),
            }
        )
    device = settings.device
    return [i.to(device) for i in images], [{k: v.to(device) for k, v in t.items()} for t in targets]


# --- timing -----------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def peak_memory(device: str, out: dict[str, float]) -> Iterator[None]:
    """out["peak_mib"]: the peak allocated inside the block above what was allocated before (CUDA only)."""
    if not device.startswith("cuda"):
        yield
        return
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    yield
    out["peak_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20


def train_speed(model: nn.Module, settings: Settings, precision: str) -> dict[str, float]:
    """Images per second of forward + backward + SGD step at batch `settings.batch`; first and last loss."""
    images, targets = make_batch(settings, settings.batch, settings.seed + 1)
    model.train()
    out: dict[str, float] = {}
    with peak_memory(settings.device, out):
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
        losses: list[Tensor] = []

        def step() -> None:
            with autocast(settings.device, precision):
                loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())

        seconds = timed(step, settings.warmup, settings.train_iters, settings.device)
        model.zero_grad(set_to_none=True)  # the next phase starts without gradients, like this one
    out.update(
        train_img_s=settings.batch / statistics.fmean(seconds), first_loss=float(losses[0]), last_loss=float(losses[-1])
    )
    return out


@torch.inference_mode()
def infer_speed(model: nn.Module, settings: Settings, precision: str) -> dict[str, float]:
    """Median batch-1 latency (ms) and batch-`settings.batch` throughput (img/s) in eval mode."""
    model.eval()
    single, _ = make_batch(settings, 1, settings.seed + 2)
    batch, _ = make_batch(settings, settings.batch, settings.seed + 3)

    def run(images: list[Tensor]) -> Callable[[], None]:
        def call() -> None:
            with autocast(settings.device, precision):
                model(images)

        return call

    out: dict[str, float] = {}
    latency = timed(run(single), settings.warmup, settings.infer_iters, settings.device, each=True)
    with peak_memory(settings.device, out):
        seconds = timed(run(batch), settings.warmup, settings.infer_iters, settings.device)
    out.update(latency_ms=1000 * statistics.median(latency), infer_img_s=settings.batch / statistics.fmean(seconds))
    return {f"infer_{k}" if k == "peak_mib" else k: v for k, v in out.items()}


def timed(fn: Callable[[], None], warmup: int, iters: int, device: str, each: bool = False) -> list[float]:
    """Seconds per call of fn over `iters` calls after `warmup` untimed ones: one mean (the device
    synchronised only at both ends, so the host may run ahead as in a training loop), or with `each`
    the seconds of every call (synchronised around each, for latency)."""
    for _ in range(warmup):
        fn()
    if not each:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        synchronize(device)
        return [(time.perf_counter() - start) / iters]
    seconds = []
    for _ in range(iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


# --- equality ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off inside the block: the equality checks compare true fp32 results."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@torch.inference_mode()
def detection_difference(reference: nn.Module, ours: nn.Module, settings: Settings) -> dict[str, Any]:
    """Both detectors' fp32 detections on the same 2 images: counts and largest |difference|."""
    images, _ = make_batch(settings, 2, settings.seed + 4)
    with strict_fp32():
        expected, got = reference.eval()(images), ours.eval()(images)
    expected, got = [canonical_order(d) for d in expected], [canonical_order(d) for d in got]
    counts = [(len(e["boxes"]), len(g["boxes"])) for e, g in zip(expected, got)]
    same_count = all(a == b for a, b in counts)
    diff = {"images": len(images), "detections": counts, "same_count": same_count}
    if same_count:
        diff["max_abs_diff_boxes"] = max(
            (float((e["boxes"] - g["boxes"]).abs().max()) for e, g in zip(expected, got) if len(e["boxes"])),
            default=0.0,
        )
        diff["max_abs_diff_scores"] = max(
            (float((e["scores"] - g["scores"]).abs().max()) for e, g in zip(expected, got) if len(e["scores"])),
            default=0.0,
        )
        diff["labels_equal"] = all(torch.equal(e["labels"], g["labels"]) for e, g in zip(expected, got))
    return diff


@torch.no_grad()
def loss_difference(reference: nn.Module, ours: nn.Module, settings: Settings) -> dict[str, dict[str, float]]:
    """The four training losses of both on one batch, fp32, with the anchors and ROIs sampled from the same
    random stream: {term: {"torchvision", "fpnlab"}}. (BatchNorm statistics move the same way in both.)

    torchvision's transform draws one CPU random number per training image to pick a scale from min_size
    (a 1-tuple here); the same draws are made before fpnlab's forward so that both samplers start alike.
    """
    images, targets = make_batch(settings, settings.batch, settings.seed + 5)
    losses = {}
    with strict_fp32():
        for name, model in zip(IMPLEMENTATIONS, (reference, ours)):
            torch.manual_seed(settings.seed)
            if name == "fpnlab":
                torch.rand(len(images))  # torchvision's per-image scale draws
            losses[name] = {k: float(v) for k, v in model.train()(images, targets).items()}
    return {term: {name: losses[name][term] for name in IMPLEMENTATIONS} for term in losses["torchvision"]}


def canonical_order(detections: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detections sorted by score (descending), then label, then box: exact ties may come in any order."""
    order = torch.arange(len(detections["scores"]), device=detections["scores"].device)
    keys = [detections["boxes"][:, i] for i in reversed(range(4))] + [detections["labels"], -detections["scores"]]
    for key in keys:  # stable sorts, least significant key first
        order = order[torch.sort(key[order], stable=True).indices]
    return {k: v[order] for k, v in detections.items()}


def set_score_threshold(model: nn.Module, threshold: float) -> None:
    """The Fast R-CNN head's score threshold (0 keeps every detection, so random weights still give some)."""
    if hasattr(model.roi_heads, "config"):  # fpnlab: settings live in a BoxHeadConfig
        model.roi_heads.config = dataclasses.replace(model.roi_heads.config, score_thresh=threshold)
    else:  # torchvision
        model.roi_heads.score_thresh = threshold


# --- the table --------------------------------------------------------------------------------------

ROWS = (  # (label, key, higher is better)
    ("train img/s", "train_img_s", True),
    ("infer ms/img b1", "latency_ms", False),
    ("infer img/s", "infer_img_s", True),
    ("peak train MiB", "peak_mib", False),
    ("peak infer MiB", "infer_peak_mib", False),
)


def table_rows(measured: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """[{"metric", "precision", "torchvision", "fpnlab", "ratio"}] for every figure both implementations have."""
    rows = []
    for precision, by_impl in measured.items():
        for label, key, _ in ROWS:
            if key in by_impl["torchvision"] and key in by_impl["fpnlab"]:
                tv, ours = by_impl["torchvision"][key], by_impl["fpnlab"][key]
                rows.append(
                    {
                        "metric": label,
                        "precision": precision,
                        "torchvision": round(tv, 3),
                        "fpnlab": round(ours, 3),
                        "ratio": round(ours / tv, 3) if tv else None,
                    }
                )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'metric':<17}{'precision':>10}{'torchvision':>13}{'fpnlab':>11}{'fpnlab/torchvision':>20}"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(f"{r['metric']:<17}{r['precision']:>10}{r['torchvision']:>13.2f}{r['fpnlab']:>11.2f}{ratio:>20}")
    return "\n".join(lines)


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each as 'target: measured -> met / NOT met' (only those measured)."""

    def ratio(metric: str, precision: str) -> float | None:
        return next((r["ratio"] for r in rows if r["metric"] == metric and r["precision"] == precision), None)

    checks = [
        ("train img/s bf16 >= 1.5x torchvision", ratio("train img/s", "bf16"), lambda x: x >= 1.5),
        ("batch-1 latency fp32 <= 0.7x torchvision", ratio("infer ms/img b1", "fp32"), lambda x: x <= 0.7),
        ("peak train memory bf16 <= torchvision", ratio("peak train MiB", "bf16"), lambda x: x <= 1.0),
    ]
    return [
        f"{name}: {value:.2f}x -> {'met' if ok(value) else 'NOT met'}"
        for name, value, ok in checks
        if value is not None
    ]


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch", type=int, help="training and throughput batch (GPU default 8)")
    parser.add_argument("--boxes", type=int, default=10, help="ground-truth boxes per training image")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--train-iters", type=int)
    parser.add_argument("--infer-iters", type=int)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32 (TF32 on), bf16 (autocast)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--save", action="store_true", help="write results/benchmark_<device type>.json")
    args = parser.parse_args(argv)
    precisions = tuple(p for p in args.precisions.split(",") if p)
    if any(p not in PRECISIONS for p in precisions):
        parser.error(f"--precisions takes {', '.join(PRECISIONS)}, got {args.precisions!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = {k: getattr(args, k) for k in ("height", "width", "batch", "warmup", "train_iters", "infer_iters")}
    values = {**default_settings(args.device), **{k: v for k, v in chosen.items() if v is not None}}
    return Settings(device=args.device, boxes=args.boxes, precisions=precisions, **values), args.save


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings, save = parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # "fp32" means TF32 allowed
    torch.backends.cudnn.benchmark = True
    reference, ours = build_pair(settings)
    for model in (reference, ours):
        set_score_threshold(model, 0.0)
    equality = detection_difference(reference, ours, settings)
    for model in (reference, ours):
        set_score_threshold(model, 0.05)
    first_losses = loss_difference(reference, ours, settings)
    measured: dict[str, dict[str, dict[str, float]]] = {}
    for precision in settings.precisions:  # inference first, while both still hold the same weights
        measured[precision] = {
            name: infer_speed(model, settings, precision) for name, model in zip(IMPLEMENTATIONS, (reference, ours))
        }
    for precision in settings.precisions:
        for name, model in zip(IMPLEMENTATIONS, (reference, ours)):
            measured[precision][name].update(train_speed(model, settings, precision))
    rows = table_rows(measured)
    print(
        f"detector speed on {device_name(settings.device)}: batch {settings.batch} of "
        f"{settings.height}x{settings.width}, {settings.boxes} boxes/image, {settings.train_iters} train / "
        f"{settings.infer_iters} infer iterations after {settings.warmup} warm-up"
    )
    print(format_table(rows))
    print("fp32 detections (TF32 off, score threshold 0):", format_equality(equality))
    print(
        "fp32 losses, one batch, same sampling seed (torchvision / fpnlab): "
        + ", ".join(f"{term} {v['torchvision']:.5f} / {v['fpnlab']:.5f}" for term, v in first_losses.items())
    )
    for precision, by_impl in measured.items():
        print(
            f"timed training loss {precision} (first -> last step): "
            + ", ".join(f"{name} {m['first_loss']:.4f} -> {m['last_loss']:.4f}" for name, m in by_impl.items())
        )
    targets = check_targets(rows)
    where = "" if settings.device.startswith("cuda") else " (set for one H100; a CPU run only shows the ratio)"
    for line in targets:
        print(f"target{where}: {line}")
    record = {
        "settings": asdict(settings),
        "rows": rows,
        "detections": equality,
        "first_losses": first_losses,
        "loss": {
            p: {n: {"first": m["first_loss"], "last": m["last_loss"]} for n, m in by_impl.items()}
            for p, by_impl in measured.items()
        },
        "targets": targets,
    }
    if save:
        path = write_result(
            f"benchmark_{torch.device(settings.device).type}",
            record,
            device=settings.device,
            command=shlex.join(["python", "benchmarks/detector_speed.py", *(argv or sys.argv[1:])]),
        )
        print(f"wrote {path}")
    return record


def format_equality(diff: dict[str, Any]) -> str:
    counts = ", ".join(f"{a}/{b}" for a, b in diff["detections"])
    if not diff["same_count"]:
        return f"DIFFERENT numbers of detections (torchvision/fpnlab per image: {counts})"
    return (
        f"detections per image {counts}, max |diff| boxes {diff['max_abs_diff_boxes']:.2e} px, "
        f"scores {diff['max_abs_diff_scores']:.2e}, labels {'equal' if diff['labels_equal'] else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
