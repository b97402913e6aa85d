"""`fpnlab eval`: COCO metrics (and proposal recall, per-level counts) of a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from fpnlab.commands.common import add_progress, add_result, check_result, positive_int, save_result
from fpnlab.engine.checkpoint import DEMO_CHECKPOINT
from fpnlab.engine.distributed import init_distributed, resolve_device, shutdown
from fpnlab.engine.evaluate import evaluate_checkpoint, format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint or exported model (default: the shipped demo model)"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="'shapes-mini', 'pennfudan' or a dataset folder (default: the one it was trained on)",
    )
    parser.add_argument("--split", default="val", choices=("train", "val"), help="split to evaluate (default val)")
    parser.add_argument("--max-images", type=positive_int, default=None, help="evaluate the first N images only")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--proposals", action="store_true", help="also score the RPN's proposals (AR, paper Table 1)")
    parser.add_argument("--levels", action="store_true", help="also count GT boxes, anchors, proposals, ROIs per level")
    add_result(parser)
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    check_result(args)
    device = resolve_device("auto")
    rank, _ = init_distributed(device)  # under torchrun each process scores its share of the images
    try:
        record = evaluate_checkpoint(
            args.checkpoint or DEMO_CHECKPOINT,
            args.dataset,
            args.split,
            args.max_images,
            args.batch_size,
            args.proposals,
            args.levels,
            not args.no_progress,
            device,
        )
    finally:
        shutdown()
    if rank != 0:
        return 0
    kinds = "box and mask" if "mask_AP" in record["coco_metrics"] else "box"
    print(format_table(record["coco_metrics"], title=f"COCO {kinds} metrics, {record['dataset']} {args.split}"))
    if args.proposals:
        print(format_table(record["proposal_recall"], title="\nRPN proposal recall"))
    if args.levels:
        print(format_table(record["level_statistics"], title="\nPer pyramid level"))
    save_result(args, record, device)
    return 0
