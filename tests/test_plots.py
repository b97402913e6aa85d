"""fpnlab.plots: each figure draws exactly the data it is given (counts, heights, pixels), and renders."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import io
import math

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from fpnlab import plots


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def render(fig) -> int:
    """Draw the figure to PNG bytes (catches layout and artist errors); returns the byte count."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.tell()


@pytest.fixture
def image():
    return torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0))


def test_image_grid_draws_every_box_with_its_class_name(image):
    targets = [
        {"boxes": torch.tensor([[1.0, 2, 20, 30], [10, 10, 50, 40]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[5.0, 5, 15, 15]]), "labels": torch.tensor([2])},
    ]
    fig = plots.image_grid([image, image], targets, ["circle", "square", "triangle"], ncols=3)
    axes = fig.axes
    assert len(axes) == 3 and not axes[2].axison  # the spare cell is blank
    assert [len(rectangles(ax)) for ax in axes[:2]] == [2, 1]
    assert rectangles(axes[0])[1].get_xy() == (10, 10) and rectangles(axes[0])[1].get_width() == 40
    assert [t.get_text() for t in axes[0].texts] == ["circle", "triangle"]
    assert axes[1].get_title() == "1 objects"
    np.testing.assert_allclose(axes[0].images[0].get_array(), image.permute(1, 2, 0).numpy(), rtol=1e-6)
    assert render(fig) > 0


def test_size_histogram_counts_the_coco_buckets():
    sides = [10.0, 20.0, 31.9, 32.0, 95.0, 96.0, 200.0]  # 3 small, 2 medium, 2 large (COCO: 32^2, 96^2)
    fig = plots.size_histogram(torch.tensor(sides) ** 2)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["small: 3 (43%)", "medium: 2 (29%)", "large: 2 (29%)"]
    assert sum(bar.get_height() for bar in fig.axes[0].containers[0]) == len(sides)  # the histogram's bars
    assert render(fig) > 0


def test_feature_grid_shows_shapes_and_the_chosen_channel(image):
    features = {"c2": torch.randn(1, 8, 16, 20), "c3": torch.randn(1, 16, 8, 10)}
    fig = plots.feature_grid(features, channel=3, image=image)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["image 64x80", "C2: 8x16x20", "C3: 16x8x10"]
    assert len(fig.axes) - len(panels) == 2  # a colour bar for each map
    np.testing.assert_allclose(panels[2].images[0].get_array(), features["c3"][0, 3].numpy())
    mean = plots.feature_grid(features).axes[0].images[0].get_array()
    np.testing.assert_allclose(mean, features["c2"][0].abs().mean(0).numpy(), rtol=1e-6)
    assert render(fig) > 0


def test_feature_grid_overlay_draws_each_map_over_the_whole_image(image):
    features = {"p5": torch.randn(1, 4, 2, 3)}
    fig = plots.feature_grid(features, image=image, overlay=True)
    panel = fig.axes[0]
    picture, heat = panel.images  # the image first, the map on top of it
    assert picture.get_array().shape[:2] == (64, 80)
    assert heat.get_extent() == [0, 80, 64, 0] and heat.get_alpha() < 1  # stretched to the image, see-through
    assert render(fig) > 0


def test_pyramid_highlights_the_chosen_level_and_marks_k():
    fig = plots.pyramid_figure(("p2", "p3", "p4", "p5"), highlight="p3", shapes={"p3": (32, 32)}, marker=3.4)
    ax = fig.axes[0]
    slabs = ax.patches
    assert len(slabs) == 4
    assert [s.get_linewidth() for s in slabs] == [1, 3, 1, 1]  # only P3 is highlighted
    assert "P3  stride 8  32x32" in [t.get_text() for t in ax.texts]
    arrow = [t for t in ax.texts if t.get_text() == "k = 3.40"]
    assert len(arrow) == 1 and math.isclose(arrow[0].xy[1], 1.4 + 0.4)  # between the P3 and P4 slab centres
    assert render(fig) > 0


