"""Figures of the pyramid: feature maps by level, the pyramid as slabs, ROIs per level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from torch import Tensor

from fpnlab.model.levels import level_number
from fpnlab.plots.base import LEVEL_COLORS, feature_image, new_figure, show_image


def feature_grid(
    features: Mapping[str, Tensor],
    channel: int | None = None,
    image: Tensor | None = None,
    size: float = 2.6,
    title: str | None = None,
    overlay: bool = False,
) -> Figure:
    """One panel per map (c2..c5, p2..p6 or any names), each titled with its shape and with its own colour bar;
    optionally the image first.

    `channel=None` shows the mean absolute activation over channels, else that channel. Each panel keeps
    its own pixel grid, so coarser levels look blockier: the loss of resolution is visible. `overlay=True`
    draws every map half transparent over `image` (the network's input), so a 10 x 10 map reads as blocks
    over the objects rather than as a patch of noise.
    """
    panels = ([("image", image)] if image is not None and not overlay else []) + list(features.items())
    fig, axes = new_figure(1, len(panels), (size * 1.15, size))
    for ax, (name, value) in zip(axes.flat, panels):
        if name == "image":
            show_image(ax, value, f"image {value.shape[-2]}x{value.shape[-1]}")
            continue
        c, h, w = value.shape[-3:]
        extent = None
        if overlay and image is not None:
            show_image(ax, image)
            extent = (0, image.shape[-1], image.shape[-2], 0)
        shown = ax.imshow(
            feature_image(value, channel),
            cmap="viridis",
            interpolation="nearest",
            extent=extent,
            alpha=0.65 if extent else 1.0,
        )
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        label = name.upper() if name in LEVEL_COLORS else name  # "p2" -> "P2"; free-form names as given
        ax.set_title(f"{label}: {c}x{h}x{w}", fontsize=10, color=LEVEL_COLORS.get(name, "k"))
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def draw_pyramid(
    ax: Axes,
    levels: Sequence[str] = ("p2", "p3", "p4", "p5"),
    highlight: str | None = None,
    shapes: Mapping[str, tuple[int, int]] | None = None,
    marker: float | None = None,
) -> None:
    """The pyramid as stacked slabs, finest (widest) at the bottom; `highlight` is filled in its colour.

    `shapes` adds each level's H x W to its label; `marker` (a continuous level k, e.g. 3.4) draws an
    arrow at that height, between the slabs of floor(k) and floor(k) + 1.
    """
    n = len(levels)
    for i, name in enumerate(levels):
        label = f"{name.upper()}  stride {2 ** level_number(name)}"
        if shapes is not None and name in shapes:
            label += f"  {shapes[name][0]}x{shapes[name][1]}"
        draw_slab(ax, i, 1.0 - 0.7 * i / max(n - 1, 1), name, label, chosen=name == highlight)
    if marker is not None:
        first = level_number(levels[0])
        y = min(max(marker - first, -0.4), n + 0.2) + 0.4  # level k's slab is centred at height k - first + 0.4
        ax.annotate(
            f"k = {marker:.2f}",
            xy=(1.05, y),
            xytext=(1.6, y),
            va="center",
            fontsize=9,
            arrowprops=dict(arrowstyle="->", color="k"),
        )
    ax.set_xlim(-1.1, 2.3)
    ax.set_ylim(-0.6, n + 0.4)
    ax.set_axis_off()


def draw_slab(ax: Axes, i: int, half: float, name: str, label: str, chosen: bool) -> None:
    """Slab `i` of the pyramid (height i..i + 0.8, half width `half`) with its label; filled when `chosen`."""
    corners = [(-half, i), (half, i), (half * 0.9, i + 0.8), (-half * 0.9, i + 0.8)]
    fill = LEVEL_COLORS.get(name, "0.5") if chosen else "0.92"
    edge = LEVEL_COLORS.get(name, "k")
    ax.add_patch(Polygon(corners, closed=True, facecolor=fill, edgecolor=edge, linewidth=3 if chosen else 1))
    ax.text(
        0,
        i + 0.4,
        label,
        ha="center",
        va="center",
        fontsize=9,
        fontweight="bold" if chosen else "normal",
        color="white" if chosen else "k",
    )


def pyramid_figure(
    levels: Sequence[str] = ("p2", "p3", "p4", "p5"),
    highlight: str | None = None,
    shapes: Mapping[str, tuple[int, int]] | None = None,
    marker: float | None = None,
    title: str | None = None,
) -> Figure:
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
    ax.bar_label(bars, labels=[str(c) for c in counts], padding=2)
    ax.set_ylim(0, 1.18 * max(max(counts), 1))  # room for the labels inside the frame
    ax.set_ylabel("boxes")
    ax.set_title(f"{title} ({sum(counts)} boxes)")
    return fig
