"""`fpnlab train`: train a preset (or resume its run folder), then report, export and record it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from fpnlab.commands.common import add_progress, add_result, add_settings, check_result, save_result, settings
from fpnlab.engine.checkpoint import export_model, is_checkpoint
from fpnlab.engine.distributed import is_main_process, shutdown
from fpnlab.engine.evaluate import format_table
from fpnlab.engine.loop import TrainResult, train
from fpnlab.engine.presets import TrainConfig
from fpnlab.outputs import check_output_file

RESUME_RULE = (
    "Running the same command again resumes the run folder's checkpoint. On resume, settings that change the "
    "model, the data or their order (every model.* setting, dataset, max_train_images, hflip_prob, batch_size, "
    "seed) are refused, naming them; every other setting (lr, momentum, weight_decay, the warm-up, the schedule, "
    "iterations, gamma, clip_grad_norm, checkpoint_every, log_every, ...) takes effect from the resume "
    "iteration, and metrics.csv's lr column shows it. To start afresh, use another --run-dir."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = RESUME_RULE
    add_settings(parser)
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="run folder (default runs/<preset>): new, empty, or one fpnlab train made (it holds fpnlab-run.json)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="refuse to continue a checkpoint already in the run folder"
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the trained model, float16 and without training state, to PATH",
    )
    add_result(parser)
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    cfg = settings(args)
    run_dir = args.run_dir or Path("runs") / args.preset
    if args.export:  # checked before training, not after it
        check_output_file(args.export, "--export", inputs=(run_dir / "checkpoint.pt",), may_replace=is_checkpoint)
    check_result(args)
    try:
        result = train(cfg, run_dir, resume=not args.no_resume, progress=not args.no_progress)
    finally:
        shutdown()
    if not is_main_process():
        return 0
    if result.metrics:
        print(format_table(result.metrics, title=f"COCO metrics, {cfg.dataset} val"))
    if args.export:
        print(f"exported {export_model(result.checkpoint, args.export)}")
    save_result(args, run_record(args.preset, result.config or cfg, result, args.export), result.device)
    return 0


def run_record(preset: str, cfg: TrainConfig, result: TrainResult, export: Path | None) -> dict[str, Any]:
    """The figures of a run for results/*.json: config, loss curve, time and speed of this call, val metrics."""
    history = result.history
    tenth = max(1, len(history) // 10)
    first, last = history[:tenth], history[-tenth:]
    terms = [k for k in history[0] if k.startswith("loss")] if history else []
    record = {
        "preset": preset,
        "config": cfg.to_dict(),
        "iterations": result.iteration,
        "wall_minutes": round(result.wall_s / 60, 2),
        "images_per_s": round(result.images_per_s, 2),
        "loss_first_tenth": {k: round(sum(r[k] for r in first) / len(first), 4) for k in terms},
        "loss_last_tenth": {k: round(sum(r[k] for r in last) / len(last), 4) for k in terms},
        "loss_curve": [[int(r["iteration"]), round(r["loss"], 4)] for r in history[:: max(1, len(history) // 20)]],
        "val_metrics": result.metrics,
        "cpu_threads": torch.get_num_threads(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # > cores: the CPU was shared
    }
    if export is not None:
        record["checkpoint"] = str(export)
        record["checkpoint_mb"] = round(export.stat().st_size / 2**20, 2)
    return record
