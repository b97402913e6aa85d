"""Figures for the notebooks: every picture the lab draws, one function each.

Each function takes tensors (images (3, H, W) in [0, 1], boxes (N, 4) xyxy in pixels, feature maps
(C, H, W) or (1, C, H, W)) and returns a `matplotlib.figure.Figure` that is not registered with
pyplot: a notebook shows it by leaving it as the cell's last value, and nothing leaks between calls.
The numbers come from the stage modules; these functions only draw.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Polygon, Rectangle
from torch import Tensor

from fpnlab.boxes import box_area
from fpnlab.data.coco import AREA_RANGES
from fpnlab.levels import level_number
from fpnlab.recall import missed_objects

COCO_SIZE_NAMES = tuple(AREA_RANGES)  # small, medium, large
COCO_SIZE_EDGES = tuple(math.sqrt(high) for _, high in list(AREA_RANGES.values())[:-1])  # sqrt(area): 32, 96
LEVEL_COLORS = {"p2": "tab:blue", "p3": "tab:orange", "p4": "tab:green", "p5": "tab:red", "p6": "tab:purple",
                "c2": "tab:blue", "c3": "tab:orange", "c4": "tab:green", "c5": "tab:red"}
OURS_COLOR, PAPER_COLOR = "tab:blue", "0.7"


# --- building blocks ------------------------------------------------------------------------------

def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (4.0, 4.0),
               **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure of nrows x ncols axes, each `size` inches: (figure, 2-D array of axes)."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def image_panels(count: int, ncols: int, size: float) -> tuple[Figure, list[Axes]]:
    """A grid of square panels for `count` images, row by row; the unused panels of the last row hidden."""
    fig, axes = new_figure(math.ceil(count / ncols), ncols, (size, size))
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:count])


def to_numpy_image(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) numpy array for imshow."""
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def show_image(ax: Axes, image: Tensor, title: str | None = None) -> None:
    ax.imshow(to_numpy_image(image))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)


def category_color(label: int) -> Any:
    """A fixed colour per class label (tab10, label 1 first)."""
    return colormaps["tab10"]((int(label) - 1) % 10)


def draw_boxes(ax: Axes, boxes: Tensor, labels: Tensor | None = None, scores: Tensor | None = None,
               categories: Sequence[str] | None = None, color: Any = None, linewidth: float = 1.5,
               linestyle: str = "-") -> None:
    """Draw (N, 4) xyxy boxes; coloured by label unless `color`; captions "name 0.93" when known."""
    boxes = boxes.detach().cpu()
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        label = int(labels[i]) if labels is not None else None
        c = color if color is not None else (category_color(label) if label is not None else "yellow")
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, linewidth=linewidth,
                               linestyle=linestyle))
        caption = []
        if label is not None and categories is not None:
            caption.append(categories[label - 1])
        if scores is not None:
            caption.append(f"{float(scores[i]):.2f}")
        if caption:
            ax.text(x1, y1, " ".join(caption), fontsize=7, color="white", va="bottom",
                    bbox=dict(facecolor=c, edgecolor="none", pad=1, alpha=0.8))


def feature_image(feature: Tensor, channel: int | None = None) -> np.ndarray:
    """A feature map as a 2-D array: (C, H, W) or (1, C, H, W) -> (H, W), one channel or the mean |activation|."""
    feature = feature.detach().float().cpu()
    if feature.dim() == 4:
        feature = feature[0]
    return (feature[channel] if channel is not None else feature.abs().mean(dim=0)).numpy()


# --- data -----------------------------------------------------------------------------------------

def image_grid(images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]], categories: Sequence[str],
               ncols: int = 4, size: float = 3.0, titles: Sequence[str] | None = None) -> Figure:
    """Images with their ground-truth boxes, coloured and captioned by class."""
    fig, axes = image_panels(len(images), ncols, size)
    for i, ax in enumerate(axes):
        title = titles[i] if titles is not None else f"{len(targets[i]['boxes'])} objects"
        show_image(ax, images[i], title)
        draw_boxes(ax, targets[i]["boxes"], targets[i]["labels"], categories=categories)
    return fig


