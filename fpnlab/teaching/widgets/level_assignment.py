"""Which pyramid level pools an ROI of a given size (FPN paper, Eq. 1), with sliders (notebook 05)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab import plots
from fpnlab.model.levels import assign_levels, continuous_level, known_level, level_number
from fpnlab.model.poolers import roi_align
from fpnlab.teaching.widgets.panel import Panel, slider

FARTHEST = "farthest"  # the level-explorer's default comparison: the level farthest from the chosen one


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

    def __init__(
        self,
        image: Tensor,
        features: Mapping[str, Tensor],
        output_size: int = 7,
        sampling_ratio: int = 2,
        canonical_size: float = 224.0,
    ) -> None:
        self.image, self.output_size, self.sampling_ratio = image, output_size, sampling_ratio
        self.canonical_size = canonical_size  # the sliders' start: the model's own (DetectorConfig.canonical_size())
        self.features = {name: f for name, f in features.items() if name != "p6"}  # P6 carries anchors only
        self.ks = [level_number(name) for name in self.features]  # level numbers k, "p3" -> 3

    def update(
        self,
        width: float,
        height: float,
        canonical_level: int = 4,
        canonical_size: float | None = None,
        x: float | None = None,
        y: float | None = None,
        compare_level: int | str | None = None,
    ) -> LevelState:
        """Eq. 1 for a width x height ROI centred on (x, y); compare_level None or "farthest": the level farthest
        from the chosen one."""
        canonical_size = self.canonical_size if canonical_size is None else canonical_size
        k = float(continuous_level(float(width), float(height), canonical_size, canonical_level))  # checks them
        h_img, w_img = self.image.shape[-2:]
        x = w_img / 2 if x is None else x
        y = h_img / 2 if y is None else y
        box = torch.tensor([[x - width / 2, y - height / 2, x + width / 2, y + height / 2]], dtype=torch.float32)
        unclamped = int(assign_levels(box, -100, 100, canonical_size, canonical_level)[0])
        level = int(assign_levels(box, self.ks[0], self.ks[-1], canonical_size, canonical_level)[0])
        if compare_level in (None, FARTHEST):  # the level farthest from the chosen one
            compare_level = self.ks[0] if level - self.ks[0] >= self.ks[-1] - level else self.ks[-1]
        name = compare_level.lower() if isinstance(compare_level, str) else f"p{compare_level}"
        compare_level = level_number(known_level(name, list(self.features)))
        crops = {"image": self._crop(self.image[None].float(), box, 1.0)}  # (3, 7, 7)
        for kk in (level, compare_level):
            crops[f"p{kk}"] = self._crop(self.features[f"p{kk}"], box, 2.0**-kk)  # (C, 7, 7)
        cells = {f"p{kk}": (width / 2**kk, height / 2**kk) for kk in self.ks}
        state = LevelState(box[0], k, unclamped, level, compare_level, crops, cells)
        state.text = self._describe(state, width, height, canonical_level, canonical_size)
        return state

    def _crop(self, feature: Tensor, box: Tensor, scale: float) -> Tensor:
        """RoIAlign of one (1, 4) box from a (1, C, H, W) map at `scale` (1 / stride) -> (C, 7, 7)."""
        return roi_align(feature, [box], self.output_size, scale, self.sampling_ratio)[0]

    def _describe(self, s: LevelState, width: float, height: float, k0: int, size: float) -> str:
        chosen, other = f"p{s.level}", f"p{s.compare_level}"
        n = self.sampling_ratio * self.output_size
        return (
            f"ROI {width:.0f} x {height:.0f} px, sqrt(w*h) = {(width * height) ** 0.5:.1f}\n"
            f"k = k0 + log2(sqrt(w*h) / {size:g}) = {k0} + log2({(width * height) ** 0.5:.1f} / {size:g})"
            f" = {s.continuous:.2f}\n"
            f"floor -> {s.floored}    clamp to [{self.ks[0]}, {self.ks[-1]}] -> level {s.level}: pooled from "
            f"{chosen.upper()}\n"
            f"On {chosen.upper()} the ROI spans {s.cells[chosen][0]:.1f} x {s.cells[chosen][1]:.1f} feature cells; "
            f"on {other.upper()} {s.cells[other][0]:.1f} x {s.cells[other][1]:.1f}. RoIAlign samples "
            f"{n} x {n} points in it ({self.sampling_ratio} x {self.sampling_ratio} per bin of the "
            f"{self.output_size} x {self.output_size} crop)."
        )

    def render(self, state: LevelState) -> Figure:
        fig = Figure(figsize=(13.5, 3.4), layout="constrained")
        grid = fig.add_gridspec(1, 5, width_ratios=[1.4, 1, 1, 1, 1])
        plots.draw_pyramid(
            fig.add_subplot(grid[0, 0]),
            list(self.features),
            highlight=f"p{state.level}",
            shapes={n: tuple(f.shape[-2:]) for n, f in self.features.items()},
            marker=state.continuous,
        )
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
                ax.set_title(
                    f"7x7 from {name.upper()}" + (" (chosen)" if chosen else " (wrong level)"),
                    fontsize=10,
                    color=plots.LEVEL_COLORS[name],
                    fontweight="bold" if chosen else "normal",
                )
            ax.set_xticks([])
            ax.set_yticks([])
        return fig

    def widget(self, width: int = 96, height: int = 96, x: int | None = None, y: int | None = None) -> Panel:
        """Sliders starting from a width x height ROI centred on (x, y) (default: the image centre)."""
        h_img, w_img = self.image.shape[-2:]
        longest = int(max(h_img, w_img))
        compare = widgets.Dropdown(
            options=[("farthest level", FARTHEST)] + [(f"P{k}", k) for k in self.ks],
            value=FARTHEST,
            description="compare with",
            style={"description_width": "initial"},
        )
        controls = {
            "width": slider("ROI width", width, 4, 2 * longest),
            "height": slider("ROI height", height, 4, 2 * longest),
            "x": slider("centre x", w_img // 2 if x is None else x, 0, w_img),
            "y": slider("centre y", h_img // 2 if y is None else y, 0, h_img),
            "canonical_level": slider("k0", 4, 2, 6),
            "canonical_size": widgets.FloatSlider(
                value=self.canonical_size,
                min=16,
                max=896,
                step=0.1,
                readout_format=".1f",
                description="canonical size",
                continuous_update=False,
                style={"description_width": "initial"},
            ),
            "compare_level": compare,
        }
        return Panel(controls, self.update, self.render)
