"""Evaluation as the FPN paper reports it: COCO box AP (Table 3), proposal recall (Table 1), pyramid levels.

    coco_metrics(model, dataset)       AP, AP50, AP75, AP_s/m/l, AR1/10/100, AR_s/m/l via pycocotools
                                       (+ mask_AP, mask_AP50, ... of the masks, for a Mask R-CNN)
    proposal_recall(model, dataset)    the RPN alone: AR@100, AR_s@100, AR@1000, AR_s/m/l@1000 (paper Table 1)
    level_statistics(model, dataset)   GT boxes, positive anchors, proposals and ROIs per pyramid level
    anchor_size_statistics(...)        positive anchors and top objectness per anchor size (Table 1 row f)
    format_table(metrics)              any of the above as a text table

AP and AR average over IoU thresholds 0.5:0.05:0.95 (COCO); _s/_m/_l restrict the ground truth to
small (area < 32^2), medium and large (area > 96^2) objects. pycocotools reports -1 for a size range
without ground truth; these functions keep that convention.

Under DDP each process evaluates every world_size-th image and the results are gathered, so every
process returns the same numbers for the whole dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fpnlab.data import CocoDetection, load_split
from fpnlab.engine.checkpoint import build_model_from, load_checkpoint
from fpnlab.engine.coco_scores import cocoeval, summary, with_mask_rles
from fpnlab.engine.distributed import gather, my_indices
from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import box_iou, xyxy_to_xywh
from fpnlab.model.levels import assign_levels, level_number
from fpnlab.model.matching import POSITIVE
from fpnlab.model.transform import resize_boxes
from fpnlab.progress import phase
from fpnlab.switch import evaluating

COCO_METRICS = ("AP", "AP50", "AP75", "AP_s", "AP_m", "AP_l", "AR1", "AR10", "AR100", "AR_s", "AR_m", "AR_l")
MASK_METRICS = ("mask_AP", "mask_AP50", "mask_AP75", "mask_AP_s", "mask_AP_m", "mask_AP_l")  # COCO "segm"
PROPOSAL_METRICS = ("AR@100", "AR_s@100", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000")
PROPOSAL_MAX_DETS = (100, 1000)


# --- running the model over a dataset -----------------------------------------------------------


def batches(
    dataset: Any, max_images: int | None, batch_size: int, progress: bool | None, desc: str
) -> Iterator[list[tuple[Tensor, dict[str, Any]]]]:
    """This process's (image, target) samples, `batch_size` at a time, with a progress bar."""
    if batch_size < 1:
        raise FpnlabError(f"the evaluation batch size must be >= 1, got {batch_size}.")
    if max_images is not None and max_images < 1:
        raise FpnlabError(f"max_images must be >= 1 (or None for all), got {max_images}.")
    indices = my_indices(len(dataset) if max_images is None else min(len(dataset), max_images))
    with phase(desc, len(indices), "images", progress) as bar:
        for start in range(0, len(indices), batch_size):
            yield [dataset[i] for i in indices[start : start + batch_size]]
            bar.update(len(indices[start : start + batch_size]))


def run_over(
    model: nn.Module,
    dataset: Any,
    predict: Callable[[list[Tensor]], list[dict[str, Tensor]]],
    max_images: int | None,
    batch_size: int,
    progress: bool | None,
    desc: str,
) -> list[tuple[int, dict]]:
    """[(image_id, output), ...] of `predict(images)` over this process's images, in eval mode."""
    device = next(model.parameters()).device
    results = []
    with evaluating(model):
        for samples in batches(dataset, max_images, batch_size, progress, desc):
            outputs = predict([image.to(device) for image, _ in samples])
            results += [
                (target["image_id"], {k: v.cpu() if isinstance(v, Tensor) else v for k, v in out.items()})
                for (_, target), out in zip(samples, outputs)
            ]
    return results


# --- the metrics --------------------------------------------------------------------------------


