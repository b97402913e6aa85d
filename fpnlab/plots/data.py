"""Figures of the data: image grids with their boxes, object sizes by COCO bucket."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab.plots.base import COCO_SIZE_EDGES, COCO_SIZE_NAMES, draw_boxes, image_panels, new_figure, show_image


def image_grid(
    images: Sequence[Tensor],
    targets: Sequence[Mapping[str, Tensor]],
    categories: Sequence[str],
    ncols: int = 4,
    size: float = 3.0,
    titles: Sequence[str] | None = None,
) -> Figure:
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
