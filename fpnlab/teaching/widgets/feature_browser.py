"""Browse feature maps by level and channel (notebooks 01 and 02)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab import plots
from fpnlab.model.levels import known_level, level_number
from fpnlab.teaching.widgets.panel import Panel, slider


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
        feature = self.features[known_level(level, list(self.features))]
        c, h, w = feature.shape[-3:]
        chosen = None if channel < 0 else min(channel, c - 1)
        data = plots.feature_image(feature, chosen)
        stride = f", stride {2 ** level_number(level)}"  # the map's cells are 2^k input pixels apart
        what = "mean |activation| over channels" if chosen is None else f"channel {chosen} of {c}"
        text = (
            f"{level.upper()}: {c} channels x {h} x {w}{stride}; showing {what}; "
            f"min {data.min():.3g}, max {data.max():.3g}"
        )
        return FeatureView(level, chosen, data, (c, h, w), text)

    def render(self, view: FeatureView) -> Figure:
        panels = 2 if self.image is not None else 1
        fig, axes = plots.new_figure(1, panels, (4.0, 4.0))
        if self.image is not None:
            plots.show_image(axes[0, 0], self.image, "image")
        ax = axes[0, -1]
        ax.imshow(view.data, cmap="viridis", interpolation="nearest")
        ax.set_title(
            f"{view.level.upper()} {view.shape[1]}x{view.shape[2]}, "
            + ("mean |act|" if view.channel is None else f"channel {view.channel}"),
            color=plots.LEVEL_COLORS.get(view.level, "k"),
        )
        ax.set_axis_off()
        return fig

    def widget(self, level: str | None = None) -> Panel:
        channels = max(f.shape[-3] for f in self.features.values())
        controls = {
            "level": widgets.ToggleButtons(
                options=[(n.upper(), n) for n in self.features],
                value=level or next(iter(self.features)),
                description="level",
            ),
            "channel": slider("channel (-1: mean)", -1, -1, channels - 1),
        }
        return Panel(controls, self.update, self.render)