def size_histogram(areas: Tensor, bins: int = 40, title: str = "Object sizes") -> Figure:
    """Histogram of sqrt(object area) on a log axis, COCO's small / medium / large buckets shaded and counted.

    `areas` (N,) are the annotations' `area` fields, which COCO's evaluation buckets by (not the box area).
    """
    side = torch.sqrt(areas.detach().cpu().double()).numpy()  # (N,)
    counts = np.bincount(np.digitize(side, COCO_SIZE_EDGES), minlength=3)
    fig, axes = new_figure(size=(7.0, 3.5))
    ax = axes[0, 0]
    lo, hi = max(side.min(), 1.0) / 1.2, side.max() * 1.2
    ax.hist(side, bins=np.geomspace(lo, hi, bins), color="0.3", zorder=2)
    ax.set_xscale("log")
    edges = (lo, *COCO_SIZE_EDGES, hi)
    colors = ("tab:red", "tab:orange", "tab:green")
    for low, high, name, n, color in zip(edges[:-1], edges[1:], COCO_SIZE_NAMES, counts, colors):
        ax.axvspan(low, high, color=color, alpha=0.2, zorder=0, label=f"{name}: {n} ({100 * n / len(side):.0f}%)")
    for edge in COCO_SIZE_EDGES:
        ax.axvline(edge, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("sqrt(object area) in pixels (COCO limits: 32, 96)")
    ax.set_ylabel("objects")
    ax.set_title(f"{title}: {len(side)} objects")
    ax.legend(loc="upper left", fontsize=8)
    return fig


# --- the pyramid ----------------------------------------------------------------------------------

def feature_grid(features: Mapping[str, Tensor], channel: int | None = None, image: Tensor | None = None,
                 size: float = 2.6, title: str | None = None) -> Figure:
    """One panel per level (c2..c5 or p2..p6), each titled with its shape; optionally the image first.

    `channel=None` shows the mean absolute activation over channels, else that channel. Each panel keeps
    its own pixel grid, so coarser levels look blockier: the loss of resolution is visible.
    """
    panels = ([("image", image)] if image is not None else []) + list(features.items())
    fig, axes = new_figure(1, len(panels), (size, size))
    for ax, (name, value) in zip(axes.flat, panels):
        if name == "image":
            show_image(ax, value, f"image {value.shape[-2]}x{value.shape[-1]}")
            continue
        c, h, w = value.shape[-3:]
        ax.imshow(feature_image(value, channel), cmap="viridis", interpolation="nearest")
        label = name.upper() if name in LEVEL_COLORS else name  # "p2" -> "P2"; free-form names as given
        ax.set_title(f"{label}: {c}x{h}x{w}", fontsize=10, color=LEVEL_COLORS.get(name, "k"))
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def draw_pyramid(ax: Axes, levels: Sequence[str] = ("p2", "p3", "p4", "p5"), highlight: str | None = None,
                 shapes: Mapping[str, tuple[int, int]] | None = None, marker: float | None = None) -> None:
    """The pyramid as stacked slabs, finest (widest) at the bottom; `highlight` is filled in its colour.

    `shapes` adds each level's H x W to its label; `marker` (a continuous level k, e.g. 3.4) draws an
    arrow at that height, between the slabs of floor(k) and floor(k) + 1.
    """
    n = len(levels)
    for i, name in enumerate(levels):
        half = 1.0 - 0.7 * i / max(n - 1, 1)  # half width: 1 at the bottom, 0.3 at the top
        chosen = name == highlight
        ax.add_patch(Polygon([(-half, i), (half, i), (half * 0.9, i + 0.8), (-half * 0.9, i + 0.8)],
                             closed=True, facecolor=LEVEL_COLORS.get(name, "0.5") if chosen else "0.92",
                             edgecolor=LEVEL_COLORS.get(name, "k"), linewidth=3 if chosen else 1))
        label = f"{name.upper()}  stride {2 ** level_number(name)}"
        if shapes is not None and name in shapes:
            label += f"  {shapes[name][0]}x{shapes[name][1]}"
        ax.text(0, i + 0.4, label, ha="center", va="center", fontsize=9,
                fontweight="bold" if chosen else "normal", color="white" if chosen else "k")
    if marker is not None:
        first = level_number(levels[0])
        y = min(max(marker - first, -0.4), n + 0.2) + 0.4  # level k's slab is centred at height k - first + 0.4
        ax.annotate(f"k = {marker:.2f}", xy=(1.05, y), xytext=(1.6, y), va="center", fontsize=9,
                    arrowprops=dict(arrowstyle="->", color="k"))
    ax.set_xlim(-1.1, 2.3)
    ax.set_ylim(-0.6, n + 0.4)
    ax.set_axis_off()


def pyramid_figure(levels: Sequence[str] = ("p2", "p3", "p4", "p5"), highlight: str | None = None,
                   shapes: Mapping[str, tuple[int, int]] | None = None, marker: float | None = None,
                   title: str | None = None) -> Figure:
    fig, axes = new_figure(size=(4.5, 3.5))
    draw_pyramid(axes[0, 0], levels, highlight, shapes, marker)
    if title:
        axes[0, 0].set_title(title)
    return fig


def level_histogram(levels: Tensor, k_min: int = 2, k_max: int = 5, title: str = "ROIs per pyramid level") -> Figure:
    """Bar chart of how many boxes each level k_min..k_max receives."""
    ks = list(range(k_min, k_max + 1))
    counts = torch.bincount(levels.detach().cpu().long() - k_min, minlength=len(ks))[: len(ks)].tolist()
    fig, axes = new_figure(size=(5.0, 3.2))
    ax = axes[0, 0]
    bars = ax.bar([f"P{k}" for k in ks], counts, color=[LEVEL_COLORS[f"p{k}"] for k in ks])
    ax.bar_label(bars, labels=[str(c) for c in counts])
    ax.set_ylabel("boxes")
    ax.set_title(f"{title} ({sum(counts)} boxes)")
    return fig


# --- anchors and the RPN --------------------------------------------------------------------------

def anchors_figure(image: Tensor, anchors: Mapping[str, Tensor], title: str | None = None,
                   gt_boxes: Tensor | None = None) -> Figure:
    """Anchors (each level's (A, 4) boxes at one location) drawn on the image, one colour per level."""
    fig, axes = new_figure(size=(6.0, 6.0))
    ax = axes[0, 0]
    show_image(ax, image, title)
    if gt_boxes is not None:
        draw_boxes(ax, gt_boxes, color="white", linestyle="--", linewidth=1.0)
    for name, boxes in anchors.items():
        draw_boxes(ax, boxes, color=LEVEL_COLORS.get(name, "yellow"), linewidth=1.5)
        ax.plot([], [], color=LEVEL_COLORS.get(name, "yellow"), label=name.upper())
    h, w = image.shape[-2:]
    ax.set_xlim(-0.25 * w, 1.25 * w)  # big anchors reach past the image border
    ax.set_ylim(1.25 * h, -0.25 * h)
    ax.set_axis_on()
    ax.legend(loc="upper right", fontsize=8)
    return fig


def anchor_iou_scatter(sides: Tensor, best_iou: Tensor, levels: Sequence[str], threshold: float = 0.7) -> Figure:
    """For each GT box (x: sqrt(area)), the best IoU any anchor of each level reaches (y), one colour per level."""
    fig, axes = new_figure(size=(7.0, 3.8))
    ax = axes[0, 0]
    for j, name in enumerate(levels):
        ax.scatter(sides.cpu().numpy(), best_iou[:, j].cpu().numpy(), s=10, alpha=0.7,
                   color=LEVEL_COLORS.get(name, "k"), label=name.upper())
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"RPN positive IoU {threshold}")
    ax.set_xscale("log")
    ax.set_xlabel("GT box sqrt(area) in pixels")
    ax.set_ylabel("best anchor IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncols=2)
    ax.set_title("Which level has an anchor that fits each object?")
    return fig


def objectness_maps(image: Tensor, logits: Mapping[str, Tensor], size: float = 2.8) -> Figure:
    """The RPN's objectness per level: sigmoid of the logits, max over the A anchors of a location."""
    fig, axes = new_figure(1, len(logits) + 1, (size, size))
    show_image(axes[0, 0], image, "image")
    for ax, (name, value) in zip(axes[0, 1:], logits.items()):
        value = value.detach().float().cpu()
        prob = torch.sigmoid(value[0] if value.dim() == 4 else value).amax(dim=0)  # (H, W)
        im = ax.imshow(prob.numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{name.upper()} objectness {prob.shape[0]}x{prob.shape[1]}", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8)
    return fig


def boxes_panels(image: Tensor, panels: Mapping[str, Tensor], scores: Mapping[str, Tensor] | None = None,
                 gt_boxes: Tensor | None = None, size: float = 4.0, max_boxes: int = 300) -> Figure:
    """The same image with a different set of boxes per panel, e.g. proposals before / after NMS.

    Only the `max_boxes` best-scoring boxes of a panel are drawn, coloured by score (yellow: high) where
    `scores` has the panel; ground truth dashed in white. Titles count the boxes drawn.
    """
    fig, axes = new_figure(1, len(panels), (size, size))
    for ax, (name, boxes) in zip(axes.flat, panels.items()):
        score = scores.get(name) if scores is not None else None
        order = score.argsort(descending=True) if score is not None else torch.arange(len(boxes))
        order = order[:max_boxes]
        show_image(ax, image, f"{name}: {len(order)} boxes")
        for i in order.flip(0).tolist():  # best drawn last, on top
            x1, y1, x2, y2 = boxes[i].tolist()
            color = colormaps["plasma"](float(score[i])) if score is not None else "yellow"
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=0.8))
        if gt_boxes is not None:
            draw_boxes(ax, gt_boxes, color="white", linestyle="--", linewidth=1.2)
    return fig


