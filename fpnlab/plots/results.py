"""Figures of training and results: loss curves, metric bars, ablations beside the paper, detection galleries, and
one image's detections saved as a PNG (`fpnlab detect`)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
from torch import Tensor

from fpnlab.engine.recall import missed_objects
from fpnlab.model.boxes import box_area
from fpnlab.outputs import make_folder
from fpnlab.plots.base import (
    COCO_SIZE_EDGES,
    OURS_COLOR,
    PAPER_COLOR,
    draw_boxes,
    draw_masks,
    image_panels,
    new_figure,
    save_figure,
    show_image,
)


def loss_curves(
    history: Mapping[str, Sequence[float]],
    x: str = "iteration",
    smooth: int = 1,
    title: str = "Training losses",
    reference: Sequence[Sequence[float]] | None = None,
    reference_label: str = "reference run",
) -> Figure:
    """One line per loss column of `history` (columns: x, then loss_*), optionally a running mean of `smooth`.

    `reference`: [(iteration, total loss), ...] of another run (e.g. a stored result), drawn on a panel of
    its own, so a short run is not squeezed against a long one's x axis.
    """
    steps = np.asarray(history[x], dtype=float)
    fig, axes = new_figure(1, 2 if reference else 1, (6.0, 3.8))
    ax = axes[0, 0]
    for name, values in history.items():
        if not name.startswith("loss"):
            continue
        y = np.asarray(values, dtype=float)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[len(steps) - len(y) :], y, label=name, linewidth=2 if name == "loss" else 1.2)
    ax.set(xlabel=x, ylabel="loss", yscale="log", title=title)
    readable_log_ticks(ax)
    ax.legend(fontsize=8)
    if reference:
        ref = np.asarray(reference, dtype=float)  # (n, 2)
        other = axes[0, 1]
        other.plot(ref[:, 0], ref[:, 1], color="0.4", linewidth=2, label="loss")
        other.axvspan(0, steps.max() if len(steps) else 0, color=OURS_COLOR, alpha=0.15, label="the run on the left")
        other.set(xlabel=x, yscale="log", title=reference_label)
        readable_log_ticks(other)
        other.legend(fontsize=8)
    return fig


def readable_log_ticks(ax: Axes) -> None:
    """Label a log axis at 1, 1.5, 2, 3, 5 and 7 times each power of ten, so a range of less than a decade has
    several numbered ticks."""
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def metrics_bars(
    metrics: Mapping[str, float], keys: Sequence[str] | None = None, title: str = "COCO metrics", percent: bool = True
) -> Figure:
    """Bar chart of the chosen metrics (fractions in [0, 1] shown as percentages); pycocotools' -1 (no
    ground truth of that size) draws no bar."""
    keys = list(keys) if keys is not None else list(metrics)
    values = [np.nan if metrics[k] == -1 else (100 * metrics[k] if percent else metrics[k]) for k in keys]
    fig, axes = new_figure(size=(max(4.0, 0.7 * len(keys)), 3.2))
    ax = axes[0, 0]
    bars = ax.bar(range(len(keys)), values, color=OURS_COLOR)
    ax.set_xticks(range(len(keys)), [textwrap.fill(k, 10) for k in keys], fontsize=8)  # long names wrap
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)  # NaN bars get no label
    ax.set_ylim(0, 1.18 * max([v for v in values if v == v] or [1.0]))  # room for the labels inside the frame
    ax.set_ylabel("%" if percent else "value")
    ax.set_title(title)
    return fig


def ablation_bars(
    summary: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Mapping[str, float]] | None,
    metrics: Sequence[str],
    labels: Mapping[str, str] | None = None,
    title: str = "Ablation",
    percent: bool = True,
) -> Figure:
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


def detection_gallery(
    images: Sequence[Tensor],
    detections: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    categories: Sequence[str],
    score_thresh: float = 0.5,
    ncols: int = 3,
    size: float = 4.0,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Detections above `score_thresh` (solid, captioned) over the ground truth: found objects dashed white,
    missed ones (no detection with IoU >= 0.5) dashed red; small objects (area < 32^2) have their own box
    drawn a second time, dotted cyan, at their true size."""
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
        draw_boxes(ax, gt["boxes"][small], color="cyan", linestyle=":", linewidth=2.0)
        if "masks" in det:
            draw_masks(ax, det["masks"][keep], det["labels"][keep])
        draw_boxes(ax, det["boxes"][keep], det["labels"][keep], det["scores"][keep], categories)
    return fig


def save_detections(image: Tensor, detections: dict[str, Tensor], categories: list[str], out: Path) -> Path:
    """Draw the boxes with their class and score (and masks, when there are) over the image, at the image's own
    resolution, as PNG."""
    dpi = 100
    height, width = image.shape[-2:]
    fig = Figure(figsize=(width / dpi, height / dpi))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # the image fills the PNG: no margins
    show_image(ax, image)
    if "masks" in detections:  # a Mask R-CNN's: each object's pixels in its class's colour
        draw_masks(ax, detections["masks"], detections["labels"])
    draw_boxes(ax, detections["boxes"], detections["labels"], detections["scores"], categories)
    make_folder(out.parent, "folder of the detections image")
    return save_figure(fig, out, "detections image", dpi=dpi)
