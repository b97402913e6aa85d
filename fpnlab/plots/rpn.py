"""Figures of anchors and the RPN: anchors, best IoU per object, objectness, box panels, training targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from fpnlab.plots.base import LEVEL_COLORS, draw_boxes, new_figure, show_image


def anchors_figure(
    image: Tensor, anchors: Mapping[str, Tensor], title: str | None = None, gt_boxes: Tensor | None = None
) -> Figure:
    """Anchors (each level's (A, 4) boxes at one location) drawn on the image, one colour per level."""
    fig, axes = new_figure(size=(6.0, 6.0))
    ax = axes[0, 0]
    show_image(ax, image, title)
    if gt_boxes is not None:
        draw_boxes(ax, gt_boxes, color="white", linestyle="--", linewidth=1.0)
    for name, boxes in anchors.items():
        draw_boxes(ax, boxes, color=LEVEL_COLORS.get(name, "yellow"), linewidth=1.5)
        ax.plot([], [], color=LEVEL_COLORS.get(name, "yellow"), label=name.upper())
    frame_to(ax, image, torch.cat([torch.as_tensor(b).reshape(-1, 4).cpu() for b in anchors.values()]))
    ax.set_axis_on()
    ax.legend(loc="upper right", fontsize=8)
    return fig


def frame_to(ax: Axes, image: Tensor, boxes: Tensor, margin: float = 0.04) -> None:
    """Limit the view to the image and the boxes that reach past it, plus a small margin."""
    h, w = image.shape[-2:]
    x1 = min(0.0, float(boxes[:, 0].min())) if len(boxes) else 0.0
    y1 = min(0.0, float(boxes[:, 1].min())) if len(boxes) else 0.0
    x2 = max(float(w), float(boxes[:, 2].max())) if len(boxes) else float(w)
    y2 = max(float(h), float(boxes[:, 3].max())) if len(boxes) else float(h)
    pad = margin * max(x2 - x1, y2 - y1)
    ax.set_xlim(x1 - pad, x2 + pad)
    ax.set_ylim(y2 + pad, y1 - pad)


def anchor_iou_scatter(sides: Tensor, best_iou: Tensor, levels: Sequence[str], threshold: float = 0.7) -> Figure:
    """For each GT box (x: sqrt(area)), the best IoU any anchor of each level reaches (y), one colour per level."""
    fig, axes = new_figure(size=(7.0, 3.8))
    ax = axes[0, 0]
    for j, name in enumerate(levels):
        ax.scatter(
            sides.cpu().numpy(),
            best_iou[:, j].cpu().numpy(),
            s=10,
            alpha=0.7,
            color=LEVEL_COLORS.get(name, "k"),
            label=name.upper(),
        )
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
        ax.set_title(f"{name.upper()} objectness {prob.shape[0]}x{prob.shape[1]}", fontsize=11)
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8)
    return fig


def boxes_panels(
    image: Tensor,
    panels: Mapping[str, Tensor],
    scores: Mapping[str, Tensor] | None = None,
    gt_boxes: Tensor | None = None,
    size: float = 4.0,
    max_boxes: int = 300,
    view: Tensor | None = None,
    score_label: str = "score",
) -> Figure:
    """The same image with a different set of boxes per panel, e.g. proposals before / after NMS.

    Only the `max_boxes` best-scoring boxes of a panel are drawn, coloured by score (a colour bar says
    how) where `scores` has the panel; ground truth dashed in white. `view` (x1, y1, x2, y2) zooms every
    panel to that region (with a margin), e.g. one object and its candidates. Titles count the boxes.
    """
    fig, axes = new_figure(1, len(panels), (size, size))
    mapper = None
    for ax, (name, boxes) in zip(axes.flat, panels.items()):
        score = scores.get(name) if scores is not None else None
        order = score.argsort(descending=True) if score is not None else torch.arange(len(boxes))
        order = order[:max_boxes]
        show_image(ax, image, f"{name}: {len(order)} boxes")
        ax.title.set_fontsize(11)
        for i in order.flip(0).tolist():  # best drawn last, on top
            x1, y1, x2, y2 = boxes[i].tolist()
            color = colormaps["plasma"](float(score[i])) if score is not None else "yellow"
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=0.9))
        if gt_boxes is not None:
            draw_boxes(ax, gt_boxes, color="white", linestyle="--", linewidth=1.4)
        if view is not None:
            x1, y1, x2, y2 = view.tolist()
            pad = 0.35 * max(x2 - x1, y2 - y1)
            ax.set_xlim(x1 - pad, x2 + pad)
            ax.set_ylim(y2 + pad, y1 - pad)
        mapper = mapper or (ScalarMappable(Normalize(0, 1), "plasma") if score is not None else None)
    if mapper is not None:
        fig.colorbar(mapper, ax=list(axes.flat), shrink=0.8, label=score_label)
    return fig