# --- training and results -------------------------------------------------------------------------

def loss_curves(history: Mapping[str, Sequence[float]], x: str = "iteration", smooth: int = 1,
                title: str = "Training losses", reference: Sequence[Sequence[float]] | None = None,
                reference_label: str = "reference run") -> Figure:
    """One line per loss column of `history` (columns: x, then loss_*), optionally a running mean of `smooth`.

    `reference`: [(iteration, total loss), ...] of another run (e.g. a stored result), drawn dashed grey.
    """
    steps = np.asarray(history[x], dtype=float)
    fig, axes = new_figure(size=(7.0, 3.8))
    ax = axes[0, 0]
    for name, values in history.items():
        if not name.startswith("loss"):
            continue
        y = np.asarray(values, dtype=float)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[len(steps) - len(y):], y, label=name, linewidth=2 if name == "loss" else 1.2)
    if reference:
        ref = np.asarray(reference, dtype=float)  # (n, 2)
        ax.plot(ref[:, 0], ref[:, 1], color="0.5", linestyle="--", linewidth=1.5, label=reference_label)
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def metrics_bars(metrics: Mapping[str, float], keys: Sequence[str] | None = None, title: str = "COCO metrics",
                 percent: bool = True) -> Figure:
    """Bar chart of the chosen metrics (fractions in [0, 1] shown as percentages); pycocotools' -1 (no
    ground truth of that size) draws no bar."""
    keys = list(keys) if keys is not None else list(metrics)
    values = [np.nan if metrics[k] == -1 else (100 * metrics[k] if percent else metrics[k]) for k in keys]
    fig, axes = new_figure(size=(max(4.0, 0.7 * len(keys)), 3.2))
    ax = axes[0, 0]
    bars = ax.bar(keys, values, color=OURS_COLOR)
    ax.bar_label(bars, fmt="%.1f", fontsize=8)  # NaN bars get no label
    ax.set_ylabel("%" if percent else "value")
    ax.set_title(title)
    return fig


