"""`fpnlab make-data`: generate the synthetic multi-scale shapes dataset (COCO format)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fpnlab.commands.common import add_progress
from fpnlab.data.coco import size_bucket_shares
from fpnlab.data.generate import make_dataset
from fpnlab.data.synthetic import MAX_SIDE_FRACTION, SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="new or empty folder for train/, val/ and the COCO JSONs"
    )
    parser.add_argument("--train", type=int, default=1000, help="number of training images (default 1000)")
    parser.add_argument("--val", type=int, default=200, help="number of validation images (default 200)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument(
        "--max-side",
        type=float,
        default=MAX_SIDE_FRACTION,
        help=f"largest box side as a fraction of the image side (default {MAX_SIDE_FRACTION})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes to use (default: every core)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset that make-data wrote into --out before (nothing else is touched)",
    )
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    out = make_dataset(
        args.out,
        args.train,
        args.val,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        max_side=args.max_side,
    )
    for split in SPLITS:
        annotations = json.loads((out / f"{split}.json").read_text())["annotations"]
        shares = ", ".join(f"{name} {share:.0%}" for name, share in size_bucket_shares(annotations).items())
        print(f"{out / split}: {len(annotations)} objects ({shares})")
    return 0
