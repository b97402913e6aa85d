"""Move an anchor location over the image, change its level and aspect ratio (notebook 03)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab import plots
from fpnlab.model.anchors import AnchorGenerator
from fpnlab.model.boxes import box_iou
from fpnlab.model.config import RPNConfig
from fpnlab.model.levels import known_level
from fpnlab.teaching.widgets.panel import Panel, slider


@dataclass
class AnchorView:
    level: str
    cell: tuple[int, int]  # (row, column) of the grid point on that level
    centre: tuple[float, float]  # (x, y) of the grid point in pixels
    anchors: Tensor  # (S, 4) the anchors of the chosen aspect ratio there (one per size)
    all_anchors: Tensor  # (A, 4) every anchor of that location
    best_iou: float  # best IoU of the chosen anchors with any GT box (nan without GT)
    grid_points: int  # H_l * W_l locations on the level
    text: str = ""


class AnchorExplorer:
    """Move an anchor location over the image and change the level and aspect ratio.

    `feature_sizes`: level name -> (H_l, W_l), in the generator's level order; anchors come from
    `generator.grid_anchors` in torchvision's layout (location-major, then ratio-major, size-minor).
    An anchor is labelled as the RPN labels it in training: positive at IoU >= `positive_iou` with a GT
    box, negative below `negative_iou` (Faster R-CNN, Sec. 3.1.2), ignored in between.
    """

    def __init__(
        self,
        image: Tensor,
        generator: AnchorGenerator,
        feature_sizes: Mapping[str, tuple[int, int]],
        gt_boxes: Tensor | None = None,
        positive_iou: float = RPNConfig.fg_iou_thresh,
        negative_iou: float = RPNConfig.bg_iou_thresh,
    ) -> None:
        self.image, self.generator, self.gt_boxes = image, generator, gt_boxes
        self.positive_iou, self.negative_iou = positive_iou, negative_iou
        self.names, self.sizes = list(feature_sizes), [tuple(s) for s in feature_sizes.values()]
        self.anchors = dict(zip(self.names, generator.grid_anchors(tuple(image.shape[-2:]), self.sizes)))

    def update(self, level: str, x: float, y: float, aspect_ratio: float = 1.0) -> AnchorView:
        """The anchors of the grid point at or up-left of pixel (x, y) on `level`, nearest `aspect_ratio` first."""
        index = self.names.index(known_level(level, self.names))
        (h, w), (img_h, img_w) = self.sizes[index], self.image.shape[-2:]
        stride_y, stride_x = img_h // h, img_w // w
        row, col = min(int(y // stride_y), h - 1), min(int(x // stride_x), w - 1)
        ratios, sizes = self.generator.aspect_ratios[index], self.generator.sizes[index]
        here = self.anchors[level].reshape(h, w, len(ratios) * len(sizes), 4)[row, col]  # (A, 4)
        r = ratios.index(min(ratios, key=lambda v: abs(v - aspect_ratio)))
        chosen = here[r * len(sizes) : (r + 1) * len(sizes)]  # (S, 4)
        best = float("nan")
        if self.gt_boxes is not None and len(self.gt_boxes):
            best = float(box_iou(chosen, self.gt_boxes.float()).max())
        view = AnchorView(level, (row, col), (col * stride_x, row * stride_y), chosen, here, best, h * w)
        view.text = self._describe(view, stride_x, ratios[r], sizes)
        return view

    def _describe(self, v: AnchorView, stride: int, ratio: float, sizes: tuple[int, ...]) -> str:
        x1, y1, x2, y2 = v.anchors[0].tolist()
        text = (
            f"{v.level.upper()}: stride {stride}, {v.grid_points} locations x {len(v.all_anchors)} anchors = "
            f"{v.grid_points * len(v.all_anchors)} anchors on this level\n"
            f"location (row {v.cell[0]}, col {v.cell[1]}) = pixel ({v.centre[0]:.0f}, {v.centre[1]:.0f}); "
            f"size {'/'.join(map(str, sizes))}, aspect ratio h/w = {ratio:g}: "
            f"anchor {x2 - x1:.0f} x {y2 - y1:.0f} px"
        )
        if not np.isnan(v.best_iou):
            verdict = (
                "positive"
                if v.best_iou >= self.positive_iou
                else "negative"
                if v.best_iou < self.negative_iou
                else "ignored"
            )
            text += (
                f"\nbest IoU with a GT box: {v.best_iou:.2f} -> {verdict} "
                f"(positive >= {self.positive_iou}, negative < {self.negative_iou})"
            )
        return text

    def render(self, view: AnchorView) -> Figure:
        fig = plots.anchors_figure(
            self.image, {view.level: view.all_anchors}, title=f"{view.level.upper()} anchors", gt_boxes=self.gt_boxes
        )
        ax = fig.axes[0]
        h, w = self.sizes[self.names.index(view.level)]
        stride_y, stride_x = self.image.shape[-2] // h, self.image.shape[-1] // w
        ys, xs = np.meshgrid(np.arange(h) * stride_y, np.arange(w) * stride_x, indexing="ij")
        ax.scatter(xs.ravel(), ys.ravel(), s=1, color="white", alpha=0.5)
        plots.draw_boxes(ax, view.anchors, color="yellow", linewidth=3)
        ax.plot(*view.centre, marker="+", color="yellow", markersize=12)
        return fig

    def widget(self, level: str | None = None) -> Panel:
        img_h, img_w = self.image.shape[-2:]
        ratios = sorted({r for level_ratios in self.generator.aspect_ratios for r in level_ratios})
        controls = {
            "level": widgets.ToggleButtons(
                options=[(n.upper(), n) for n in self.names], value=level or self.names[0], description="level"
            ),
            "x": slider("x", img_w // 2, 0, img_w - 1),
            "y": slider("y", img_h // 2, 0, img_h - 1),
            "aspect_ratio": widgets.SelectionSlider(
                options=ratios, value=1.0 if 1.0 in ratios else ratios[0], description="h/w", continuous_update=False
            ),
        }
        return Panel(controls, self.update, self.render)
