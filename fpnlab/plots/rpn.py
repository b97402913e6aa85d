"""Figures of anchors and the RPN: anchors on the image, best IoU per object, objectness maps, box panels."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from fpnlab.plots.base import LEVEL_COLORS, draw_boxes, new_figure, show_image


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
