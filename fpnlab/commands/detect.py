"""`fpnlab detect IMAGE`: draw a trained detector's boxes on an image, saved as PNG.

    fpnlab detect photo.jpg                                  # the shipped demo model -> runs/detect/photo.png
    fpnlab detect photo.jpg --checkpoint runs/cpu/checkpoint.pt --out boxes.png --score-threshold 0.3

The default output goes to runs/detect/ (ignored by git), never next to the input. The output may not
be the input itself through any link (same device and inode), nor a symbolic link, nor an existing file
that fpnlab did not draw; it is written atomically (fpnlab.outputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fpnlab.data.images import read_image
from fpnlab.engine.checkpoint import DEMO_CHECKPOINT, load_model
from fpnlab.engine.distributed import resolve_device
from fpnlab.engine.inference import SCORE_THRESHOLD, detect
from fpnlab.errors import DataError, FpnlabError
from fpnlab.outputs import check_output_file
from fpnlab.plots import save_detections
from fpnlab.plots.base import is_lab_png

DEFAULT_FOLDER = Path("runs") / "detect"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="image file (JPEG, PNG, ...)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint or exported model (default: the shipped demo model)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"PNG to write (default {DEFAULT_FOLDER}/IMAGE_NAME.png)"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=SCORE_THRESHOLD,
        help=f"draw detections scoring at least this (default {SCORE_THRESHOLD})",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.score_threshold <= 1:  # False for NaN too
        raise FpnlabError(f"--score-threshold is a score in [0, 1], got {args.score_threshold}.")
    out = args.out or DEFAULT_FOLDER / f"{args.image.stem}.png"
    check_output_file(out, "--out", inputs=(args.image,), may_replace=is_lab_png)
    image, note = read_image(args.image)
    checkpoint = args.checkpoint or DEMO_CHECKPOINT
    model = load_model(checkpoint, resolve_device("auto"))
    if model.config.rpn_only:
        raise FpnlabError(
            f"checkpoint {checkpoint} holds an RPN alone (rpn_only, paper Table 1): it proposes boxes but names "
            "no classes, so there is nothing to draw; give a whole detector's checkpoint."
        )
    try:
        detections = detect(model, image, args.score_threshold)
    except DataError as err:
        raise DataError(f"image file {args.image}: {err}") from None
    save_detections(image, detections, model.categories, out)
    names = [model.categories[int(label) - 1] for label in detections["labels"]]
    print(
        f"{out}: {len(names)} detection(s) scoring >= {args.score_threshold}"
        + (f" ({', '.join(sorted(set(names)))})" if names else "")
        + (f"; image {note}" if note else "")
    )
    return 0
