"""FPN's lighter head, measured: inference time per image of the FPN detector (2fc head) against the C4
baseline with the conv5 head (FPN paper Table 3 row a), on the same backbone, images and number of proposals.

    python benchmarks/head_speed.py --scale lab            # the cpu preset's ResNet-tiny model at 320 px
    python benchmarks/head_speed.py --scale r50            # ResNet-50 at 800 px, 3 runs (a GPU; slow on a CPU)
    python benchmarks/head_speed.py --scale lab --save     # also write results/head_speed_lab_cpu.json
                                                           # (head_speed_<scale>_<device type>.json: a GPU's
                                                           # run never replaces the CPU's)

Both detectors are built with random weights from one config, the C4 one through the ablation variant
c4_res5, with the same seed: the same backbone weights up to C4, and everything shared but the neck and the
ROI head (2fc on 7x7 pooled pyramid features, or conv5 on 14x14 pooled C4, which the C4 backbone then skips).
The RPN's NMS is switched off (IoU 1.0) in both, so that every image hands exactly --proposals ROIs to the
head whatever random weights score. Measured per image (batch 1, eval mode, inference_mode), as the mean
over --runs images after --warmup untimed ones, one model after the other:

    backbone, neck, rpn, roi_heads   ms inside each submodule (forward hooks; synchronised on CUDA);
                                     "other" is the rest of the forward: transform, checks, boxes back
    box head                         ms of the head proper (2fc or conv5, and the class and box layers),
                                     part of roi_heads (which also pools and post-processes)
    per ROI                          box head ms / ROIs, and the FLOPs of the box head for one ROI
                                     (torch.utils.flop_counter: 2 per multiply-add of convs and linear layers)

The last column is C4 + conv5 / FPN (the table: fpnlab.ablation.speed, which notebook 08 reads the record with).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from fpnlab.ablation.speed import MODELS, STAGES, format_table, table_rows
from fpnlab.ablation.variants import VARIANTS
from fpnlab.engine.presets import CPU_MODEL, GPU_MODEL
from fpnlab.model.config import DetectorConfig
from fpnlab.model.detector import FPNDetector
from fpnlab.overrides import update
from fpnlab.results import write_result

HEAD = ("roi_heads.box_head", "roi_heads.predictor")  # the head proper, inside roi_heads


@dataclasses.dataclass(frozen=True)
class Scale:
    model: DetectorConfig
    height: int
    width: int
    runs: int
    proposals: int  # ROIs per image at test time


SCALES = {
    "lab": Scale(CPU_MODEL, 320, 320, runs=5, proposals=CPU_MODEL.rpn.test.post_nms_top_n),  # 300
    "r50": Scale(dataclasses.replace(GPU_MODEL, min_size=800, max_size=1333), 800, 1216, runs=3, proposals=1000),
}


def build_models(config: DetectorConfig, proposals: int, device: str, seed: int = 0) -> dict[str, FPNDetector]:
    """{"fpn": the config's FPN, "c4_res5": its C4 + conv5 variant}, random weights from one seed, eval mode,
    both RPNs without NMS and keeping `proposals` per image."""
    test = {"pre_nms_top_n": max(config.rpn.test.pre_nms_top_n, proposals), "post_nms_top_n": proposals}
    base = update(config, {"rpn": {"nms_thresh": 1.0, "test": test}})
    models = {}
    for name in MODELS:
        torch.manual_seed(seed)
        models[name] = FPNDetector(VARIANTS[name].apply(base)).to(device).eval()
    return models


def make_images(scale: Scale, count: int, seed: int, device: str) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, scale.height, scale.width, generator=g).to(device) for _ in range(count)]


# --- measuring ------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def stage_clock(model: nn.Module, device: str) -> Iterator[dict[str, Any]]:
    """Seconds spent in each of STAGES and HEAD, summed over calls, and the box head's inputs' shapes."""
    seen: dict[str, Any] = {"seconds": collections.defaultdict(float), "pooled": []}
    started: dict[str, float] = {}

    def start(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            synchronize(device)
            started[name] = time.perf_counter()
            if name == HEAD[0]:
                seen["pooled"].append(tuple(inputs[0].shape))  # (R, C, S, S)

        return hook

    def stop(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            synchronize(device)
            seen["seconds"][name] += time.perf_counter() - started[name]

        return hook

    modules = {name: model.get_submodule(name) for name in STAGES + HEAD}
    handles = [m.register_forward_pre_hook(start(name)) for name, m in modules.items()]
    handles += [m.register_forward_hook(stop(name)) for name, m in modules.items()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def head_flops(model: FPNDetector, pooled_shape: tuple[int, ...]) -> int:
    """FLOPs of the box head and the class and box layers on one pooled ROI of shape pooled_shape[1:]."""
    one = torch.zeros(1, *pooled_shape[1:], device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        model.roi_heads.predictor(model.roi_heads.box_head(one))
    return counter.get_total_flops()


@torch.inference_mode()
def measure(model: FPNDetector, images: list[Tensor], warmup: int, device: str) -> dict[str, float]:
    """One image at a time, the first `warmup` untimed: mean ms per image in each stage, in the box head and
    in all; ROIs per image; the box head's FLOPs per ROI."""
    for image in images[:warmup]:
        model([image])
    total, timed = 0.0, images[warmup:]
    with stage_clock(model, device) as seen:
        for image in timed:
            synchronize(device)
            start = time.perf_counter()
            model([image])
            synchronize(device)
            total += time.perf_counter() - start
    n, seconds = len(timed), seen["seconds"]
    result = {f"{name}_ms": 1000 * seconds[name] / n for name in STAGES}
    result["head_ms"] = 1000 * sum(seconds[name] for name in HEAD) / n
    result["total_ms"] = 1000 * total / n
    result["rois"] = sum(shape[0] for shape in seen["pooled"]) / n
    result["head_flops"] = head_flops(model, seen["pooled"][0])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="lab")
    parser.add_argument("--runs", type=int, default=None, help="timed images per model (default: lab 5, r50 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed images first (default 1)")
    parser.add_argument("--proposals", type=int, default=None, help="ROIs per image (default: lab 300, r50 1000)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", action="store_true", help="write results/head_speed_<scale>_<cpu|cuda>.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    runs, proposals = args.runs or scale.runs, args.proposals or scale.proposals
    if runs < 1 or proposals < 1 or args.warmup < 0:
        parser.error("--runs and --proposals must be >= 1, --warmup >= 0")
    models = build_models(scale.model, proposals, args.device, args.seed)
    images = make_images(scale, args.warmup + runs, args.seed + 1, args.device)
    print(
        f"{args.scale}: {scale.model.backbone} at {scale.height}x{scale.width}, {proposals} proposals/image, "
        f"{runs} runs after {args.warmup} warm-up, {args.device}, {torch.get_num_threads()} CPU threads"
    )
    measured = {name: measure(model, images, args.warmup, args.device) for name, model in models.items()}
    rows = table_rows(measured)
    print(format_table(rows))
    settings = {**vars(args), "runs": runs, "proposals": proposals, "height": scale.height, "width": scale.width}
    record = {"settings": settings, "rows": rows, "measured": measured}
    if args.save:
        name = f"head_speed_{args.scale}_{torch.device(args.device).type}"
        command = shlex.join(["python", "benchmarks/head_speed.py", *(sys.argv[1:] if argv is None else argv)])
        print(f"wrote {write_result(name, record, device=args.device, command=command)}")
    return record


if __name__ == "__main__":
    main()