def test_level_histogram_bars_are_the_counts():
    levels = torch.tensor([2, 2, 3, 5, 5, 5])
    fig = plots.level_histogram(levels)
    assert [p.get_height() for p in rectangles(fig.axes[0])] == [2, 1, 0, 3]
    assert fig.axes[0].get_title() == "ROIs per pyramid level (6 boxes)"


def test_objectness_maps_are_the_max_sigmoid_over_anchors(image):
    logits = {"p2": torch.randn(1, 3, 16, 20), "p3": torch.randn(1, 3, 8, 10)}
    fig = plots.objectness_maps(image, logits)
    drawn = fig.axes[2].images[0].get_array()
    np.testing.assert_allclose(drawn, torch.sigmoid(logits["p3"][0]).amax(0).numpy(), rtol=1e-6)
    assert render(fig) > 0


def test_boxes_panels_keep_the_top_scoring_boxes(image):
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 30, 30], [1, 1, 2, 2]])
    scores = torch.tensor([0.1, 0.9, 0.5])
    fig = plots.boxes_panels(
        image, {"before NMS": boxes, "after NMS": boxes[1:]}, {"before NMS": scores}, gt_boxes=boxes[:1], max_boxes=2
    )
    before = rectangles(fig.axes[0])
    assert [r.get_xy() for r in before] == [(1, 1), (5, 5), (0, 0)]  # the two best (best last), then the GT
    assert before[1].get_edgecolor() != before[0].get_edgecolor()  # coloured by score
    assert fig.axes[0].get_title() == "before NMS: 2 boxes" and fig.axes[1].get_title() == "after NMS: 2 boxes"


def test_loss_curves_plot_each_loss_column_smoothed():
    history = {
        "iteration": [10, 20, 30, 40],
        "loss": [4.0, 3.0, 2.0, 1.0],
        "loss_objectness": [1.0, 1.0, 0.5, 0.5],
        "lr": [0.1, 0.1, 0.1, 0.1],
    }
    fig = plots.loss_curves(history, smooth=2)
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert set(lines) == {"loss", "loss_objectness"}  # lr is not a loss
    np.testing.assert_allclose(lines["loss"].get_ydata(), [3.5, 2.5, 1.5])
    np.testing.assert_allclose(lines["loss"].get_xdata(), [20, 30, 40])
    stored = plots.loss_curves(history, reference=[[10, 5.0], [40, 2.0]], reference_label="stored run")
    assert len(stored.axes) == 2 and stored.axes[1].get_title() == "stored run"  # a panel of its own
    (ref,) = stored.axes[1].lines
    np.testing.assert_allclose(ref.get_xydata(), [[10, 5.0], [40, 2.0]])
    (span,) = stored.axes[1].patches  # the stretch the run on the left covers: iterations 0..40
    xs = span.get_path().transformed(span.get_patch_transform()).vertices[:, 0]  # Rectangle or Polygon alike
    np.testing.assert_allclose([xs.min(), xs.max()], [0, 40])


def test_metrics_bars_show_percentages():
    fig = plots.metrics_bars({"AP": 0.25, "AP50": 0.5, "AP_l": -1.0, "AR100": 0.75}, keys=["AP", "AP50", "AP_l"])
    heights = [p.get_height() for p in rectangles(fig.axes[0])]
    assert heights[:2] == [25.0, 50.0] and np.isnan(heights[2])  # -1: no large objects, no bar
    assert [t.get_text() for t in fig.axes[0].texts] == ["25.0", "50.0", ""]


