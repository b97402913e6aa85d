"""Building blocks of every figure: a figure of panels, an image, boxes, a feature map as an image, colours,
and `save_figure`, the one way a figure becomes a PNG file."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from fpnlab.data.coco import AREA_RANGES
from fpnlab.outputs import write_atomic

SOFTWARE = "fpnlab"  # the PNG "Software" text of every figure the lab saves: how it knows its own files

COCO_SIZE_NAMES = tuple(AREA_RANGES)  # small, medium, large
COCO_SIZE_EDGES = tuple(math.sqrt(high) for _, high in list(AREA_RANGES.values())[:-1])  # sqrt(area): 32, 96
LEVEL_COLORS = {
    "p2": "tab:blue",
    "p3": "tab:orange",
    "p4": "tab:green",
    "p5": "tab:red",
    "p6": "tab:purple",
    "c2": "tab:blue",
    "c3": "tab:orange",
    "c4": "tab:green",
    "c5": "tab:red",
}
OURS_COLOR, PAPER_COLOR = "tab:blue", "0.7"
CAPTION_POINTS = (4.3, 10.0)  # a 7-point caption: the width of one character and the height, in points


def save_figure(
    fig: Figure, path: Path, what: str, dpi: int = 100, may_replace: Callable[[Path], bool] | None = None
) -> Path:
    """Write `fig` as a PNG atomically (fpnlab.outputs), stamped as the lab's; it replaces only a PNG the lab
    saved (or what `may_replace` accepts as the lab's), never another file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png", metadata={"Software": SOFTWARE})

    def ours(existing: Path) -> bool:
        return is_lab_png(existing) or (may_replace is not None and may_replace(existing))

    return write_atomic(Path(path), buffer.getvalue(), what, may_replace=ours)


def is_lab_png(path: Path) -> bool:
    """Whether `path` is a PNG that save_figure wrote (its "Software" text says fpnlab)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == SOFTWARE
    except (OSError, ValueError, SyntaxError):
        return False


def new_figure(
    nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (4.0, 4.0), **kwargs: Any
) -> tuple[Figure, np.ndarray]:
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


def draw_masks(ax: Axes, masks: Tensor, labels: Tensor | None = None, alpha: float = 0.45) -> None:
    """Overlay (N, 1, H, W) or (N, H, W) mask probabilities as translucent colour where they are >= 0.5, coloured
    by label (as draw_boxes colours boxes); later masks are drawn over earlier ones."""
    masks = masks.detach().float().cpu().reshape(len(masks), *masks.shape[-2:])  # (N, H, W)
    for i, mask in enumerate(masks):
        colour = category_color(int(labels[i])) if labels is not None else (1.0, 1.0, 0.0, 1.0)
        layer = np.zeros((*mask.shape, 4))  # (H, W, RGBA): transparent outside the mask
        layer[mask.numpy() >= 0.5] = (*colour[:3], alpha)
        ax.imshow(layer, interpolation="nearest")


def draw_boxes(
    ax: Axes,
    boxes: Tensor,
    labels: Tensor | None = None,
    scores: Tensor | None = None,
    categories: Sequence[str] | None = None,
    color: Any = None,
    linewidth: float = 1.5,
    linestyle: str = "-",
) -> None:
    """Draw (N, 4) xyxy boxes; coloured by label unless `color`; captions "name 0.93" when known.

    A caption goes above its box's top-left corner, or inside it, or below it: the first place that does not
    cover an earlier caption of this call (a crowded image keeps its captions readable); with none free, the
    box stays uncaptioned.
    """
    boxes = boxes.detach().cpu()
    taken: list[tuple[float, float, float, float]] = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        label = int(labels[i]) if labels is not None else None
        c = color if color is not None else (category_color(label) if label is not None else "yellow")
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, linewidth=linewidth, linestyle=linestyle)
        )
        caption = []
        if label is not None and categories is not None:
            caption.append(categories[label - 1])
        if scores is not None:
            caption.append(f"{float(scores[i]):.2f}")
        if caption:
            place_caption(ax, " ".join(caption), (x1, y1, x2, y2), c, taken)


def place_caption(
    ax: Axes, text: str, box: tuple[float, float, float, float], color: Any, taken: list[tuple[float, ...]]
) -> None:
    """Put `text` at the first free place by `box` (above, inside, below its top-left corner); record it."""
    x1, y1, x2, y2 = box
    left, right = ax.get_xlim()
    points = ax.get_window_extent().width * 72 / ax.figure.dpi  # the axes' width in points
    char_width, height = (size * abs(right - left) / points for size in CAPTION_POINTS)  # in data pixels
    width = char_width * len(text)
    for y in (y1 - height, y1, y2):  # the caption's top edge, in data pixels (y grows downwards)
        spot = (x1, y, x1 + width, y + height)
        if not any(spot[0] < o[2] and o[0] < spot[2] and spot[1] < o[3] and o[1] < spot[3] for o in taken):
            taken.append(spot)
            ax.text(
                x1,
                y + height,
                text,
                fontsize=7,
                color="white",
                va="bottom",
                bbox=dict(facecolor=color, edgecolor="none", pad=1, alpha=0.8),
            )
            return


def feature_image(feature: Tensor, channel: int | None = None) -> np.ndarray:
    """A feature map as a 2-D array: (C, H, W) or (1, C, H, W) -> (H, W), one channel or the mean |activation|."""
    feature = feature.detach().float().cpu()
    if feature.dim() == 4:
        feature = feature[0]
    return (feature[channel] if channel is not None else feature.abs().mean(dim=0)).numpy()