def coco_metrics(
    model: nn.Module, dataset: Any, max_images: int | None = None, batch_size: int = 4, progress: bool | None = True
) -> dict[str, float]:
    """COCO box metrics of the detector on `dataset` (a CocoDetection): {"AP": ..., ..., "AR_l": ...}, and for a
    Mask R-CNN the mask metrics too ("mask_AP", ..., "mask_AP_l", COCO's "segm" on masks thresholded at 0.5).

    Labels are mapped back to the annotation file's category ids with dataset.label_to_cat_id.
    """

    def predict(images: list[Tensor]) -> list[dict[str, Any]]:  # each mask kept as a few bytes of RLE
        return [with_mask_rles(detections) for detections in model(images)]

    return detection_metrics(run_over(model, dataset, predict, max_images, batch_size, progress, "eval"), dataset)


def detection_metrics(outputs: list[tuple[int, dict[str, Any]]], dataset: Any) -> dict[str, float]:
    """COCO box metrics of detections already made: [(image_id, {"boxes", "labels", "scores"}), ...] on `dataset`
    (the capstone scores a student's detector this way, its detections made in a process of its own); with
    "masks" (RLEs, with_mask_rles) the mask metrics as well."""
    image_ids = gather([i for i, _ in outputs])
    results = [
        {"image_id": image_id, "category_id": dataset.label_to_cat_id[int(label)], "bbox": box, "score": float(score)}
        for image_id, out in outputs
        for box, label, score in zip(xyxy_to_xywh(out["boxes"]).tolist(), out["labels"], out["scores"])
    ]
    metrics = summary(cocoeval(dataset.coco, gather(results), image_ids, True, (1, 10, 100)), COCO_METRICS)
    if outputs and "masks" in outputs[0][1]:
        segments = [
            {
                "image_id": image_id,
                "category_id": dataset.label_to_cat_id[int(label)],
                "segmentation": rle,
                "score": float(s),
            }
            for image_id, out in outputs
            for rle, label, s in zip(out["masks"], out["labels"], out["scores"])
        ]
        evaluator = cocoeval(dataset.coco, gather(segments), image_ids, True, (1, 10, 100), iou_type="segm")
        metrics.update(summary(evaluator, MASK_METRICS))
    return metrics


def proposal_recall(
    model: nn.Module, dataset: Any, max_images: int | None = None, batch_size: int = 4, progress: bool | None = True
) -> dict[str, float]:
    """Average recall of the RPN's proposals, class-agnostic (FPN paper, Table 1).

    AR is recall averaged over IoU 0.5:0.05:0.95 (pycocotools with useCats=0), for the top 100 and the
    top 1000 proposals per image, and by object size at 1000. The RPN must keep >= 1000 proposals
    after NMS (rpn_post_nms_top_n_test) for AR@1000 to mean what the paper means.
    """
    outputs = run_over(model, dataset, model.propose, max_images, batch_size, progress, "proposals")
    any_category = next(iter(dataset.label_to_cat_id.values()))  # ignored with useCats=0
    results = [
        {"image_id": image_id, "category_id": any_category, "bbox": box, "score": float(score)}
        for image_id, out in outputs
        for box, score in zip(xyxy_to_xywh(out["boxes"]).tolist(), out["scores"])
    ]
    evaluator = cocoeval(
        dataset.coco, gather(results), gather([i for i, _ in outputs]), use_cats=False, max_dets=PROPOSAL_MAX_DETS
    )
    recall = evaluator.eval["recall"]  # (IoU thresholds, 1 category, 4 area ranges, 2 max dets)

    def mean_recall(area: int, max_det: int) -> float:
        r = recall[:, 0, area, max_det]
        return float(np.mean(r[r > -1])) if (r > -1).any() else -1.0

    all_, small, medium, large = range(4)  # COCOeval's area ranges: all, small, medium, large
    return {
        "AR@100": mean_recall(all_, 0),
        "AR_s@100": mean_recall(small, 0),
        "AR@1000": mean_recall(all_, 1),
        "AR_s@1000": mean_recall(small, 1),
        "AR_m@1000": mean_recall(medium, 1),
        "AR_l@1000": mean_recall(large, 1),
    }


