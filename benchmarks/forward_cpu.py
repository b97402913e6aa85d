"""Eval-mode forward time of fpnlab's R50-FPN detector against torchvision's, same weights, same images.

    python benchmarks/forward_cpu.py                          # 2 images of 512 x 512, min_size 512, this CPU
    python benchmarks/forward_cpu.py --size 800 --batch 1 --runs 5
    python benchmarks/forward_cpu.py --device cuda --size 800 --batch 4
    python benchmarks/forward_cpu.py --save                   # also write results/forward_<device>.json

torchvision's fasterrcnn_resnet50_fpn architecture (FrozenBatchNorm, 91 classes, as its COCO weights) is
built with random weights (nothing is downloaded; BatchNorm statistics gathered on random images so the
features are well scaled) and copied into fpnlab with ``fpnlab.model.torchvision_port.from_torchvision``. Both run under
torch.inference_mode, alternating run by run so that a busy machine slows both alike; the table shows the
median and the fastest wall-clock run, the median process CPU time (steadier than wall-clock time on a
shared machine) and both as fpnlab / torchvision ratios (below 1 means fpnlab is faster).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from fpnlab.model.torchvision_port import from_torchvision
from fpnlab.results import write_result


def torchvision_r50_fpn(num_classes: int, min_size: int, max_size: int, seed: int = 0) -> nn.Module:
    """torchvision's COCO R50-FPN architecture with random, well-scaled weights, in eval mode."""
    torch.manual_seed(seed)
    with_bn = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes)
    with torch.no_grad():
        for m in with_bn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batch
        with_bn.backbone.body.train()(torch.randn(4, 3, 224, 224))
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None)  # FrozenBatchNorm2d, 3 trainable
    model = FasterRCNN(backbone, num_classes=num_classes, min_size=min_size, max_size=max_size)
    model.load_state_dict(with_bn.state_dict(), strict=False)  # all but BatchNorm's num_batches_tracked
    return model.eval()


def time_once(model: nn.Module, images: list[Tensor], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one forward pass (waiting for the device to finish)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    model(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def max_difference(ours: list[dict[str, Tensor]], theirs: list[dict[str, Tensor]]) -> float:
    """Largest absolute difference of boxes and scores (inf if the detection counts differ)."""
    worst = 0.0
    for a, b in zip(ours, theirs):
        if len(a["boxes"]) != len(b["boxes"]):
            return float("inf")
        if len(a["boxes"]):
            worst = max(
                worst, (a["boxes"] - b["boxes"]).abs().max().item(), (a["scores"] - b["scores"]).abs().max().item()
            )
    return worst


def benchmark(
    models: dict[str, nn.Module], images: list[Tensor], device: torch.device, warmup: int, runs: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each run per model, the models alternating run by run."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    with torch.inference_mode():
        for i in range(warmup + runs):
            for name, model in models.items():
                seconds = time_once(model, images, device)
                if i >= warmup:
                    times[name].append(seconds)
    return times


def table(times: dict[str, list[tuple[float, float]]], batch: int, reference: str = "torchvision") -> tuple[str, dict]:
    """The printed table and its rows: medians over the runs; ratios are fpnlab / torchvision."""
    rows: dict[str, dict[str, float]] = {}
    for name, values in times.items():
        wall, cpu = (statistics.median(column) for column in zip(*values))
        rows[name] = {
            "median_ms": 1000 * wall,
            "min_ms": 1000 * min(w for w, _ in values),
            "ms_per_image": 1000 * wall / batch,
            "cpu_ms": 1000 * cpu,
        }
    for row in rows.values():
        row["ratio"] = row["median_ms"] / rows[reference]["median_ms"]
        row["cpu_ratio"] = row["cpu_ms"] / rows[reference]["cpu_ms"]
    header = (
        f"{'implementation':<14} {'median ms':>10} {'min ms':>9} {'ms/image':>9} {'CPU ms':>9} {'ratio':>7} "
        f"{'CPU ratio':>10}"
    )
    lines = [header] + [
        f"{name:<14} {r['median_ms']:>10.1f} {r['min_ms']:>9.1f} {r['ms_per_image']:>9.1f} "
        f"{r['cpu_ms']:>9.1f} {r['ratio']:>7.3f} {r['cpu_ratio']:>10.3f}"
        for name, r in rows.items()
    ]
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--size", type=int, default=512, help="images are SIZE x SIZE (default 512)")
    parser.add_argument("--min-size", type=int, default=None, help="the detectors' min_size (default: --size)")
    parser.add_argument("--max-size", type=int, default=1333, help="the detectors' max_size (default 1333)")
    parser.add_argument("--batch", type=int, default=2, help="images per forward pass (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per model first (default 2)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per model (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--num-classes", type=int, default=91, help="classes incl. background (default 91, COCO)")
    parser.add_argument("--save", action="store_true", help="also write results/forward_<device type>.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    min_size = args.min_size or args.size

    theirs = torchvision_r50_fpn(args.num_classes, min_size, args.max_size).to(device)
    ours = from_torchvision(theirs).to(device)
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, args.size, args.size, generator=gen).to(device) for _ in range(args.batch)]
    with torch.inference_mode():
        difference = max_difference(ours(images), theirs(images))
    times = benchmark({"torchvision": theirs, "fpnlab": ours}, images, device, args.warmup, args.runs)
    text, rows = table(times, args.batch)
    print(
        f"R50-FPN eval forward, {args.batch} x {args.size}x{args.size} images, min_size {min_size}, "
        f"device {device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print(f"largest difference of boxes/scores between the two: {difference:.2e}")
    print(text)
    if args.save:
        write_result(
            f"forward_{device.type}",
            {"settings": vars(args), "max_difference": difference, "rows": rows},
            device=str(device),
            command=shlex.join(["python", "benchmarks/forward_cpu.py", *sys.argv[1:]]),
        )


if __name__ == "__main__":
    main()
