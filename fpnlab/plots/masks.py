"""Figures of masks (notebook 09): targets inside their ROIs, a mask head's output per class, masks by level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab.model.poolers import roi_align
from fpnlab.model.segment_proposals import binary_masks
from fpnlab.plots.base import LEVEL_COLORS, new_figure, to_numpy_image


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def roi_mask_targets(image: Tensor, boxes: Tensor, targets: Tensor, titles: Sequence[str], size: float = 2.0) -> Figure:
    """One column per ROI: the image seen through the ROI (RoIAligned like its target) over its M x M mask
    target in [0, 1] (grey: a pixel the object covers only partly)."""
    m = targets.shape[-1]
    crops = roi_align(image[None].float(), [boxes.float()], m, 1.0)  # (R, 3, M, M)
    fig, axes = new_figure(2, len(boxes), (size, size))
    for column, (crop, target, title) in enumerate(zip(crops, targets, titles)):
        axes[0, column].imshow(to_numpy_image(crop), interpolation="nearest")
        axes[0, column].set_title(title, fontsize=9)
        axes[1, column].imshow(target.cpu().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1, column].set_title(f"{m} x {m} target", fontsize=9)
        _bare(axes[0, column])
        _bare(axes[1, column])
    return fig


def class_channels(probabilities: Tensor, categories: Sequence[str], detected: int, size: float = 1.9) -> Figure:
    """A mask head's (K, M, M) probabilities for one ROI, one panel per class (background, channel 0, left out):
    the detected class's panel is framed; the others the head was never trained to match on this object."""
    fig, axes = new_figure(1, len(categories), (size, size))
    for label, (ax, name) in enumerate(zip(axes.flat, categories), start=1):
        ax.imshow(probabilities[label].cpu().numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        chosen = label == detected
        ax.set_title(name + (" (detected)" if chosen else ""), fontsize=9, fontweight="bold" if chosen else "normal")
        _bare(ax)
        for spine in ax.spines.values():
            spine.set_visible(chosen)
            spine.set_linewidth(3)
            spine.set_color("tab:orange")
    return fig


def masks_by_level(image: Tensor, masks: Tensor, levels: Tensor, size: float = 3.0) -> Figure:
    """Binary masks (N, H, W) over the image, one panel per level k (2..5) with the masks whose ROIs it pools."""
    present = sorted(int(k) for k in torch.unique(levels))
    fig, axes = new_figure(1, len(present), (size, size))
    for ax, k in zip(axes.flat, present):
        ax.imshow(to_numpy_image(image))
        chosen = masks[levels == k].any(0).cpu().numpy()  # (H, W)
        overlay = torch.zeros(*chosen.shape, 4).numpy()
        overlay[chosen] = (*to_rgb(LEVEL_COLORS[f"p{k}"]), 0.6)
        ax.imshow(overlay, interpolation="nearest")
        count = int((levels == k).sum())
        ax.set_title(f"P{k}: {count} mask{'s' if count != 1 else ''}", fontsize=10, color=LEVEL_COLORS[f"p{k}"])
        _bare(ax)
    return fig


def segment_proposals_by_level(image: Tensor, proposals: dict[str, Tensor], top: int = 3, size: float = 3.0) -> Figure:
    """A segment proposer's output for one image ({"boxes", "scores", "masks" (K, 1, M, M), "levels"}, best first):
    one panel per level with its `top` best proposals' masks pasted into the image, their regions dashed."""
    present = sorted(int(k) for k in torch.unique(proposals["levels"]))
    fig, axes = new_figure(1, len(present), (size, size))
    for ax, k in zip(axes.flat, present):
        chosen = torch.where(proposals["levels"] == k)[0][:top]
        masks = binary_masks(proposals["masks"][chosen], proposals["boxes"][chosen], tuple(image.shape[-2:]))
        ax.imshow(to_numpy_image(image))
        overlay = torch.zeros(*image.shape[-2:], 4).numpy()
        overlay[masks.any(0).cpu().numpy()] = (*to_rgb(LEVEL_COLORS[f"p{k}"]), 0.6)
        ax.imshow(overlay, interpolation="nearest")
        for x1, y1, x2, y2 in proposals["boxes"][chosen].tolist():
            ax.plot([x1, x2, x2, x1, x1], [y1, y1, y2, y2, y1], "--", color=LEVEL_COLORS[f"p{k}"], linewidth=1)
        scores = ", ".join(f"{s:.2f}" for s in proposals["scores"][chosen].tolist())
        ax.set_title(f"P{k}: best {len(chosen)} ({scores})", fontsize=9, color=LEVEL_COLORS[f"p{k}"])
        ax.set_xlim(0, image.shape[-1])
        ax.set_ylim(image.shape[-2], 0)
        _bare(ax)
    return fig