@torch.inference_mode()
def level_statistics(
    model: nn.Module, dataset: Any, max_images: int | None = None, batch_size: int = 4, progress: bool | None = True
) -> dict[str, dict[str, int]]:
    """How many of each land on each pyramid level, summed over the images: {"p2": {"gt": n, ...}, ...}.

        gt         ground-truth boxes, by FPN Eq. 1 with the model's canonical size (k in 2..5),
                   measured at the detector's input scale (after its resize)
        anchors    positive anchors: those the RPN's own Matcher assigns to a ground-truth box
                   (IoU >= 0.7, or a box's best anchor), counted on the level they sit on
        proposals  the RPN's proposals (eval mode, after NMS), on the level of the anchor they came from
        rois       the same proposals as ROIs, on the level Eq. 1 pools them from (none when rpn_only)

    Rows are levels k, named "p<k>" (a single-scale C4 or C5 model uses k = 4 or 5).
    """
    device = next(model.parameters()).device
    level_of_name = {name: level_number(name) for name in model.neck.strides}
    counts: Counter[tuple[str, int]] = Counter()

    def count(kind: str, levels: Tensor) -> None:
        counts.update({(kind, k): n for k, n in Counter(levels.tolist()).items()})

    for samples in batches(dataset, max_images, batch_size, progress, "levels"):
        seen = model.inspect([image.to(device) for image, _ in samples])
        anchors = torch.cat([seen.anchors[name] for name in seen.levels])  # (sum H*W*A, 4)
        anchor_levels = torch.cat(
            [torch.full((len(seen.anchors[name]),), level_of_name[name]) for name in seen.levels]
        )  # (sum H*W*A,)
        for i, (_, target) in enumerate(samples):
            gt = resize_boxes(target["boxes"].to(device), seen.input_sizes[i], seen.image_sizes[i])  # (G, 4)
            count(
                "gt",
                assign_levels(
                    gt, canonical_size=model.config.canonical_size(), canonical_level=model.config.roi.canonical_level
                ),
            )
            if len(gt):
                matched = model.rpn.matcher(box_iou(gt, anchors)).labels == POSITIVE  # (sum H*W*A,)
                count("anchors", anchor_levels[matched.cpu()])
            count("proposals", seen.proposal_levels[i])
            if seen.roi_levels:
                count("rois", seen.roi_levels[i])

    totals: Counter[tuple[str, int]] = Counter()
    for part in gather([counts]):
        totals.update(part)
    kinds = ("gt", "anchors", "proposals", "rois")
    return {f"p{k}": {kind: totals[kind, k] for kind in kinds} for k in sorted({k for _, k in totals})}


@torch.inference_mode()
def anchor_size_statistics(
    model: nn.Module, dataset: Any, max_images: int | None = None, batch_size: int = 4, progress: bool | None = True
) -> dict[str, Any]:
    """Why a single-level RPN misses small objects, measured per anchor size (in input pixels):

        positive_share   the share of all positive anchors (the RPN Matcher's) that have this size
        best_logit       the highest objectness logit among the anchors of this size, mean over images
        proposals_per_image   proposals left after NMS (eval mode), mean over images

    On FPN every size gets about a quarter of the positives; with every size on P2 (row f), a large object
    covers hundreds of stride-4 positions and takes almost all of them.
    """
    device = next(model.parameters()).device
    sizes = sorted({int(s) for level in model.rpn.anchor_generator.sizes for s in level})
    positives, best, proposals, images = Counter(), Counter(), 0, 0
    for samples in batches(dataset, max_images, batch_size, progress, "anchor sizes"):
        seen = model.inspect([image.to(device) for image, _ in samples])
        anchors = torch.cat([seen.anchors[name] for name in seen.levels])  # (N, 4)
        area_side = torch.sqrt((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1]))  # (N,)
        size_of = torch.tensor(sizes, device=device)[
            (area_side[:, None] - torch.tensor(sizes, device=device)).abs().argmin(dim=1)
        ]  # (N,) nearest anchor size
        logits = torch.cat([o.permute(0, 2, 3, 1).reshape(len(samples), -1) for o in seen.objectness.values()], 1)
        for i, (_, target) in enumerate(samples):
            gt = resize_boxes(target["boxes"].to(device), seen.input_sizes[i], seen.image_sizes[i])
            matched = model.rpn.matcher(box_iou(gt, anchors)).labels == POSITIVE
            for size in sizes:
                of_size = size_of == size
                positives[size] += int((matched & of_size).sum())
                best[size] += float(logits[i][of_size].max())
            proposals += len(seen.proposals[i])
            images += 1
    for part in gather([(positives, best, proposals, images)])[1:]:  # other processes' counts under DDP
        positives.update(part[0])
        best.update(part[1])
        proposals, images = proposals + part[2], images + part[3]
    total = max(sum(positives.values()), 1)
    return {
        "sizes": {
            str(s): {"positive_share": positives[s] / total, "best_logit": best[s] / max(images, 1)} for s in sizes
        },
        "proposals_per_image": proposals / max(images, 1),
    }


