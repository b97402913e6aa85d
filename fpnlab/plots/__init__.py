"""Figures for the notebooks: every picture the lab draws, one function each.

Each function takes tensors (images (3, H, W) in [0, 1], boxes (N, 4) xyxy in pixels, feature maps
(C, H, W) or (1, C, H, W)) and returns a `matplotlib.figure.Figure` that is not registered with
pyplot: a notebook shows it by leaving it as the cell's last value, and nothing leaks between calls.
The numbers come from the stage modules; these functions only draw.

    base       panels, images, boxes, feature maps as images, the lab's colours
    data       image grids with boxes, object sizes by COCO bucket
    pyramid    feature maps by level, the pyramid, ROIs per level
    masks      mask targets inside their ROIs, a mask head's output per class, masks by level, segment proposals
    rpn        anchors, best IoU per object, objectness maps, before/after panels, anchor labels, refinement
    results    loss curves, metric bars, ablations beside the paper, detection galleries, save_detections
"""

from fpnlab.plots.base import (
    LEVEL_COLORS,
    category_color,
    draw_boxes,
    draw_masks,
    feature_image,
    image_panels,
    new_figure,
    show_image,
    to_numpy_image,
)
from fpnlab.plots.data import image_grid, size_histogram
from fpnlab.plots.masks import class_channels, masks_by_level, roi_mask_targets, segment_proposals_by_level
from fpnlab.plots.pyramid import draw_pyramid, feature_grid, level_histogram, pyramid_figure
from fpnlab.plots.results import ablation_bars, detection_gallery, loss_curves, metrics_bars, save_detections
from fpnlab.plots.rpn import (
    anchor_iou_scatter,
    anchor_labels,
    anchors_figure,
    boxes_panels,
    gain_histogram,
    objectness_maps,
    refinement,
)

__all__ = [
    "LEVEL_COLORS",
    "ablation_bars",
    "anchor_iou_scatter",
    "anchor_labels",
    "anchors_figure",
    "boxes_panels",
    "category_color",
    "class_channels",
    "detection_gallery",
    "draw_boxes",
    "draw_masks",
    "draw_pyramid",
    "feature_grid",
    "feature_image",
    "gain_histogram",
    "image_grid",
    "image_panels",
    "level_histogram",
    "loss_curves",
    "masks_by_level",
    "metrics_bars",
    "new_figure",
    "objectness_maps",
    "pyramid_figure",
    "refinement",
    "roi_mask_targets",
    "segment_proposals_by_level",
    "save_detections",
    "show_image",
    "size_histogram",
    "to_numpy_image",
]
