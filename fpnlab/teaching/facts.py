"""The measurements the notebooks' questions are about, taken on the shipped demo detector and shapes-mini.

Each is computed the way the notebook cell that reveals it computes it (the same functions of
fpnlab.teaching.analysis, probe, the model), once per session (cached), so `check()` can judge a
prediction before the student has seen the measurement:

    facts.strongest_place("c5")        "border": where the mean |activation| of C5 is largest
    facts.recall_steps()               recall at IoU 0.5 after each step of proposal selection, 20 val images
    facts.record_verdict("ablation_rpn_cpu", "no_top_down", "AR_s@1000")    "higher"

A notebook pointed at another checkpoint measures that one; the questions keep judging the demo's.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import torch

from fpnlab.ablation.report import compare_rows, metric_values
from fpnlab.data import CocoDetection, load_split
from fpnlab.data.coco import size_bucket_shares
from fpnlab.engine.demo import demo_model
from fpnlab.engine.inference import detect_all
from fpnlab.engine.recall import recall_by_size
from fpnlab.env import default_device
from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import box_area
from fpnlab.model.detector import FPNDetector
from fpnlab.model.levels import assign_levels
from fpnlab.model.transform import resize_boxes
from fpnlab.outputs import always, write_atomic
from fpnlab.results import read_result
from fpnlab.teaching import analysis
from fpnlab.teaching.probe import ObjectnessProbe, cell_centres, feature_maps, on_objects

IMAGES = 20  # val images the per-image measurements average over
T = TypeVar("T")


@cache
def demo() -> tuple[FPNDetector, CocoDetection, CocoDetection]:
    """The demo detector (on the lab's device; notebooks' start_lab() shares it) with shapes-mini's splits."""
    return demo_model(default_device()), load_split("shapes-mini", "train"), load_split("shapes-mini", "val")


def _with(model: FPNDetector | None) -> tuple[FPNDetector, CocoDetection, CocoDetection]:
    """`model` (the demo detector when None) with shapes-mini's train and val splits."""
    demo_detector, train, val = demo()
    return model or demo_detector, train, val


def per_model(function: Callable[..., T]) -> Callable[..., T]:
    """Cache `function(*args, model=...)` once per model; `model=None` (a question's check) and the notebook's
    own demo detector (start_lab() shares it) are the same model, so a measurement is taken once. With
    $FPNLAB_FACTS_CACHE set (the test suite sets a folder), measurements are also kept there, by the model's
    weights, for the other processes of the session (the notebooks' kernels, the browser's)."""
    cached = cache(function)

    @functools.wraps(function)
    def measure(*args: Any, model: FPNDetector | None = None) -> T:
        model = _with(model)[0]
        folder = os.environ.get("FPNLAB_FACTS_CACHE")
        if not folder:
            return cached(*args, model=model)
        path = Path(folder) / f"{function.__name__}-{fingerprint(model, args)}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        value = cached(*args, model=model)
        write_atomic(path, tensor_bytes(value), "stored measurement", may_replace=always)
        return value

    return measure


def fingerprint(model: FPNDetector, args: tuple[Any, ...]) -> str:
    """A short hash of the model's weights and settings and of the arguments: the name of a stored measurement."""
    digest = hashlib.sha256(repr((args, model.config)).encode())
    for value in model.state_dict().values():
        digest.update(value.detach().cpu().double().sum().numpy().tobytes())
    return digest.hexdigest()[:16]


def tensor_bytes(value: Any) -> bytes:
    """`value` (tensors, numbers, strings, dicts and lists of them) as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@cache
def busiest_bucket() -> str:
    """The COCO size bucket holding the most training objects."""
    shares = size_bucket_shares(demo()[1].coco.dataset["annotations"])
    return max(shares, key=shares.get)


def train_boxes_at_input() -> torch.Tensor:
    """Every training box in the pixels of the network's input (the images are resized by the same factor)."""
    model, train, _ = demo()
    boxes = torch.cat([train[i][1]["boxes"] for i in range(len(train))])
    return boxes * model.config.min_size / train[0][0].shape[-1]


@cache
def empty_level(canonical_size: float) -> str:
    """The level of P2..P5 that pools none of the training boxes with this canonical size ("none" if all do)."""
    levels = assign_levels(train_boxes_at_input(), canonical_size=canonical_size)
    empty = [k for k in range(2, 6) if not (levels == k).any()]
    return f"P{empty[0]}" if empty else "none"


def strongest_place(level: str, model: FPNDetector | None = None) -> str:
    """Where the mean |activation| of `level` is largest, per cell, over IMAGES val images: on the objects, on
    the background, or along the map's border (its outermost ring of cells)."""
    energy = mean_energy(level, model=model)
    return max(energy, key=energy.get)


