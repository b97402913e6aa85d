"""Slider widgets for the notebooks, one module each: plain ipywidgets + matplotlib, for JupyterLab 4 and Colab
(ipywidgets 7.7 and 8: tests/test_colab.py runs the widget tests under both).

    panel              Panel: controls wired to update + render (every explorer's widget())
    level_assignment   LevelAssignmentExplorer: Eq. 1's level and RoIAlign crop for an ROI size (notebook 05)
    feature_browser    FeatureMapBrowser: feature maps by level and channel (notebooks 01, 02)
    anchor_explorer    AnchorExplorer: anchors by level, position and aspect ratio (notebook 03)
    mask_round_trip    MaskResolutionExplorer: an object's mask through an M x M grid and back (notebook 09)

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

from fpnlab.teaching.widgets.anchor_explorer import AnchorExplorer, AnchorView
from fpnlab.teaching.widgets.feature_browser import FeatureMapBrowser, FeatureView
from fpnlab.teaching.widgets.level_assignment import FARTHEST, LevelAssignmentExplorer, LevelState
from fpnlab.teaching.widgets.mask_round_trip import MaskResolutionExplorer, RoundTrip
from fpnlab.teaching.widgets.panel import Panel, slider

__all__ = [
    "FARTHEST",
    "AnchorExplorer",
    "AnchorView",
    "FeatureMapBrowser",
    "FeatureView",
    "LevelAssignmentExplorer",
    "LevelState",
    "MaskResolutionExplorer",
    "Panel",
    "RoundTrip",
    "slider",
]