def ablation_bars(summary: Mapping[str, Mapping[str, Any]], paper: Mapping[str, Mapping[str, float]] | None,
                  metrics: Sequence[str], labels: Mapping[str, str] | None = None,
                  title: str = "Ablation", percent: bool = True) -> Figure:
    """Grouped bars: one panel per metric (e.g. AR_s, AR_m, AR_l), one group per variant, ours beside the paper's.

    `summary[variant][metric]` is a number or {"mean", "std"} (std drawn as an error bar); `paper[variant]
    [metric]` is the paper's number in percent. A variant the paper lacks gets no grey bar; one we did not
    run gets no blue bar: nothing is filled in.
    """
    variants = list(summary) if summary else list(paper or {})
    fig, axes = new_figure(1, len(metrics), (max(3.0, 0.55 * len(variants) + 1.0), 3.6), sharey=True)
    x = np.arange(len(variants))
    for ax, metric in zip(axes.flat, metrics):
        stats = [_mean_std(summary.get(v, {}).get(metric), percent) for v in variants]  # (mean, std) per variant
        ours, err = [m for m, _ in stats], [0.0 if np.isnan(e) else e for _, e in stats]
        theirs = [(paper or {}).get(v, {}).get(metric, np.nan) for v in variants]
        ax.bar(x - 0.2, ours, 0.4, yerr=err, color=OURS_COLOR, label="ours")
        ax.bar(x + 0.2, theirs, 0.4, color=PAPER_COLOR, label="paper")
        ax.set_xticks(x, [(labels or {}).get(v, v) for v in variants], rotation=45, ha="right", fontsize=8)
        ax.set_title(metric)
    axes[0, 0].set_ylabel("%" if percent else "value")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def _mean_std(value: Any, percent: bool) -> tuple[float, float]:
    """A summary entry ({"mean", "std"}, a number or None) as (mean, std), scaled to percent; NaN when absent."""
    scale = 100.0 if percent else 1.0
    if value is None:
        return np.nan, np.nan
    if isinstance(value, Mapping):
        return scale * value["mean"], scale * value.get("std", 0.0)
    return scale * float(value), 0.0


