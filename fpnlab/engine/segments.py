"""Segment proposals trained and scored (FPN paper, Sec. 6, Table 6): the FPN head against one level, on a CPU.

    model, run = train_segment_proposer("fpn", seed=0, iterations=600)     # fpnlab.model.segment_proposals
    segment_recall(model, load_split("shapes-mini", "val"))                # {"AR@100", "AR@1000", "AR_s@1000", ...}
    ceiling_recall("single", load_split("shapes-mini", "val", masks=True))  # perfect predictions: the best possible
    record = segment_ablation(["fpn", "single"], seeds=(0, 1, 2), unseen_seeds=(3, 4), result="segment_proposals_cpu")
    python -m fpnlab.engine.segments --variants fpn,single --seeds 0,1,2 --unseen-seeds 3,4 --iterations 600 \
        --result segment_proposals_cpu

Variants: "fpn", one 5 x 5 MLP slid over P2..P5 with one mask scale per level (32..256 px), and "single",
the same MLP on P4 alone carrying all four scales at each position. Training: shapes-mini's train split
(160 px images, upsampled to 320 px by the model) with random horizontal flips, SGD with momentum, linear
warm-up then a cosine decay, batches of 2 in an order that is a pure function of the seed
(fpnlab.engine.batches). Segment AR is COCO's mask AR, class-agnostic, averaged over IoU 0.5:0.05:0.95,
for the top 100 and 1000 proposals per image, by object size at 1000 (the paper's Table 6 columns).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fpnlab.data import CocoDetection, load_split
from fpnlab.data.transforms import RandomHorizontalFlip
from fpnlab.engine.batches import iter_batches, train_loader
from fpnlab.engine.coco_scores import cocoeval, mask_rle
from fpnlab.engine.evaluate import run_over
from fpnlab.engine.presets import TrainConfig
from fpnlab.engine.state import lr_factor, make_optimizer
from fpnlab.engine.stopping import check_finite
from fpnlab.errors import FpnlabError
from fpnlab.model.levels import level_number
from fpnlab.model.masks import project_masks
from fpnlab.model.segment_proposals import (
    MASK_SIZE,
    REGION_FACTOR,
    TOP_N,
    SegmentProposer,
    binary_masks,
    match_positions,
)
from fpnlab.progress import phase
from fpnlab.results import check_result_name, write_result

VARIANTS: dict[str, dict[str, tuple]] = {
    "fpn": {"levels": ("p2", "p3", "p4", "p5"), "scales": ((32,), (64,), (128,), (256,))},
    "single": {"levels": ("p4",), "scales": ((32, 64, 128, 256),)},
}
SEGMENT_METRICS = ("AR@100", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000")
HIDDEN = 128  # the MLP's hidden width on a CPU (the paper's is wider)
ITERATIONS = 600  # about 3 minutes for the fpn variant on one CPU core
LR = 0.02
WARMUP = 100
PASTE_CHUNK = 100  # proposals pasted into the image at once


def schedule(seed: int, iterations: int = ITERATIONS, lr: float = LR) -> TrainConfig:
    """The training numbers, as a TrainConfig (its data order, optimizer and lr schedule are reused)."""
    return TrainConfig(
        iterations=iterations,
        batch_size=2,
        lr=lr,
        momentum=0.9,
        weight_decay=1e-4,
        warmup_iterations=min(WARMUP, iterations),
        schedule="cosine",
        seed=seed,
        eval_at_end=False,
    )


def build_proposer(variant: str, hidden: int = HIDDEN) -> SegmentProposer:
    """The segment proposer of `variant` ("fpn" or "single") with the lab's CPU backbone and neck."""
    if variant not in VARIANTS:
        raise FpnlabError(f"unknown segment proposal variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    return SegmentProposer(**VARIANTS[variant], backbone="resnet_tiny", fpn_channels=64, hidden=hidden, size=320)


def train_segment_proposer(
    variant: str,
    seed: int,
    iterations: int = ITERATIONS,
    lr: float = LR,
    hidden: int = HIDDEN,
    max_train_images: int | None = None,
    progress: bool | None = True,
) -> tuple[SegmentProposer, dict[str, Any]]:
    """Train one variant from scratch -> (model, {"train_s", "first_loss", "final_loss", "losses"}).

    Initialisation, sampling and the data order are a pure function of `seed`; losses are logged per iteration
    and first_loss / final_loss average the first and last 20 of them."""
    cfg = dataclasses.replace(schedule(seed, iterations, lr), max_train_images=max_train_images)
    dataset = load_split("shapes-mini", "train", transforms=RandomHorizontalFlip(cfg.hflip_prob), masks=True)
    torch.manual_seed(seed)
    model = build_proposer(variant, hidden).train()
    optimizer = make_optimizer(model, cfg)
    batches = iter_batches(train_loader(dataset, cfg, 0, 0, 1), torch.device("cpu"), 0, iterations)
    losses, start = [], time.perf_counter()
    with phase(f"train {variant} seed {seed}", iterations, "it", progress) as bar:
        for iteration, (images, targets) in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(iteration, cfg)
            terms = model(images, targets)  # loss_objectness, loss_mask
            check_finite({name: float(value.detach()) for name, value in terms.items()}, iteration)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update()
    window = min(20, len(losses))
    return model.eval(), {
        "train_s": round(time.perf_counter() - start, 1),
        "first_loss": round(statistics.fmean(losses[:window]), 4),
        "final_loss": round(statistics.fmean(losses[-window:]), 4),
        "losses": losses,
    }


def segment_recall(
    model: SegmentProposer, dataset: CocoDetection, max_images: int | None = None, progress: bool | None = True
) -> dict[str, float]:
    """Segment AR of the model's proposals on `dataset` (class-agnostic COCO mask AR, fractions in [0, 1])."""
    outputs = run_over(model, dataset, model, max_images, 4, progress, "segment proposals")
    results = [result for image_id, out in outputs for result in segment_results(image_id, out, dataset)]
    return mask_recall(results, dataset, [image_id for image_id, _ in outputs])


def segment_results(image_id: int, proposals: dict[str, Tensor], dataset: CocoDetection) -> list[dict[str, Any]]:
    """One image's proposals ({"boxes", "scores", "masks" (K, 1, M, M)}, input pixels) as COCO results with RLEs."""
    info = dataset.coco.imgs[image_id]
    size = (info["height"], info["width"])
    any_category = next(iter(dataset.label_to_cat_id.values()))  # ignored: the evaluation is class-agnostic
    results = []
    for start in range(0, len(proposals["scores"]), PASTE_CHUNK):
        part = slice(start, start + PASTE_CHUNK)
        masks = binary_masks(proposals["masks"][part], proposals["boxes"][part], size)  # (k, H, W)
        results += [
            {"image_id": image_id, "category_id": any_category, "segmentation": mask_rle(m), "score": float(s)}
            for m, s in zip(masks, proposals["scores"][part])
        ]
    return results


def mask_recall(results: list[dict[str, Any]], dataset: CocoDetection, image_ids: list[int]) -> dict[str, float]:
    """{"AR@100", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000"} of RLE `results` on `image_ids`; -1 where a
    size has no object (pycocotools' convention)."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = cocoeval(dataset.coco, results, image_ids, use_cats=False, max_dets=(100, 1000), iou_type="segm")
    recall = evaluator.eval["recall"]  # (IoU thresholds, 1 category, 4 areas: all, s, m, l; 2 max dets)

    def mean_recall(area: int, max_det: int) -> float:
        r = recall[:, 0, area, max_det]
        return float(np.mean(r[r > -1])) if (r > -1).any() else -1.0

    values = (mean_recall(0, 0), mean_recall(0, 1), mean_recall(1, 1), mean_recall(2, 1), mean_recall(3, 1))
    return dict(zip(SEGMENT_METRICS, values))


@torch.no_grad()
def ceiling_recall(variant: str, dataset: CocoDetection, max_images: int | None = None) -> dict[str, float]:
    """Segment AR of perfect predictions, before any learning: every positive position of the targets' rule
    scored 1 with its own mask target (the object's mask RoIAligned at 14 x 14). What the variant's regions,
    their grid and the 14 x 14 masks allow at best."""
    model = build_proposer(variant, 8).eval()
    results, image_ids = [], []
    for index in range(len(dataset) if max_images is None else min(len(dataset), max_images)):
        image, target = dataset[index]
        batch, [resized] = model.transform([image], [target])
        padded = batch.padded_size
        sizes = [(padded[0] // 2 ** level_number(n), padded[1] // 2 ** level_number(n)) for n in model.levels]
        candidates = model.candidates(padded, sizes, image.device)
        matched = match_positions(resized["boxes"], candidates, model.all_scales)  # (N,)
        positive = torch.where(matched >= 0)[0]
        masks = project_masks(resized["masks"], candidates.boxes[positive], matched[positive], MASK_SIZE)  # (P, M, M)
        found = {"boxes": candidates.boxes[positive], "scores": torch.ones(len(positive)), "masks": masks[:, None]}
        [found] = model.transform.postprocess([found], batch.image_sizes, [tuple(image.shape[-2:])])
        results += segment_results(target["image_id"], found, dataset)
        image_ids.append(target["image_id"])
    return mask_recall(results, dataset, image_ids)


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{variant: {metric: {"mean", "std", "n"}}} over the runs' seeds (std: sample standard deviation)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for variant in dict.fromkeys(run["variant"] for run in runs):
        for metric in (*SEGMENT_METRICS, "train_s"):
            values = [
                run[metric] if metric == "train_s" else run["metrics"][metric]
                for run in runs
                if run["variant"] == variant
            ]
            values = [v for v in values if v != -1]
            if not values:
                continue
            std = statistics.stdev(values) if len(values) > 1 else None
            table.setdefault(variant, {})[metric] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return table


def fpn_minus_single(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric: the mean of fpn - single over the seeds both ran, and on how many seeds fpn is higher."""
    by_seed = {(run["variant"], run["seed"]): run["metrics"] for run in runs}
    seeds = sorted(seed for variant, seed in by_seed if variant == "fpn" and ("single", seed) in by_seed)
    if not seeds:
        return {}
    deltas = {m: [by_seed["fpn", s][m] - by_seed["single", s][m] for s in seeds] for m in SEGMENT_METRICS}
    return {
        m: {"delta": statistics.fmean(d), "fpn_higher": sum(x > 0 for x in d), "seeds": len(d)}
        for m, d in deltas.items()
    }


def scored_run(
    variant: str, seed: int, val: CocoDetection, iterations: int, lr: float, hidden: int, progress: bool | None
) -> dict[str, Any]:
    """One entry of a record's runs: train `variant` on `seed`, then its segment AR on `val`."""
    model, run = train_segment_proposer(variant, seed, iterations, lr, hidden, progress=progress)
    start = time.perf_counter()
    metrics = segment_recall(model, val, progress=progress)
    losses = run.pop("losses")
    return {
        "variant": variant,
        "seed": seed,
        "metrics": metrics,
        **run,
        "eval_s": round(time.perf_counter() - start, 1),
        "loss_curve": losses[:: max(1, len(losses) // 50)],  # about 50 points
    }


def segment_ablation(
    variants: Sequence[str],
    seeds: Sequence[int],
    unseen_seeds: Sequence[int] = (),
    iterations: int = ITERATIONS,
    lr: float = LR,
    hidden: int = HIDDEN,
    result: str | None = None,
    command: str | None = None,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Train and score every (variant, seed): "runs" (seeds), "unseen_seeds" (seeds that chose no setting),
    each with its summary and fpn - single; written to results/<result>.json after every run when named."""
    if result is not None:
        check_result_name(result, "--result")
    for variant in variants:
        build_proposer(variant, 8)  # an unknown name fails before any training
    val = load_split("shapes-mini", "val", masks=True)
    record: dict[str, Any] = {
        "paper": "FPN, Sec. 6 / Table 6: segment proposals, a 5x5 MLP on every level vs one level",
        "settings": {
            **{"iterations": iterations, "lr": lr, "hidden": hidden, "batch_size": 2, "warmup": WARMUP},
            **{
                "region_factor": REGION_FACTOR,
                "top_n": TOP_N,
                "schedule": "cosine",
                "momentum": 0.9,
                "weight_decay": 1e-4,
            },
        },
        "variants": {name: VARIANTS[name] for name in variants},
        "ceiling": {name: ceiling_recall(name, val) for name in variants},  # perfect predictions (ceiling_recall)
    }
    for group, group_seeds in {"runs": seeds, "unseen_seeds": unseen_seeds}.items():
        runs: list[dict[str, Any]] = []
        for seed in group_seeds:
            for variant in variants:
                runs.append(scored_run(variant, seed, val, iterations, lr, hidden, progress))
                record[group] = {"runs": runs, "summary": summary(runs), "fpn_minus_single": fpn_minus_single(runs)}
                if result is not None:
                    write_result(result, record, device="cpu", command=command)
    return record


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options (`python -m fpnlab.engine.segments --help`)."""
    parser = argparse.ArgumentParser(prog="python -m fpnlab.engine.segments", description=segment_ablation.__doc__)
    parser.add_argument("--variants", default="fpn,single", help="comma-separated: fpn, single")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds the settings were chosen on")
    parser.add_argument("--unseen-seeds", default="", help="comma-separated seeds that chose nothing (a check)")
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--result", default=None, help="record name: results/<name>.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line: train and score the variants on the seeds, print the summary, write the record."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    record = segment_ablation(
        args.variants.split(","),
        [int(s) for s in args.seeds.split(",") if s],
        [int(s) for s in args.unseen_seeds.split(",") if s],
        args.iterations,
        args.lr,
        args.hidden,
        args.result,
        command=" ".join(["python -m fpnlab.engine.segments", *(sys.argv[1:] if argv is None else argv)]),
    )
    for group in ("runs", "unseen_seeds"):
        if group in record:
            print(group, record[group]["summary"], record[group]["fpn_minus_single"], sep="\n", flush=True)
    return record


if __name__ == "__main__":
    main()
