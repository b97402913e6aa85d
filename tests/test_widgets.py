"""fpnlab.teaching.widgets: the update functions compute the stage modules' answers, and moving a slider updates
them."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from fpnlab.model.anchors import AnchorGenerator
from fpnlab.model.poolers import roi_align
from fpnlab.teaching import widgets

IMAGE_SIZE = (128, 160)  # (H, W)


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def features():
    gen = torch.Generator().manual_seed(1)
    h, w = IMAGE_SIZE
    return {f"p{k}": torch.randn(1, 4, h // 2**k, w // 2**k, generator=gen) for k in range(2, 7)}


# --- level assignment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "side, continuous, floored, level",
    [
        (224, 4.0, 4, 4),
        (112, 3.0, 3, 3),
        (160, 4 + math.log2(160 / 224), 3, 3),
        (40, 4 + math.log2(40 / 224), 1, 2),  # floor 1 is clamped up to P2
        (1000, 4 + math.log2(1000 / 224), 6, 5),  # floor 6 is clamped down to P5 (P6 pools no ROI)
    ],
)
def test_level_assignment_follows_eq1(image, features, side, continuous, floored, level):
    state = widgets.LevelAssignmentExplorer(image, features).update(width=side, height=side)
    assert state.continuous == pytest.approx(continuous)
    assert (state.floored, state.level) == (floored, level)
    assert f"level {level}: pooled from P{level}" in state.text


def test_level_assignment_k0_and_canonical_size_move_the_level(image, features):
    explorer = widgets.LevelAssignmentExplorer(image, features)
    assert explorer.update(112, 112, canonical_level=5).level == 4  # one level up with k0
    assert explorer.update(112, 112, canonical_size=112).level == 4  # 112 is now canonical
    assert explorer.update(56, 224).level == 3  # sqrt(56 * 224) = 112: rectangles use the geometric mean


@pytest.mark.parametrize("canonical", [224.0, 89.6])
def test_level_assignment_equals_eq1_worked_out_here_on_many_rois(image, features, canonical):
    explorer = widgets.LevelAssignmentExplorer(image, features, canonical_size=canonical)
    for w in np.linspace(8, 900, 60):
        h = 0.7 * w
        k = min(max(math.floor(4 + math.log2(math.sqrt(w * h) / canonical) + 1e-9), 2), 5)  # Eq. 1, clamped
        assert explorer.update(float(w), float(h)).level == k, (w, h)


def test_the_compare_dropdown_starts_on_a_visible_choice(image, features):
    dropdown = widgets.LevelAssignmentExplorer(image, features).widget().controls["compare_level"]
    assert dropdown.index == 0 and dropdown.label == "farthest level"  # not blank (index None)
    assert dropdown.style.description_width == "initial"  # "compare with" is not cut


def test_level_assignment_crops_come_from_the_chosen_and_the_wrong_level(image, features):
    explorer = widgets.LevelAssignmentExplorer(image, features)
    state = explorer.update(width=40, height=24, x=60, y=50)
    assert state.level == 2 and state.compare_level == 5  # the farthest level
    box = torch.tensor([[40.0, 38.0, 80.0, 62.0]])
    assert torch.equal(state.box, box[0])
    assert set(state.crops) == {"image", "p2", "p5"}
    torch.testing.assert_close(state.crops["p2"], roi_align(features["p2"], [box], 7, 1 / 4, 2)[0])
    torch.testing.assert_close(state.crops["p5"], roi_align(features["p5"], [box], 7, 1 / 32, 2)[0])
    assert state.crops["image"].shape == (3, 7, 7)
    assert state.cells["p2"] == (10.0, 6.0) and state.cells["p5"] == (1.25, 0.75)
    assert explorer.update(40, 24, compare_level=3).compare_level == 3


def test_level_assignment_sliders_update_the_state(image, features):
    explorer = widgets.LevelAssignmentExplorer(image, features)
    panel = explorer.widget(width=64, height=64, x=40, y=30)
    assert panel.state.level == 2 and panel.state.box.tolist() == [8.0, -2.0, 72.0, 62.0]
    panel.controls["width"].value = 224
    panel.controls["height"].value = 224
    assert panel.state.level == 4 and panel.state.continuous == pytest.approx(4.0)
    panel.controls["canonical_level"].value = 3
    assert panel.state.level == 3
    panel.controls["compare_level"].value = 5
    assert set(panel.state.crops) == {"image", "p3", "p5"}
    assert "k0 + log2(sqrt(w*h) / 224) = 3 + log2(224.0 / 224) = 3.00" in panel.text.value
    figure = explorer.render(panel.state)
    titles = [ax.get_title() for ax in figure.axes]
    assert "7x7 from P3 (chosen)" in titles and "7x7 from P5 (wrong level)" in titles


# --- feature-map browser ---------------------------------------------------------------------------

PHOTO = torch.rand(3, 300, 375)  # the photo, larger than the network input the features come from


@pytest.mark.parametrize("level, stride", [("p2", 4), ("p3", 8), ("p4", 16), ("p5", 32), ("p6", 64)])
def test_feature_browser_states_the_stride_2_to_the_k(features, level, stride):
    assert f"stride {stride};" in widgets.FeatureMapBrowser(features, PHOTO).update(level).text


def test_feature_browser_shows_the_requested_channel(image, features):
    browser = widgets.FeatureMapBrowser(features, image)
    view = browser.update("p3", 2)
    np.testing.assert_allclose(view.data, features["p3"][0, 2].numpy())
    assert view.shape == (4, 16, 20) and "stride 8" in view.text
    mean = browser.update("p4", -1)
    assert mean.channel is None
    np.testing.assert_allclose(mean.data, features["p4"][0].abs().mean(0).numpy(), rtol=1e-6)
    assert browser.update("p2", 99).channel == 3  # clamped to the level's last channel


def test_feature_browser_sliders(image, features):
    browser = widgets.FeatureMapBrowser(features, image)
    panel = browser.widget()
    assert panel.state.level == "p2" and panel.state.channel is None
    panel.controls["level"].value = "p5"
    panel.controls["channel"].value = 1
    assert panel.state.shape == (4, 4, 5)
    np.testing.assert_allclose(panel.state.data, features["p5"][0, 1].numpy())
    assert "P5: 4 channels x 4 x 5, stride 32" in panel.text.value
    assert browser.render(panel.state).axes[1].get_title() == "P5 4x5, channel 1"


# --- anchor explorer -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explorer(image, features):
    generator = AnchorGenerator(((16,), (32,), (64,), (128,), (256,)))
    sizes = {name: tuple(f.shape[-2:]) for name, f in features.items()}
    gt = torch.tensor([[28.0, 20.0, 60.0, 52.0]])  # 32 x 32, centred on (44, 36)
    return widgets.AnchorExplorer(image, generator, sizes, gt_boxes=gt)


def test_anchor_explorer_snaps_to_the_grid_and_picks_the_ratio(explorer):
    view = explorer.update("p3", x=45, y=37, aspect_ratio=1.0)
    assert view.cell == (4, 5) and view.centre == (40, 32)  # stride 8
    assert view.anchors.tolist() == [[24.0, 16.0, 56.0, 48.0]]  # 32 x 32 around (40, 32)
    assert view.grid_points == 16 * 20 and len(view.all_anchors) == 3
    assert view.best_iou == pytest.approx((28 * 28) / (2 * 32 * 32 - 28 * 28))
    wide = explorer.update("p3", x=45, y=37, aspect_ratio=0.5).anchors[0]
    assert (wide[2] - wide[0]).item() > (wide[3] - wide[1]).item()  # h/w = 0.5: wider than tall
    assert "960 anchors on this level" in view.text


def test_anchor_explorer_best_iou_labels_positive_anchors(explorer):
    view = explorer.update("p3", x=44, y=36)  # grid point (40, 32): the anchor is shifted 4 px from the GT
    assert view.best_iou == pytest.approx(784 / 1264) and "-> ignored" in view.text  # 0.3 <= 0.62 < 0.7
    centred = explorer.update("p2", x=44, y=36)  # stride 4: a grid point exactly at (44, 36), anchor 16 x 16
    assert centred.centre == (44, 36) and centred.best_iou == pytest.approx(16 * 16 / (32 * 32))
    assert "negative" in centred.text


def test_anchor_explorer_sliders(explorer):
    panel = explorer.widget()
    panel.controls["level"].value = "p4"
    panel.controls["x"].value = 100
    panel.controls["y"].value = 70
    assert panel.state.level == "p4" and panel.state.cell == (4, 6)
    assert panel.state.anchors.tolist() == [[64.0, 32.0, 128.0, 96.0]]
    panel.controls["aspect_ratio"].value = 2.0
    x1, y1, x2, y2 = panel.state.anchors[0].tolist()
    assert (y2 - y1) > (x2 - x1)
    figure = explorer.render(panel.state)
    assert figure.axes[0].get_title() == "P4 anchors"


# --- mask round trip --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def round_trips():
    """Two objects on an 80 x 80 image: a 40 x 40 square (pixels 20..59) and a 2-pixel-wide ring around 40, 40."""
    from fpnlab.teaching.mask_lessons import MaskedObject

    square = torch.zeros(80, 80, dtype=torch.uint8)
    square[20:60, 20:60] = 1
    rows, cols = torch.meshgrid(torch.arange(80.0) + 0.5, torch.arange(80.0) + 0.5, indexing="ij")
    radius = ((rows - 40) ** 2 + (cols - 40) ** 2).sqrt()
    ring = ((radius >= 10) & (radius < 12)).to(torch.uint8)
    image = torch.zeros(3, 80, 80)
    return widgets.MaskResolutionExplorer(
        [
            MaskedObject(image, square, torch.tensor([20.0, 20.0, 60.0, 60.0]), "square", "large"),
            MaskedObject(image, ring, torch.tensor([28.0, 28.0, 52.0, 52.0]), "ring", "small"),
        ]
    )


def test_mask_round_trip_orders_objects_and_scales_them(round_trips):
    assert [o.category for o in round_trips.objects] == ["ring", "square"]  # the smallest (fewest pixels) first
    state = round_trips.update(index=1, size=56, scale=0.5)  # the square at half size: 20 x 20 pixels
    assert int(state.mask.sum()) == 400 and state.box.tolist() == [10.0, 10.0, 30.0, 30.0]
    assert state.crop.shape == (56, 56) and "a square (large" in state.text and f"IoU {state.iou:.3f}" in state.text


def test_mask_round_trip_loses_a_thin_ring_at_low_resolution(round_trips):
    """A 2 px wide ring in a 24 px box: through 7 x 7 cells of 3.4 px the band blurs into its hole and little comes
    back; through 28 x 28 most of it does, all of it with aligned sampling (measured: 0.18, 0.66, 1.0)."""
    coarse, fine = round_trips.update(index=0, size=7).iou, round_trips.update(index=0, size=28).iou
    assert coarse < 0.3 and 0.6 < fine < 0.9
    aligned = round_trips.update(index=0, size=28, aligned=True)
    assert aligned.iou > fine and "aligned sampling" in aligned.text


def test_mask_round_trip_controls_update_the_state(round_trips):
    panel = round_trips.widget()
    panel.controls["index"].value = 1
    panel.controls["size"].value = 14
    assert (panel.state.index, panel.state.size) == (1, 14) and panel.state.crop.shape == (14, 14)
    figure = round_trips.render(panel.state)
    assert figure.axes[1].get_title() == "14 x 14 target"


# --- display, as a notebook shows a panel ----------------------------------------------------------

SHOW = """
import json, torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from fpnlab.teaching import widgets

shell = InteractiveShell.instance()
panel = widgets.FeatureMapBrowser({"p2": torch.ones(1, 2, 4, 4)}).widget()
shell.user_ns["panel"] = panel
with capture_output() as shown:
    shell.run_cell("panel")  # a cell ending with the panel, as the notebooks do
    shell.run_cell("display(panel)")
views = [o.data.get("application/vnd.jupyter.widget-view+json", {}).get("model_id") for o in shown.outputs]
print(json.dumps({"views": views, "ui": panel.ui.model_id, "stderr": shown.stderr}))
"""


def test_a_panel_displays_as_its_widgets(tmp_path):
    """In an IPython shell of its own (a subprocess: a shell changes global state), a panel is shown as one widget
    view of its ui, both as a cell's last value and with display(); under whichever ipywidgets is importable."""
    env = {**os.environ, "IPYTHONDIR": str(tmp_path), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["views"] == [shown["ui"], shown["ui"]] and shown["stderr"] == ""