def detection_gallery(images: Sequence[Tensor], detections: Sequence[Mapping[str, Tensor]],
                      targets: Sequence[Mapping[str, Tensor]], categories: Sequence[str],
                      score_thresh: float = 0.5, ncols: int = 3, size: float = 4.0,
                      titles: Sequence[str] | None = None) -> Figure:
    """Detections above `score_thresh` (solid, captioned) over the ground truth: found objects dashed white,
    missed ones (no detection with IoU >= 0.5) dashed red; small objects (area < 32^2) circled in cyan."""
    fig, axes = image_panels(len(images), ncols, size)
    for i, ax in enumerate(axes):
        det, gt = detections[i], targets[i]
        keep = det["scores"] >= score_thresh
        missed = missed_objects(gt["boxes"], det["boxes"][keep])
        title = titles[i] if titles is not None else f"{int(missed.sum())} of {len(missed)} objects missed"
        show_image(ax, images[i], title)
        draw_boxes(ax, gt["boxes"][~missed], color="white", linestyle="--", linewidth=1.0)
        draw_boxes(ax, gt["boxes"][missed], color="red", linestyle="--", linewidth=1.5)
        area = gt["area"] if "area" in gt else box_area(gt["boxes"].float())  # COCO buckets by annotation area
        small = torch.sqrt(area) < COCO_SIZE_EDGES[0]
        for x1, y1, x2, y2 in gt["boxes"][small].tolist():
            ax.add_patch(Circle(((x1 + x2) / 2, (y1 + y2) / 2), 0.75 * max(x2 - x1, y2 - y1) + 3, fill=False,
                                edgecolor="cyan", linewidth=1.0))
        draw_boxes(ax, det["boxes"][keep], det["labels"][keep], det["scores"][keep], categories)
    return fig
