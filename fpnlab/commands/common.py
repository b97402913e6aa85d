"""Options several commands share, parsed one way."""

from __future__ import annotations

import argparse
from typing import Any

from fpnlab.engine.presets import PRESETS, TrainConfig, get_preset
from fpnlab.outputs import check_writable_folder
from fpnlab.overrides import parse_set
from fpnlab.results import check_result_name, results_dir, write_result


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_settings(parser: argparse.ArgumentParser, default_preset: str = "cpu") -> None:
    """--preset and --set: a training preset and typed overrides of any of its values."""
    parser.add_argument(
        "--preset", default=default_preset, help=f"one of {', '.join(PRESETS)} (default {default_preset})"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset value, e.g. --set lr=0.01 --set model.norm=gn "
        "--set model.rpn.nms_thresh=0.6 (repeatable)",
    )


def settings(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    """The TrainConfig of --preset with --set applied (and `extra` overrides first)."""
    return get_preset(args.preset, **{**extra, **parse_set(args.overrides)})


def add_result(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--result",
        default=None,
        metavar="NAME",
        help="record the figures in results/NAME.json (or $FPNLAB_RESULTS/NAME.json)",
    )


def check_result(args: argparse.Namespace) -> None:
    """Before any work: --result is a plain name whose record the results folder can take (when given)."""
    if args.result is not None:
        check_result_name(args.result, "--result")
        check_writable_folder(results_dir(), "results folder")
        check_result_name(args.result, "--result", results_dir())


def save_result(args: argparse.Namespace, record: dict[str, Any], device: Any) -> None:
    if args.result is not None:
        print(f"wrote {write_result(args.result, record, device=device, command=args.command_line)}")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars: one line when each phase starts and ends"
    )