def anchor_labels(
    image: Tensor,
    anchors: Tensor,
    labels: Tensor,
    positive: Tensor,
    negative: Tensor,
    gt_boxes: Tensor,
    size: float = 4.5,
    negatives_shown: int = 40,
) -> Figure:
    """How the RPN labels one image's anchors for training (fpnlab.teaching.analysis.AnchorTargets):

    left, every positive anchor (IoU >= 0.7, or an object's best) in green and `negatives_shown` of the
    ignored ones dotted yellow (all of them would cover the image in a mesh); right, the balanced mini-batch
    it trains on: the sampled positives, and `negatives_shown` of its negatives.
    """
    fig, axes = new_figure(1, 2, (size, size))
    left, right = axes[0]
    show_image(
        left,
        image,
        f"{int((labels == 1).sum())} positive, {int((labels == -1).sum())} ignored, "
        f"{int((labels == 0).sum())} negative anchors",
    )
    ignored = torch.where(labels == -1)[0]
    some = ignored[torch.randperm(len(ignored), generator=torch.Generator().manual_seed(0))[:negatives_shown]]
    draw_boxes(left, anchors[some], color="yellow", linestyle=":", linewidth=0.8)
    draw_boxes(left, anchors[labels == 1], color="lime", linewidth=1.0)
    show_image(right, image, f"sampled: {len(positive)} positive + {len(negative)} negative")
    draw_boxes(right, anchors[negative[:negatives_shown]], color="red", linewidth=0.6)
    draw_boxes(right, anchors[positive], color="lime", linewidth=1.0)
    for ax in (left, right):
        ax.title.set_fontsize(10)
        draw_boxes(ax, gt_boxes, color="white", linestyle="--", linewidth=1.4)
        frame_to(ax, image, torch.cat([anchors[labels == 1], anchors[positive]]))
    return fig


def refinement(image: Tensor, steps: Mapping[str, object], size: float = 4.0) -> Figure:
    """One anchor becoming a proposal (fpnlab.teaching.analysis.refine_anchor), zoomed on the object, in three panels:
    the anchor, the anchor moved by the RPN's deltas, and the proposal that survived NMS."""
    fig, axes = new_figure(1, 3, (size, size))
    dx, dy, dw, dh = steps["deltas"].tolist()
    panels = (  # (title, [(box, colour), ...])
        (
            f"best anchor (orange): IoU {steps['iou_anchor']:.2f}, p(object) {steps['objectness']:.2f}",
            [(steps["anchor"], "orange")],
        ),
        (
            f"moved (green) by tx {dx:+.2f} ty {dy:+.2f}\ntw {dw:+.2f} th {dh:+.2f}: IoU {steps['iou']:.2f}",
            [(steps["anchor"], "orange"), (steps["clipped"], "lime")],
        ),
        (f"proposal kept after NMS (IoU {steps['kept_iou']:.2f} with the moved anchor)", [(steps["kept"], "lime")]),
    )
    everything = torch.stack([steps["gt"], steps["anchor"], steps["clipped"], steps["kept"]])
    for ax, (title, boxes) in zip(axes[0], panels):
        show_image(ax, image, title)
        ax.title.set_fontsize(9)
        draw_boxes(ax, steps["gt"][None], color="white", linestyle="--", linewidth=1.5)
        for box, color in boxes:
            draw_boxes(ax, box[None], color=color, linewidth=2.0)
        x1, y1 = everything[:, :2].min(0).values.tolist()
        x2, y2 = everything[:, 2:].max(0).values.tolist()
        pad = 0.15 * max(x2 - x1, y2 - y1)
        ax.set_xlim(x1 - pad, x2 + pad)
        ax.set_ylim(y2 + pad, y1 - pad)
    return fig


def gain_histogram(gains: Tensor, title: str = "IoU after refinement minus before", bins: int = 30) -> Figure:
    """How a step changed each object's IoU (N,): a histogram around 0, with how many rose and how many fell."""
    values = gains.detach().cpu().float().numpy()
    fig, axes = new_figure(size=(5.0, 3.2))
    ax = axes[0, 0]
    ax.hist(values, bins=bins, color="0.6")
    ax.axvline(0.0, color="k", linewidth=1)
    rose, fell = int((values > 0).sum()), int((values < 0).sum())
    ax.set(xlabel="IoU gain", ylabel="objects", title=f"{title}\n{rose} rose, {fell} fell, of {len(values)}")
    return fig
