"""`fpnlab detect IMAGE`: run a trained detector on one image and save it with its boxes drawn, as PNG.

    fpnlab detect photo.jpg                                  # the shipped demo model -> photo_detections.png
    fpnlab detect photo.jpg --checkpoint runs/cpu/checkpoint.pt --out boxes.png --score-threshold 0.3
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from fpnlab.data.transforms import ToTensor
from fpnlab.errors import DataError, FpnlabError

SCORE_THRESHOLD = 0.5  # draw detections scoring at least this


def read_image(path: str | Path) -> Tensor:
    """An image file as (3, H, W) float in [0, 1]; a missing or unreadable file raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist.")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for corrupt or non-image files
        raise DataError(f"image file {path} cannot be read; it is truncated or not an image ({err}).") from None
    return ToTensor()(image, {})[0]


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
    from matplotlib.figure import Figure

    from fpnlab.plots import draw_boxes, show_image

    dpi = 100
    height, width = image.shape[-2:]
    fig = Figure(figsize=(width / dpi, height / dpi))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # the image fills the PNG: no margins
    show_image(ax, image)
    draw_boxes(ax, detections["boxes"], detections["labels"], detections["scores"], categories)
    fig.savefig(out, dpi=dpi, format="png")
    return out


# --- command line -------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="image file (JPEG, PNG, ...)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint or exported model (default: the shipped demo model)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default IMAGE_detections.png)")
    parser.add_argument("--score-threshold", type=float, default=SCORE_THRESHOLD,
                        help=f"draw detections scoring at least this (default {SCORE_THRESHOLD})")


def run(args: argparse.Namespace) -> int:
    from fpnlab.checkpoint import DEMO_CHECKPOINT, load_model
    from fpnlab.env import default_device

    out = args.out or args.image.with_name(f"{args.image.stem}_detections.png")
    if not out.parent.is_dir():
        raise FpnlabError(f"--out {out}: folder {out.parent} does not exist.")
    image = read_image(args.image)
    model = load_model(args.checkpoint or DEMO_CHECKPOINT, default_device())
    detections = detect(model, image, args.score_threshold)
    save_detections(image, detections, model.categories, out)
    names = [model.categories[int(label) - 1] for label in detections["labels"]]
    print(f"{out}: {len(names)} detection(s) scoring >= {args.score_threshold}"
          + (f" ({', '.join(sorted(set(names)))})" if names else ""))
    return 0