def test_ablation_bars_put_ours_beside_the_paper_and_invent_nothing():
    summary = {"fpn": {"AR_s": {"mean": 0.30, "std": 0.02}}, "c4": {"AR_s": {"mean": 0.10, "std": 0.0}}}
    paper = {"fpn": {"AR_s": 44.0}}  # the paper row for c4 is missing on purpose
    fig = plots.ablation_bars(summary, paper, ["AR_s"])
    ax = fig.axes[0]
    heights = [p.get_height() for p in rectangles(ax)]
    assert heights[:2] == pytest.approx([30.0, 10.0])  # ours, in percent
    assert heights[2] == 44.0 and np.isnan(heights[3])  # paper: fpn only
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fpn", "c4"]
    assert render(fig) > 0


def test_detection_gallery_marks_misses_and_small_objects_at_their_size(image):
    det = {
        "boxes": torch.tensor([[0.0, 0, 40, 40], [50, 50, 60, 60]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.2]),
    }
    gt = {"boxes": torch.tensor([[0.0, 0, 40, 40], [50, 50, 60, 60]]), "labels": torch.tensor([1, 2])}
    fig = plots.detection_gallery([image], [det], [gt], ["circle", "square"], score_thresh=0.5, ncols=2)
    ax = fig.axes[0]
    boxes = rectangles(ax)
    assert len(boxes) == 2 + 1 + 1  # two GT boxes, the small one again, one detection above 0.5
    assert [b.get_edgecolor() for b in boxes[:2]] == [(1.0, 1.0, 1.0, 1.0), (1.0, 0.0, 0.0, 1.0)]  # found, missed
    assert ax.get_title() == "1 of 2 objects missed"  # the 10 x 10 object's detection scored only 0.2
    small = boxes[2]  # the 10 x 10 GT box is small: drawn again in cyan, exactly its own size
    assert small.get_edgecolor() == (0.0, 1.0, 1.0, 1.0) and (small.get_xy(), small.get_width()) == ((50.0, 50.0), 10.0)
    assert [t.get_text() for t in ax.texts] == ["circle 0.90"]
    assert render(fig) > 0


def test_captions_of_boxes_at_one_place_go_where_they_do_not_cover_each_other(image):
    fig = plots.new_figure(1, 1, (4.0, 4.0))[0]
    ax = fig.axes[0]
    plots.show_image(ax, image)
    boxes = torch.tensor([[20.0, 20.0, 60.0, 50.0]] * 4)  # four boxes on one spot, four captions
    plots.draw_boxes(ax, boxes, torch.tensor([1, 2, 1, 2]), torch.tensor([0.9, 0.8, 0.7, 0.6]), ["circle", "square"])
    tops = [text.get_position()[1] for text in ax.texts]
    # above the box, inside it, below it: three free places, and the fourth caption is left out
    assert len(ax.texts) == 3 and len(set(tops)) == 3 and max(tops) > 50 > 20 > min(tops) - 20


def test_a_log_loss_axis_within_one_decade_still_has_several_numbered_ticks():
    history = {"iteration": [1, 2, 3, 4], "loss": [1.6, 1.2, 0.9, 0.6]}
    fig = plots.loss_curves(history)
    ax = fig.axes[0]
    fig.canvas.draw()
    shown = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    low, high = ax.get_ylim()
    inside = [t for t in ax.get_yticks() if low <= t <= high]
    assert len(inside) >= 3 and {"0.7", "1", "1.5"} <= set(shown)


def test_metric_bars_wrap_long_names_so_they_do_not_run_into_each_other():
    fig = plots.metrics_bars({"all anchors": 0.9, "top-k per level": 0.95}, percent=True)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["all", "anchors"] or labels == ["all\nanchors", "top-k per\nlevel"]


def test_gain_histogram_counts_the_objects_that_rose_and_fell():
    fig = plots.gain_histogram(torch.tensor([0.1, 0.2, -0.05, 0.0, 0.3]))
    ax = fig.axes[0]
    assert ax.get_title().endswith("3 rose, 1 fell, of 5")
    assert sum(patch.get_height() for patch in ax.patches) == 5 and render(fig) > 0