# --- tables -------------------------------------------------------------------------------------


def format_table(metrics: dict[str, Any], title: str | None = None) -> str:
    """A text table: one row for {name: value}, one row per key for {row: {name: value}}.

    Floats show three decimals; pycocotools' -1 (no ground truth of that size) shows as "-".
    """
    rows = metrics if all(isinstance(v, dict) for v in metrics.values()) else {"": metrics}
    columns = list(dict.fromkeys(name for row in rows.values() for name in row))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if value == -1 else f"{value:.3f}"
        return str(value)

    label_width = max(len(str(label)) for label in rows)
    widths = [max(len(c), *(len(cell(row.get(c, ""))) for row in rows.values())) for c in columns]
    lines = [title] if title else []
    lines.append(" " * label_width + "".join(f"  {c:>{w}}" for c, w in zip(columns, widths)))
    for label, row in rows.items():
        lines.append(
            f"{label:<{label_width}}" + "".join(f"  {cell(row.get(c, '')):>{w}}" for c, w in zip(columns, widths))
        )
    return "\n".join(lines)


# --- a checkpoint, scored -------------------------------------------------------------------------


def check_categories(categories: list[str], data: CocoDetection, model_name: str, data_name: str) -> None:
    """The one check of a dataset against a model, made by `fpnlab eval` and by training before its
    end-of-run evaluation: the same class names for the same labels, or FpnlabError (scores would be wrong)."""
    if list(categories) != list(data.categories):
        raise FpnlabError(
            f"{model_name} detects {', '.join(categories)} but {data_name} has {', '.join(data.categories)} "
            "(label by label); its scores would be wrong, so it was not scored."
        )


def evaluate_checkpoint(
    path: Path,
    dataset: str | None = None,
    split: str = "val",
    max_images: int | None = None,
    batch_size: int = 4,
    proposals: bool = False,
    levels: bool = False,
    progress: bool | None = True,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """What `fpnlab eval` prints and records: COCO metrics (and proposal recall, level counts) of a checkpoint.

    `dataset` defaults to the one the checkpoint was trained on.
    """
    checkpoint = load_checkpoint(path)
    model = build_model_from(checkpoint, path).to(device)
    if model.config.rpn_only:
        raise FpnlabError(
            f"checkpoint {path} holds an RPN alone (rpn_only, paper Table 1): it proposes boxes but names no "
            "classes, so it has no COCO metrics; `fpnlab ablate --stage rpn` scores such models."
        )
    name = dataset or checkpoint.get("train_config", {}).get("dataset", "shapes-mini")
    data: CocoDetection = load_split(name, split)
    check_categories(model.categories, data, f"checkpoint {path}", f"dataset {name}")
    options = dict(max_images=max_images, batch_size=batch_size, progress=progress)
    record: dict[str, Any] = {
        "checkpoint": str(path),
        "dataset": str(name),
        "split": split,
        "images": len(data) if max_images is None else min(len(data), max_images),
        "coco_metrics": coco_metrics(model, data, **options),
    }
    if proposals:
        record["proposal_recall"] = proposal_recall(model, data, **options)
    if levels:
        record["level_statistics"] = level_statistics(model, data, **options)
    return record
