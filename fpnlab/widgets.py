"""Slider widgets for the notebooks: plain ipywidgets 8 + matplotlib, so they run in JupyterLab 4 and Colab.

Every explorer is a small class with three parts:

    update(**values) -> state      computes everything the widget shows (plain Python, no browser:
                                   the tests call it directly); the state carries a one-paragraph `text`
    render(state) -> Figure        draws the state with fpnlab.plots
    widget() -> Panel              wires sliders to update + render

    explorer = LevelAssignmentExplorer(image, features)
    explorer.update(width=64, height=64).level      # 2
    explorer.widget()                               # sliders in a notebook

The numbers come from the stage modules (levels.assign_levels, poolers.roi_align, anchors.AnchorGenerator);
nothing here re-implements them.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import display
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab import plots
from fpnlab.anchors import AnchorGenerator
from fpnlab.boxes import box_iou
from fpnlab.model_config import RPNConfig
from fpnlab.levels import assign_levels, continuous_level, level_number
from fpnlab.poolers import roi_align

FARTHEST = "farthest"  # the level-explorer's default comparison: the level farthest from the chosen one


class Panel:
    """Controls wired to an update function; the latest state's text and figure are shown below them.

    `panel.controls[name].value = v` recomputes `panel.state` (a notebook or a test may do it); displaying
    the panel displays `panel.ui`.
    """

    def __init__(self, controls: Mapping[str, widgets.ValueWidget], update: Callable[..., Any],
                 render: Callable[[Any], Figure]) -> None:
        self.controls, self.update, self.render = dict(controls), update, render
        self.text = widgets.HTML()
        self.output = widgets.Output()
        self.state: Any = None
        for control in self.controls.values():
            control.observe(self.refresh, names="value")
        sliders = widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.ui = widgets.VBox([sliders, self.text, self.output])
        self.refresh()

    def refresh(self, change: Any = None) -> None:
        self.state = self.update(**{name: control.value for name, control in self.controls.items()})
        self.text.value = f"<pre style='line-height:1.3'>{html.escape(self.state.text)}</pre>"
        figure = self.render(self.state)
        with self.output:
            self.output.clear_output(wait=True)
            display(figure)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.ui._repr_mimebundle_(**kwargs)


def _slider(description: str, value: int, low: int, high: int, step: int = 1) -> widgets.IntSlider:
    """An integer slider that updates when released (each update redraws a figure)."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style={"description_width": "initial"})


# --- ROI-to-level assignment (FPN paper, Eq. 1) ---------------------------------------------------

@dataclass
class LevelState:
    box: Tensor  # (4,) the ROI, xyxy pixels
    continuous: float  # k0 + log2(sqrt(w h) / canonical size): Eq. 1 before the floor
    floored: int  # floor(k), not yet clamped
    level: int  # clamped to the pyramid's levels: the level that pools this ROI
    compare_level: int  # the "wrong" level shown beside it
    crops: dict[str, Tensor] = field(default_factory=dict)  # "image" -> (3, 7, 7); "p<k>" -> (C, 7, 7)
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)  # ROI size in feature cells, per level
    text: str = ""