@per_model
def mean_energy(level: str, *, model: FPNDetector) -> dict[str, float]:
    """{"objects" | "background" | "border": the mean |activation| of `level`'s cells there}, IMAGES val images."""
    model, _, val = _with(model)
    totals = {"objects": [0.0, 0], "background": [0.0, 0], "border": [0.0, 0]}
    for index in range(IMAGES):
        image, target = val[index]
        seen = model.inspect([image])
        energy = seen.features[level][0].abs().mean(0).flatten()  # (H * W,)
        h, w = seen.features[level].shape[-2:]
        x, y = cell_centres(h, w, seen.images.shape[-1] / w)
        row, column = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
        ring = (row == 0) | (row == h - 1) | (column == 0) | (column == w - 1)
        inside = on_objects(x, y, resize_boxes(target["boxes"], image.shape[-2:], seen.image_sizes[0]))
        for name, where in (("objects", inside & ~ring), ("background", ~inside & ~ring), ("border", ring)):
            totals[name][0] += float(energy[where].sum())
            totals[name][1] += int(where.sum())
    return {name: total / max(count, 1) for name, (total, count) in totals.items()}


@per_model
def probe_accuracy(*, model: FPNDetector) -> dict[str, float]:
    """The objectness probe's val accuracy on every map (200 train, 120 val images): C2..C5, P2..P5, and the
    levels of the two ablated necks (analysis.ablated_necks): "p2 no top-down", ..., "p2 no lateral", ..."""
    model, train, val = _with(model)
    necks = analysis.ablated_necks(model)
    probe = ObjectnessProbe()
    return probe.score(
        probe.cells(*feature_maps(model, train, 200, necks)), probe.cells(*feature_maps(model, val, 120, necks))
    )


def better_of(first: str, second: str, accuracy: dict[str, float]) -> str:
    """Which of two maps the probe reads better."""
    return first if accuracy[first] > accuracy[second] else second


@per_model
def recall_steps(nms_thresh: float | None = None, *, model: FPNDetector) -> dict[str, float]:
    """analysis.recall_after_steps on IMAGES val images, with the RPN's NMS threshold or another one."""
    model, _, val = _with(model)
    if nms_thresh is None:
        return analysis.recall_after_steps(model, val, IMAGES)
    with model.rpn.settings(nms_thresh=nms_thresh):
        return analysis.recall_after_steps(model, val, IMAGES)


@per_model
def refinement_gains(*, model: FPNDetector) -> torch.Tensor:
    """analysis.refinement_gains over IMAGES val images: each object's IoU after minus before refinement."""
    model, _, val = _with(model)
    return analysis.refinement_gains(model, val, IMAGES)


@cache
def firing_level(image_index: int, which: str) -> str:
    """The level whose objectness peaks highest inside the smallest or largest object of a val image."""
    model, _, val = demo()
    image, target = val[image_index]
    seen = model.inspect([image])
    boxes = resize_boxes(target["boxes"], image.shape[-2:], seen.image_sizes[0])
    chosen = boxes[int(box_area(boxes).argmin() if which == "smallest" else box_area(boxes).argmax())]
    peaks = analysis.objectness_inside(seen, chosen)
    return max(peaks, key=peaks.get).upper()


@cache
def detections(count: int = 30, nms_thresh: float | None = None) -> list[dict[str, torch.Tensor]]:
    """The demo's detections (every score > 0.05) on the first `count` val images."""
    model, _, val = demo()
    images = [val[i][0] for i in range(count)]
    if nms_thresh is None:
        return detect_all(model, images)
    with model.roi_heads.settings(nms_thresh=nms_thresh):
        return detect_all(model, images)


def cross_class_pairs(count: int = 20) -> int:
    """Pairs of the demo's detections of different classes overlapping with IoU > 0.5, over `count` images."""
    return analysis.cross_class_pairs(detections(count))


@cache
def weakest_bucket(count: int = 120) -> str:
    """The size bucket the demo finds least often (a detection scoring >= 0.5 at IoU >= 0.5)."""
    _, _, val = demo()
    stats = recall_by_size(detections(count), [val[i][1] for i in range(count)], score_thresh=0.5)
    return min(stats, key=lambda name: stats[name]["recall"])


def stored(name: str) -> dict[str, Any]:
    """The record results/<name>.json; FpnlabError naming it when it is missing."""
    record = read_result(name)
    if record is None:
        raise FpnlabError(f"results/{name}.json is missing; its notebook says which command makes it.")
    return record


def record_verdict(name: str, variant: str, metric: str, reference: str = "fpn") -> str:
    """The stored ablation record's verdict on `reference` minus `variant`: "higher", "lower" or "no difference"."""
    return compare_rows(stored(name), reference, variant, metric)["verdict"]


