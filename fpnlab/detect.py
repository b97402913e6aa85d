"""Run a trained detector on one image file and draw what it finds (`fpnlab detect`).

    image, note = read_image("photo.jpg")                   # (3, H, W) in [0, 1], large photos shrunk
    detections = detect(model, image, score_threshold=0.5)  # boxes (N, 4), labels (N,), scores (N,)
    save_detections(image, detections, model.categories, Path("boxes.png"))

A photo larger than MAX_SIDE pixels is shrunk before it becomes a float tensor (an 8000 x 8000 photo
would take gigabytes otherwise); the detector resizes its input to a few hundred pixels anyway, so
nothing it could find is lost, and the boxes are drawn on the shrunk image.
"""
from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn

from fpnlab.data.images import SIXTEEN_BIT_MODES, open_image, to_tensor
from fpnlab.errors import DataError
from fpnlab.plots import draw_boxes, show_image

SCORE_THRESHOLD = 0.5  # draw detections scoring at least this
MAX_SIDE = 2048  # longer image sides are shrunk to this before detection


def read_image(path: str | Path, max_side: int = MAX_SIDE) -> tuple[Tensor, str]:
    """The image file as (3, H, W) float in [0, 1], its longer side at most `max_side`, and a note saying
    whether it was shrunk ("" if not). A missing, unreadable or oversized file raises DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"image file {path} does not exist.")
    image = open_image(path)
    note = ""
    if max(image.size) > max_side:
        original = image.size
        image = image.convert("I" if image.mode in SIXTEEN_BIT_MODES else "RGB")  # modes PIL resizes well
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        note = f"shrunk from {original[0]} x {original[1]} to {image.width} x {image.height} pixels"
    return to_tensor(image), note


@torch.inference_mode()
def detect(model: nn.Module, image: Tensor, score_threshold: float = SCORE_THRESHOLD) -> dict[str, Tensor]:
    """Detections on one image (3, H, W) scoring >= score_threshold: boxes (N, 4) xyxy, labels, scores."""
    model.eval()
    device = next(model.parameters()).device
    out = model([image.to(device)])[0]
    keep = out["scores"] >= score_threshold
    return {k: v[keep].cpu() for k, v in out.items()}


def save_detections(image: Tensor, detections: dict[str, Tensor], categories: list[str], out: Path) -> Path:
    """Draw the boxes with their class and score over the image, at the image's own resolution, as PNG."""
    dpi = 100
    height, width = image.shape[-2:]
    fig = Figure(figsize=(width / dpi, height / dpi))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # the image fills the PNG: no margins
    show_image(ax, image)
    draw_boxes(ax, detections["boxes"], detections["labels"], detections["scores"], categories)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out