class LevelAssignmentExplorer:
    """Which pyramid level pools an ROI of a given size (FPN paper, Eq. 1), and what its 7 x 7 RoIAlign
    crop looks like there compared with a wrong level.

    `features`: "p2".."p5" -> (1, C, H/2^k, W/2^k) for `image` (3, H, W); the ROI is centred on (x, y).
    """

    def __init__(self, image: Tensor, features: Mapping[str, Tensor], output_size: int = 7,
                 sampling_ratio: int = 2, canonical_size: float = 224.0) -> None:
        self.image, self.output_size, self.sampling_ratio = image, output_size, sampling_ratio
        self.canonical_size = canonical_size  # the sliders' start: the model's own (DetectorConfig.canonical_size())
        self.features = {name: f for name, f in features.items() if name != "p6"}  # P6 carries anchors only
        self.ks = [level_number(name) for name in self.features]  # level numbers k, "p3" -> 3

    def update(self, width: float, height: float, canonical_level: int = 4, canonical_size: float | None = None,
               x: float | None = None, y: float | None = None, compare_level: int | str | None = None) -> LevelState:
        """Eq. 1 for a width x height ROI centred on (x, y); compare_level None or "farthest": the level farthest
        from the chosen one."""
        canonical_size = self.canonical_size if canonical_size is None else canonical_size
        h_img, w_img = self.image.shape[-2:]
        x = w_img / 2 if x is None else x
        y = h_img / 2 if y is None else y
        box = torch.tensor([[x - width / 2, y - height / 2, x + width / 2, y + height / 2]], dtype=torch.float32)
        k = float(continuous_level(float(width), float(height), canonical_size, canonical_level))
        unclamped = int(assign_levels(box, -100, 100, canonical_size, canonical_level)[0])
        level = int(assign_levels(box, self.ks[0], self.ks[-1], canonical_size, canonical_level)[0])
        if compare_level in (None, FARTHEST):  # the level farthest from the chosen one
            compare_level = self.ks[0] if level - self.ks[0] >= self.ks[-1] - level else self.ks[-1]
        crops = {"image": self._crop(self.image[None].float(), box, 1.0)}  # (3, 7, 7)
        for kk in (level, compare_level):
            crops[f"p{kk}"] = self._crop(self.features[f"p{kk}"], box, 2.0 ** -kk)  # (C, 7, 7)
        cells = {f"p{kk}": (width / 2 ** kk, height / 2 ** kk) for kk in self.ks}
        state = LevelState(box[0], k, unclamped, level, compare_level, crops, cells)
        state.text = self._describe(state, width, height, canonical_level, canonical_size)
        return state

    def _crop(self, feature: Tensor, box: Tensor, scale: float) -> Tensor:
        """RoIAlign of one (1, 4) box from a (1, C, H, W) map at `scale` (1 / stride) -> (C, 7, 7)."""
        return roi_align(feature, [box], self.output_size, scale, self.sampling_ratio)[0]

    def _describe(self, s: LevelState, width: float, height: float, k0: int, size: float) -> str:
        chosen, other = f"p{s.level}", f"p{s.compare_level}"
        n = self.sampling_ratio * self.output_size
        return (f"ROI {width:.0f} x {height:.0f} px, sqrt(w*h) = {(width * height) ** 0.5:.1f}\n"
                f"k = k0 + log2(sqrt(w*h) / {size:g}) = {k0} + log2({(width * height) ** 0.5:.1f} / {size:g})"
                f" = {s.continuous:.2f}\n"
                f"floor -> {s.floored}    clamp to [{self.ks[0]}, {self.ks[-1]}] -> level {s.level}: pooled from "
                f"{chosen.upper()}\n"
                f"On {chosen.upper()} the ROI spans {s.cells[chosen][0]:.1f} x {s.cells[chosen][1]:.1f} feature cells; "
                f"on {other.upper()} {s.cells[other][0]:.1f} x {s.cells[other][1]:.1f}. RoIAlign samples "
                f"{n} x {n} points in it ({self.sampling_ratio} x {self.sampling_ratio} per bin of the "
                f"{self.output_size} x {self.output_size} crop).")

    def render(self, state: LevelState) -> Figure:
        fig = Figure(figsize=(13.5, 3.4), layout="constrained")
        grid = fig.add_gridspec(1, 5, width_ratios=[1.4, 1, 1, 1, 1])
        plots.draw_pyramid(fig.add_subplot(grid[0, 0]), list(self.features), highlight=f"p{state.level}",
                           shapes={n: tuple(f.shape[-2:]) for n, f in self.features.items()}, marker=state.continuous)
        axes = [fig.add_subplot(grid[0, i]) for i in range(1, 5)]
        maps = {name: plots.feature_image(crop) for name, crop in state.crops.items() if name != "image"}
        low, high = min(m.min() for m in maps.values()), max(m.max() for m in maps.values())  # one colour scale
        plots.show_image(axes[0], self.image, "ROI on the image")
        plots.draw_boxes(axes[0], state.box[None], color="yellow", linewidth=2)
        for ax, (name, crop) in zip(axes[1:], state.crops.items()):
            chosen = name == f"p{state.level}"
            if name == "image":
                ax.imshow(plots.to_numpy_image(crop), interpolation="nearest")
                ax.set_title("7x7 from the image", fontsize=10)
            else:
                ax.imshow(maps[name], cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
                ax.set_title(f"7x7 from {name.upper()}" + (" (chosen)" if chosen else " (wrong level)"), fontsize=10,
                             color=plots.LEVEL_COLORS[name], fontweight="bold" if chosen else "normal")
            ax.set_xticks([])
            ax.set_yticks([])
        return fig

    def widget(self, width: int = 96, height: int = 96, x: int | None = None, y: int | None = None) -> Panel:
        """Sliders starting from a width x height ROI centred on (x, y) (default: the image centre)."""
        h_img, w_img = self.image.shape[-2:]
        longest = int(max(h_img, w_img))
        compare = widgets.Dropdown(options=[("farthest level", FARTHEST)] + [(f"P{k}", k) for k in self.ks],
                                   value=FARTHEST, description="compare with", style={"description_width": "initial"})
        controls = {
            "width": _slider("ROI width", width, 4, 2 * longest),
            "height": _slider("ROI height", height, 4, 2 * longest),
            "x": _slider("centre x", w_img // 2 if x is None else x, 0, w_img),
            "y": _slider("centre y", h_img // 2 if y is None else y, 0, h_img),
            "canonical_level": _slider("k0", 4, 2, 6),
            "canonical_size": widgets.FloatSlider(value=self.canonical_size, min=16, max=896, step=0.1,
                                                  readout_format=".1f", description="canonical size",
                                                  continuous_update=False, style={"description_width": "initial"}),
            "compare_level": compare,
        }
        return Panel(controls, self.update, self.render)


# --- feature-map browser --------------------------------------------------------------------------

@dataclass
class FeatureView:
    level: str
    channel: int | None  # None: mean |activation| over channels
    data: np.ndarray  # (H, W) what is drawn
    shape: tuple[int, int, int]  # (C, H, W) of the level
    text: str = ""


class FeatureMapBrowser:
    """Browse `features` (name -> (1, C, H, W)) by level and channel; channel -1 shows the mean |activation|.

    `image` (any size: the photo, or what the network sees) is drawn beside the map."""

    def __init__(self, features: Mapping[str, Tensor], image: Tensor | None = None) -> None:
        self.features, self.image = dict(features), image

    def update(self, level: str, channel: int = -1) -> FeatureView:
        feature = self.features[level]
        c, h, w = feature.shape[-3:]
        chosen = None if channel < 0 else min(channel, c - 1)
        data = plots.feature_image(feature, chosen)
        stride = f", stride {2 ** level_number(level)}"  # the map's cells are 2^k input pixels apart
        what = "mean |activation| over channels" if chosen is None else f"channel {chosen} of {c}"
        text = (f"{level.upper()}: {c} channels x {h} x {w}{stride}; showing {what}; "
                f"min {data.min():.3g}, max {data.max():.3g}")
        return FeatureView(level, chosen, data, (c, h, w), text)

    def render(self, view: FeatureView) -> Figure:
        panels = 2 if self.image is not None else 1
        fig, axes = plots.new_figure(1, panels, (4.0, 4.0))
        if self.image is not None:
            plots.show_image(axes[0, 0], self.image, "image")
        ax = axes[0, -1]
        ax.imshow(view.data, cmap="viridis", interpolation="nearest")
        ax.set_title(f"{view.level.upper()} {view.shape[1]}x{view.shape[2]}, "
                     + ("mean |act|" if view.channel is None else f"channel {view.channel}"),
                     color=plots.LEVEL_COLORS.get(view.level, "k"))
        ax.set_axis_off()
        return fig

    def widget(self, level: str | None = None) -> Panel:
        channels = max(f.shape[-3] for f in self.features.values())
        controls = {
            "level": widgets.ToggleButtons(options=[(n.upper(), n) for n in self.features],
                                           value=level or next(iter(self.features)), description="level"),
            "channel": _slider("channel (-1: mean)", -1, -1, channels - 1),
        }
        return Panel(controls, self.update, self.render)


# --- anchor explorer ------------------------------------------------------------------------------

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

    def __init__(self, image: Tensor, generator: AnchorGenerator, feature_sizes: Mapping[str, tuple[int, int]],
                 gt_boxes: Tensor | None = None, positive_iou: float = RPNConfig.fg_iou_thresh,
                 negative_iou: float = RPNConfig.bg_iou_thresh) -> None:
        self.image, self.generator, self.gt_boxes = image, generator, gt_boxes
        self.positive_iou, self.negative_iou = positive_iou, negative_iou
        self.names, self.sizes = list(feature_sizes), [tuple(s) for s in feature_sizes.values()]
        self.anchors = dict(zip(self.names, generator.grid_anchors(tuple(image.shape[-2:]), self.sizes)))

    def update(self, level: str, x: float, y: float, aspect_ratio: float = 1.0) -> AnchorView:
        """The anchors of the grid point at or up-left of pixel (x, y) on `level`, nearest `aspect_ratio` first."""
        index = self.names.index(level)
        (h, w), (img_h, img_w) = self.sizes[index], self.image.shape[-2:]
        stride_y, stride_x = img_h // h, img_w // w
        row, col = min(int(y // stride_y), h - 1), min(int(x // stride_x), w - 1)
        ratios, sizes = self.generator.aspect_ratios[index], self.generator.sizes[index]
        here = self.anchors[level].reshape(h, w, len(ratios) * len(sizes), 4)[row, col]  # (A, 4)
        r = ratios.index(min(ratios, key=lambda v: abs(v - aspect_ratio)))
        chosen = here[r * len(sizes):(r + 1) * len(sizes)]  # (S, 4)
        best = float("nan")
        if self.gt_boxes is not None and len(self.gt_boxes):
            best = float(box_iou(chosen, self.gt_boxes.float()).max())
        view = AnchorView(level, (row, col), (col * stride_x, row * stride_y), chosen, here, best, h * w)
        view.text = self._describe(view, stride_x, ratios[r], sizes)
        return view

    def _describe(self, v: AnchorView, stride: int, ratio: float, sizes: tuple[int, ...]) -> str:
        x1, y1, x2, y2 = v.anchors[0].tolist()
        text = (f"{v.level.upper()}: stride {stride}, {v.grid_points} locations x {len(v.all_anchors)} anchors = "
                f"{v.grid_points * len(v.all_anchors)} anchors on this level\n"
                f"location (row {v.cell[0]}, col {v.cell[1]}) = pixel ({v.centre[0]:.0f}, {v.centre[1]:.0f}); "
                f"size {'/'.join(map(str, sizes))}, aspect ratio h/w = {ratio:g}: "
                f"anchor {x2 - x1:.0f} x {y2 - y1:.0f} px")
        if not np.isnan(v.best_iou):
            verdict = ("positive" if v.best_iou >= self.positive_iou else
                       "negative" if v.best_iou < self.negative_iou else "ignored")
            text += (f"\nbest IoU with a GT box: {v.best_iou:.2f} -> {verdict} "
                     f"(positive >= {self.positive_iou}, negative < {self.negative_iou})")
        return text

    def render(self, view: AnchorView) -> Figure:
        fig = plots.anchors_figure(self.image, {view.level: view.all_anchors}, title=f"{view.level.upper()} anchors",
                                   gt_boxes=self.gt_boxes)
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
            "level": widgets.ToggleButtons(options=[(n.upper(), n) for n in self.names],
                                           value=level or self.names[0], description="level"),
            "x": _slider("x", img_w // 2, 0, img_w - 1),
            "y": _slider("y", img_h // 2, 0, img_h - 1),
            "aspect_ratio": widgets.SelectionSlider(options=ratios, value=1.0 if 1.0 in ratios else ratios[0],
                                                    description="h/w", continuous_update=False),
        }
        return Panel(controls, self.update, self.render)
