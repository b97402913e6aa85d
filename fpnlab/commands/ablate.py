"""`fpnlab ablate`: train and score the paper's FPN ablations (Tables 1-3), record and draw them."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fpnlab.ablation.report import ablation_figure, format_ablation
from fpnlab.ablation.runner import run_ablation
from fpnlab.ablation.variants import STAGES, VARIANTS, result_name
from fpnlab.commands.common import add_progress, positive_int
from fpnlab.errors import FpnlabError
from fpnlab.outputs import check_replaceable, check_writable_folder
from fpnlab.overrides import parse_set
from fpnlab.plots.base import is_lab_png, save_figure
from fpnlab.results import check_result_name, is_record, read_result, results_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage",
        choices=list(STAGES),
        default="rpn",
        help="rpn: RPN-only models, proposal AR (Table 1); detector: Faster R-CNN, COCO AP (Tables 2-3)",
    )
    parser.add_argument(
        "--variants", default="all", help=f"comma-separated, from {', '.join(VARIANTS)} (default: all of the stage's)"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--preset", default="cpu", help="training preset: cpu, gpu, colab or test (default cpu)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset value for every variant, e.g. --set iterations=200 (repeatable)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="runs trained at once, each in its own process (default 1; 2 on a 2-core CPU)",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the record (default results/)")
    parser.add_argument("--name", default=None, help="record name (default ablation_<stage>[_<preset>])")
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="keep every run's folder here (default: temporary folders)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help="start no run likely to end after this many minutes; run again to continue",
    )
    parser.add_argument("--fresh", action="store_true", help="replace an existing record instead of continuing it")
    parser.add_argument("--no-figure", action="store_true", help="do not write the figure <name>.png")
    add_progress(parser)


def parse_list(text: str, what: str, cast: Callable[[str], Any]) -> list[Any]:
    try:
        items = [cast(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise FpnlabError(f"--{what} expects a comma-separated list, got {text!r}.") from None
    if not items:
        raise FpnlabError(f"--{what} is empty.")
    return items


def beside_record(path: Path) -> bool:
    """A figure the lab drew before it stamped its PNGs: the one beside the lab's record of the same name."""
    return is_record(path.with_suffix(".json"))


def run(args: argparse.Namespace) -> int:
    variants = (
        list(STAGES[args.stage].variants) if args.variants == "all" else parse_list(args.variants, "variants", str)
    )
    seeds = parse_list(args.seeds, "seeds", int)
    out = args.out or results_dir()
    check_writable_folder(out, "--out")
    name = args.name or result_name(args.stage, args.preset)
    check_result_name(name, "--name", out)  # before the runs, not after them
    if not args.no_figure:
        check_replaceable(out / f"{name}.png", "the figure", lambda p: is_lab_png(p) or beside_record(p))
    if args.time_budget is not None and not 0 < args.time_budget < math.inf:
        raise FpnlabError(f"--time-budget is a number of minutes > 0, got {args.time_budget}.")
    budget = None if args.time_budget is None else 60 * args.time_budget
    record = run_ablation(
        args.stage,
        variants,
        seeds,
        args.preset,
        out=out,
        name=name,
        runs_dir=args.runs_dir,
        resume=not args.fresh,
        time_budget_s=budget,
        progress=not args.no_progress,
        command=args.command_line,
        jobs=args.jobs,
        **parse_set(args.overrides),
    )
    record = read_result(name, out) or record  # as stored: with device, versions and date
    print(format_ablation(record))
    print(f"record: {out / f'{name}.json'}")
    if not args.no_figure and record["runs"]:
        figure = save_figure(ablation_figure(record), out / f"{name}.png", "ablation figure", 120, beside_record)
        print(f"figure: {figure}")
    return 0