def record_mean(name: str, variant: str, metric: str) -> float:
    """The mean over seeds of `metric` for `variant` in a stored ablation record."""
    values = metric_values(stored(name)["runs"], variant, metric)
    return sum(values) / len(values)


@per_model
def anchor_fit(*, model: FPNDetector) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every object of IMAGES val images at the network's input (N, 4), each level's best anchor IoU with it
    (N, L) and the level names: what notebook 03 plots."""
    model, _, val = _with(model)
    boxes, best = [], []
    for index in range(IMAGES):
        image, target = val[index]
        seen = model.inspect([image])
        gt = resize_boxes(target["boxes"], image.shape[-2:], seen.image_sizes[0])
        boxes.append(gt)
        best.append(analysis.best_anchor_iou(gt, {k: v.cpu() for k, v in seen.anchors.items()}))
    return torch.cat(boxes), torch.cat(best), list(seen.anchors)


def best_level(bucket: str) -> str:
    """The level whose anchors fit the objects of a COCO size bucket (at the input) best most often."""
    boxes, best, levels = anchor_fit()
    counts = analysis.best_level_counts(boxes, best, levels)[bucket]
    return max(counts, key=counts.get).upper()


def small_without_p2() -> str:
    """How many objects under 32 px at the input keep an anchor with IoU >= 0.5 without P2: a share in words."""
    boxes, best, _ = anchor_fit()
    small = box_area(boxes) < 32**2
    share = float((best[small][:, 1:].amax(dim=1) >= 0.5).float().mean())
    return "most" if share > 0.6 else "about half" if share > 0.3 else "almost none"


@cache
def wrong_level_spread(image_index: int = 3) -> str:
    """Whether the smallest object's 7 x 7 crop varies "more" or "less" across its bins on the level farthest
    from its own than on its own (analysis.level_crops)."""
    model, _, val = demo()
    image, target = val[image_index]
    seen = model.inspect([image])
    gt = resize_boxes(target["boxes"], image.shape[-2:], seen.image_sizes[0])
    crops = analysis.level_crops(model, seen, gt[int(box_area(gt).argmin())])
    own, farthest = (analysis.bin_spread(crop) for crop in crops.values())
    return "more" if farthest > own else "less"


@cache
def proposals_vs_gt_levels(images: int = 5) -> str:
    """Whether the proposals of the first val images pool from "finer" or "coarser" levels than their gt boxes,
    on average (Eq. 1 with the model's own canonical size)."""
    model, _, val = demo()
    rois, gts = [], []
    for index in range(images):
        image, target = val[index]
        seen = model.inspect([image])
        rois.append(seen.roi_levels[0].cpu().float())
        gt = resize_boxes(target["boxes"], image.shape[-2:], seen.image_sizes[0])
        gts.append(assign_levels(gt, canonical_size=model.config.canonical_size()).float())
    return "finer" if torch.cat(rois).mean() < torch.cat(gts).mean() else "coarser"


@cache
def accuracy_where_higher(image_index: int = 3) -> str:
    """Whether the head's accuracy on one val image's sampled ROIs is higher on "all" of them or the "positives"."""
    model, _, val = demo()
    accuracy = analysis.head_accuracy(model, *val[image_index], seed=0)
    return "all" if accuracy["all"] > accuracy["positives"] else "positives"


@cache
def detections_without_nms(image_index: int = 3) -> str:
    """How many detections above 0.05 one val image has with NMS and the top-100 cap switched off, in words."""
    model, _, val = demo()
    with model.roi_heads.settings(nms_thresh=1.0, detections_per_img=10**6):
        count = len(detect_all(model, [val[image_index][0]])[0]["boxes"])
    return "under 100" if count < 100 else "100 to 1000" if count <= 1000 else "over 1000"


def default_run() -> dict:
    """The stored record of notebook 07's default run (results/notebook07_default.json)."""
    record = read_result("notebook07_default")
    if record is None:
        raise FpnlabError("results/notebook07_default.json is missing: `make notebook-runs` makes it.")
    return record


def rising_loss() -> str:
    """The loss term of the default run that grows most during its first tenth (analysis.first_rise)."""
    rises = analysis.first_rise(default_run()["history"])
    names = {
        "loss_objectness": "objectness",
        "loss_rpn_box_reg": "rpn box regression",
        "loss_classifier": "classifier",
        "loss_box_reg": "box regression",
    }
    return names[max(rises, key=rises.get)]


def rpn_or_head() -> str:
    """Which recall of the default run's model is higher: the RPN's after NMS, or the detector's at score 0.5."""
    recall = default_run()["recall"]
    return "rpn" if recall["rpn_after_nms"] > recall["detections_0.5"] else "detector"
