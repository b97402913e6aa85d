"""The paper's ablations (FPN paper, Sec. 5, Tables 1-3): same data, schedule and seed; one switch changed.

    record = run_ablation("rpn", variants=["fpn", "no_top_down"], seeds=(0, 1, 2), preset="cpu")
    fpnlab ablate --stage rpn --variants all --seeds 0 --preset gpu --out results/

Six variants, the rows (a)..(f) of the paper's tables (VARIANTS), trained as two stages:

    rpn        RPN-only models scored by proposal recall: AR@100, AR@1k, AR_s/m/l at 1k (Table 1)
    detector   the whole Faster R-CNN scored by COCO AP: AP@0.5, AP, AP_s/m/l (Tables 2 and 3)

Several seeds give every number a mean and a spread (the sample standard deviation over seeds), and
`compare` applies the lab's rule: a difference not larger than the spread is reported as no difference.

A record is written after every finished run (results/ablation_<stage>.json for the gpu preset,
results/ablation_<stage>_<preset>.json otherwise), so a call cut short keeps what it finished; running
the same command again skips the runs the file holds (same schedule) and adds the rest.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fpnlab.checkpoint import load_model
from fpnlab.config import TrainConfig, apply_overrides, get_preset, parse_set
from fpnlab.detector import DetectorConfig
from fpnlab.env import device_name
from fpnlab.errors import FpnlabError
from fpnlab.evaluate import coco_metrics, proposal_recall
from fpnlab.results import process_command, read_result, results_dir, write_result
from fpnlab.train import load_datasets, resolve_device, train

# DetectorConfig overrides per variant (fpnlab.detector documents each switch).
ALL_LEVELS = ("p2", "p3", "p4", "p5", "p6")
VARIANTS: dict[str, dict[str, Any]] = {
    "c4": dict(neck="c4"),  # (a) single-scale baseline on C4, all anchor sizes on it
    "c5": dict(neck="c5"),  # (b) single-scale baseline on C5
    "fpn": dict(neck="fpn", top_down=True, lateral=True, levels=ALL_LEVELS),  # (c) FPN, P2..P6
    "no_top_down": dict(neck="fpn", top_down=False, lateral=True, levels=ALL_LEVELS),  # (d) bottom-up pyramid
    "no_lateral": dict(neck="fpn", top_down=True, lateral=False, levels=ALL_LEVELS),  # (e) top-down, w/o lateral
    "p2_only": dict(neck="fpn", top_down=True, lateral=True, levels=("p2",)),  # (f) only the finest level P2
}
ROW_LABELS = {"c4": "(a) C4", "c5": "(b) C5", "fpn": "(c) FPN", "no_top_down": "(d) no top-down",
              "no_lateral": "(e) no lateral", "p2_only": "(f) P2 only"}
MAIN_COMPARISON = ("fpn", "no_top_down", "no_lateral")  # the rows to run with >= 3 seeds
REFERENCE = "fpn"  # every other variant is compared with this one

# The paper's numbers in percent, ResNet-50, COCO minival, trained on trainval35k (Lin et al., CVPR 2017),
# read from the paper's text. Keys match fpnlab.evaluate's metric names.
PAPER_TABLE1: dict[str, dict[str, float]] = {  # RPN proposals (Table 1)
    "c4": {"AR@100": 36.1, "AR@1000": 48.3, "AR_s@1000": 32.0, "AR_m@1000": 58.7, "AR_l@1000": 62.2},
    "c5": {"AR@100": 36.3, "AR@1000": 44.9, "AR_s@1000": 25.3, "AR_m@1000": 55.5, "AR_l@1000": 64.2},
    "fpn": {"AR@100": 44.0, "AR@1000": 56.3, "AR_s@1000": 44.9, "AR_m@1000": 63.4, "AR_l@1000": 66.2},
    "no_top_down": {"AR@100": 37.4, "AR@1000": 49.5, "AR_s@1000": 30.5, "AR_m@1000": 59.9, "AR_l@1000": 68.0},
    "no_lateral": {"AR@100": 34.5, "AR@1000": 46.1, "AR_s@1000": 26.5, "AR_m@1000": 57.4, "AR_l@1000": 64.7},
    "p2_only": {"AR@100": 38.4, "AR@1000": 51.3, "AR_s@1000": 35.1, "AR_m@1000": 59.7, "AR_l@1000": 67.6},
}
PAPER_TABLE2: dict[str, dict[str, float]] = {  # Fast R-CNN on the fixed proposals of Table 1(c) (Table 2)
    "c4": {"AP50": 54.7, "AP": 31.9, "AP_s": 15.7, "AP_m": 36.5, "AP_l": 45.5},  # conv5 head on C4
    "c5": {"AP50": 52.9, "AP": 28.8, "AP_s": 11.9, "AP_m": 32.4, "AP_l": 43.4},
    "fpn": {"AP50": 56.9, "AP": 33.9, "AP_s": 17.8, "AP_m": 37.7, "AP_l": 45.8},
    "no_top_down": {"AP50": 44.9, "AP": 24.9, "AP_s": 10.9, "AP_m": 24.4, "AP_l": 38.5},
    "no_lateral": {"AP50": 54.0, "AP": 31.3, "AP_s": 13.3, "AP_m": 35.2, "AP_l": 45.3},
    "p2_only": {"AP50": 56.3, "AP": 33.4, "AP_s": 17.3, "AP_m": 37.3, "AP_l": 45.6},
}
PAPER_TABLE3: dict[str, dict[str, float]] = {  # Faster R-CNN, RPN and detector on one backbone (Table 3)
    "c4": {"AP50": 53.1, "AP": 31.6, "AP_s": 13.2, "AP_m": 35.6, "AP_l": 47.1},  # conv5 head on C4
    "c5": {"AP50": 51.7, "AP": 28.0, "AP_s": 9.6, "AP_m": 31.9, "AP_l": 43.1},
    "fpn": {"AP50": 56.9, "AP": 33.9, "AP_s": 17.8, "AP_m": 37.7, "AP_l": 45.8},
}


@dataclass(frozen=True)
class Stage:
    """What one stage trains (DetectorConfig overrides) and how it scores the trained model."""

    model: dict[str, Any]
    metrics: tuple[str, ...]  # as named by fpnlab.evaluate, in the paper's column order
    size_metrics: tuple[str, ...]  # the small / medium / large columns, for the figure
    evaluate: Callable[..., dict[str, float]]  # (model, dataset, max_images, progress) -> metrics
    paper: dict[str, dict[str, float]]
    paper_source: str


# RPN stage: 1000 proposals per image at test time so that AR@1k means what it means in the paper.
STAGES: dict[str, Stage] = {
    "rpn": Stage(
        model=dict(rpn_only=True, rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000),
        metrics=("AR@100", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000"),
        size_metrics=("AR_s@1000", "AR_m@1000", "AR_l@1000"),
        evaluate=proposal_recall, paper=PAPER_TABLE1,
        paper_source="FPN paper Table 1 (RPN, ResNet-50, COCO minival)"),
    "detector": Stage(
        model=dict(rpn_only=False),
        metrics=("AP50", "AP", "AP_s", "AP_m", "AP_l"),
        size_metrics=("AP_s", "AP_m", "AP_l"),
        evaluate=coco_metrics, paper={**PAPER_TABLE2, **PAPER_TABLE3},
        paper_source="FPN paper Table 3 (Faster R-CNN) for rows a-c, Table 2 (Fast R-CNN on FPN proposals) "
                     "for rows d-f, which Table 3 lacks"),
}

# Schedules of the ablation runs, on top of the training preset of the same name (the record stores
# the full schedule and each run's measured time).
# gpu: R50, 512 px, batch 16, bf16: 500 iterations (8000 images, 2 epochs of data/shapes) and 150 val
#      images per variant (pycocotools scores 1000 proposals per image at ~0.1-0.3 s per image, on the
#      host), planned from torchvision's ~49 img/s at 800x1216 (issue 7) scaled to 512 px: about 55 s of
#      training and 30 s of scoring per variant, so that the six RPN variants fit one 10-minute H100 call
#      (--time-budget ends it early otherwise; the same command continues it).
# cpu: ResNet-tiny, 256 px, batch 2: 300 iterations (600 images, 3 epochs of shapes-mini): about 45 s of
#      training and 8 s of scoring per RPN variant on 2 idle cores (20 minutes when six jobs share them).
ABLATION_SCHEDULES: dict[str, dict[str, Any]] = {
    "gpu": dict(iterations=500, warmup_iterations=100, max_val_images=150, checkpoint_every=500, log_every=20),
    "cpu": dict(iterations=300, warmup_iterations=30, checkpoint_every=300),
}


# --- configurations -------------------------------------------------------------------------------

def check_names(stage: str, variants: Sequence[str]) -> None:
    """FpnlabError for an unknown stage or variant name."""
    if stage not in STAGES:
        raise FpnlabError(f"unknown ablation stage {stage!r}; choose one of {', '.join(STAGES)}.")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise FpnlabError(f"unknown ablation variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}.")


def base_config(stage: str, preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """The TrainConfig every variant of `stage` shares: preset, ablation schedule, stage model, overrides."""
    overrides = dict(overrides)
    model = {**STAGES[stage].model, **overrides.pop("model", {})}
    return get_preset(preset, **{**ABLATION_SCHEDULES.get(preset, {}), "eval_at_end": False, **overrides},
                      model=model)


def variant_overrides(base: TrainConfig, variant: str) -> dict[str, Any]:
    """The DetectorConfig fields `variant` changes.

    The RPN's pre-NMS top-n counts per level; a single-level variant (rows a, b, f) gets it times the
    number of FPN levels, so that every variant ranks as many candidates before NMS (Detectron's C4
    RPN likewise keeps 6000 at test time) and AR@1k is not capped by a smaller pool.
    """
    overrides = dict(VARIANTS[variant])
    if variant in ("c4", "c5") or len(overrides.get("levels", ALL_LEVELS)) == 1:
        for key in ("rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test"):
            overrides[key] = base.model.get(key, getattr(DetectorConfig, key)) * len(ALL_LEVELS)
    return overrides


def variant_config(base: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """`base` with the variant's switches and the seed."""
    return apply_overrides(base, {"model": variant_overrides(base, variant), "seed": seed})


def schedule_of(base: TrainConfig) -> dict[str, Any]:
    """The shared settings as plain JSON values (tuples become lists), to store and compare."""
    values = base.to_dict()
    values["model"] = {k: v for k, v in values["model"].items() if k not in VARIANTS["fpn"]}
    values.pop("seed")
    return json.loads(json.dumps(values))


# --- one run ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def run_folder(runs_dir: Path | None, name: str) -> Iterator[Path]:
    """`runs_dir/name` (kept: an interrupted run resumes there), else a temporary folder."""
    if runs_dir is not None:
        yield Path(runs_dir) / name
        return
    with tempfile.TemporaryDirectory(prefix=f"fpnlab-{name}-") as folder:
        yield Path(folder)


def train_and_score(stage: str, cfg: TrainConfig, run_dir: Path, progress: bool) -> dict[str, Any]:
    """Train cfg's detector in run_dir, then score it on the val split: one entry of record["runs"]."""
    result = train(cfg, run_dir, progress=progress)
    start = time.perf_counter()
    device = resolve_device(cfg.device, 0)
    model = load_model(result.checkpoint, device)
    metrics = STAGES[stage].evaluate(model, load_datasets(cfg)[1], max_images=cfg.max_val_images, progress=progress)
    eval_s = time.perf_counter() - start
    history = result.history
    return {
        "metrics": {name: metrics[name] for name in STAGES[stage].metrics},
        "final_loss": round(history[-1]["loss"], 4) if history else None,
        "train_s": round(result.wall_s, 1), "eval_s": round(eval_s, 1), "wall_s": round(result.wall_s + eval_s, 1),
        "images_per_s": round(result.images_per_s, 1), "device": device_name(device),
    }


# --- seeds, spread and the rule -------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> dict[str, float | int] | None:
    """{"mean", "std", "n"} of one metric over seeds; std is the sample standard deviation.

    A single value has no spread: {"mean", "n"} without "std". pycocotools' -1 ("no ground truth of
    this size") is not a value and is left out; with no values left the result is None.
    """
    values = [v for v in values if v != -1]
    if not values:
        return None
    if len(values) == 1:
        return {"mean": values[0], "n": 1}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values), "n": len(values)}


def compare(ours: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
    """mean(ours) - mean(other) and the lab's verdict on it, from one value per seed of each.

    The spread is the larger of the two sample standard deviations over seeds. A difference not larger
    than the spread is reported as "no difference"; a larger one as "higher" or "lower". With fewer than
    two seeds on either side the spread is unknown and so is the verdict.
    """
    a, b = mean_std(ours), mean_std(other)
    if a is None or b is None:
        return {"delta": None, "spread": None, "verdict": "not measured"}
    delta = a["mean"] - b["mean"]
    spread = max(a["std"], b["std"]) if "std" in a and "std" in b else None
    if spread is None:
        verdict = "unknown spread"
    elif abs(delta) <= spread:
        verdict = "no difference"
    else:
        verdict = "higher" if delta > 0 else "lower"
    return {"delta": delta, "spread": spread, "verdict": verdict}


def metric_values(runs: list[dict[str, Any]], variant: str, metric: str) -> list[float]:
    return [run["metrics"][metric] for run in runs if run["variant"] == variant]


def summarize(runs: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {metric: {"mean", "std", "n"}}} over the seeds of each variant, in VARIANTS order."""
    present = [v for v in VARIANTS if any(run["variant"] == v for run in runs)]
    return {v: {m: mean_std(metric_values(runs, v, m)) for m in metrics} for v in present}


def comparisons(runs: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{"fpn vs <variant>": {metric: compare(...)}} for every other variant that was run."""
    present = [v for v in VARIANTS if v != REFERENCE and any(run["variant"] == v for run in runs)]
    if not any(run["variant"] == REFERENCE for run in runs):
        return {}
    return {f"{REFERENCE} vs {v}": {m: compare(metric_values(runs, REFERENCE, m), metric_values(runs, v, m))
                                    for m in metrics} for v in present}


# --- the runner -----------------------------------------------------------------------------------------

def result_name(stage: str, preset: str) -> str:
    """ablation_<stage> for the gpu preset (the lab's reference figures), ablation_<stage>_<preset> otherwise."""
    return f"ablation_{stage}" if preset == "gpu" else f"ablation_{stage}_{preset}"


def run_ablation(stage: str = "rpn", variants: Sequence[str] | None = None, seeds: Sequence[int] = (0,),
                 preset: str = "cpu", *, out: str | Path | None = None, name: str | None = None,
                 runs_dir: str | Path | None = None, resume: bool = True, time_budget_s: float | None = None,
                 progress: bool = True, command: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Train and score every (variant, seed) of `stage` on one schedule; return the record.

    overrides: TrainConfig fields on top of the preset and ABLATION_SCHEDULES (model={...} for detector
    fields shared by all variants). With `out`, the record is written to out/<name>.json after every
    run and, when `resume`, the runs already there (same schedule) are kept, not redone. `runs_dir`
    keeps each run's folder (a run cut short resumes); `time_budget_s` starts no run that would likely
    end past the budget (runs left over are listed in record["pending"]). `command` is stored in the
    record and in each run it trains (default: the process's command line), so a record continued by
    several commands says which command made each run.
    """
    variants = list(variants) if variants is not None else list(VARIANTS)
    check_names(stage, variants)
    command = command or process_command()
    base = base_config(stage, preset, overrides)
    schedule = schedule_of(base)
    name = name or result_name(stage, preset)
    folder = Path(out) if out is not None else None
    runs = previous_runs(read_result(name, folder) if folder is not None and resume else None, schedule,
                         folder, name)
    todo = [(v, s) for v in variants for s in seeds if not any(r["variant"] == v and r["seed"] == s for r in runs)]
    started, longest = time.perf_counter(), 0.0
    settings = {v: variant_overrides(base, v) for v in VARIANTS}
    record = make_record(stage, preset, schedule, settings, runs, todo)
    for i, (variant, seed) in enumerate(todo):
        if time_budget_s is not None and longest and time.perf_counter() - started + longest > time_budget_s:
            break
        cfg = variant_config(base, variant, seed)
        with run_folder(Path(runs_dir) if runs_dir else None, f"{stage}-{variant}-seed{seed}") as run_dir:
            run = {"variant": variant, "seed": seed, "command": command,
                   **train_and_score(stage, cfg, run_dir, progress)}
        runs.append(run)
        longest = max(longest, run["wall_s"])
        record = make_record(stage, preset, schedule, settings, runs, todo[i + 1:])
        if folder is not None:
            write_result(name, record, device=resolve_device(cfg.device, 0), command=command, folder=folder)
    return record


def previous_runs(record: dict[str, Any] | None, schedule: dict[str, Any], folder: Path | None,
                  name: str) -> list[dict[str, Any]]:
    """The runs of an earlier record of the same schedule; FpnlabError if it holds another schedule."""
    if record is None:
        return []
    if record.get("schedule") != schedule:
        raise FpnlabError(f"{folder / f'{name}.json'} holds runs of another schedule; pass --fresh to replace "
                          "it, or --name to write a new record.")
    return list(record["runs"])


def make_record(stage: str, preset: str, schedule: dict[str, Any], settings: dict[str, dict[str, Any]],
                runs: list[dict[str, Any]], pending: list[tuple[str, int]]) -> dict[str, Any]:
    """The result record (see the module docstring); write_result adds command, device, versions, date."""
    spec = STAGES[stage]
    return {
        "stage": stage, "preset": preset, "schedule": schedule,
        "variants": {v: settings[v] for v in VARIANTS if any(run["variant"] == v for run in runs)},
        "runs": runs,
        "summary": summarize(runs, spec.metrics),
        "comparisons": comparisons(runs, spec.metrics),
        "rule": "a difference not larger than the spread (the larger sample std over seeds) is no difference",
        "paper": spec.paper, "paper_source": spec.paper_source,
        "pending": [{"variant": v, "seed": s} for v, s in pending],
    }


def load_ablation(stage: str, presets: Sequence[str] = ("gpu", "cpu"), folder: Path | None = None
                  ) -> dict[str, Any] | None:
    """The stored record of `stage`: results/ablation_<stage>.json (gpu), else the first of the other
    presets' records that exists (its "preset" and "device" say which); None when none was produced."""
    check_names(stage, [])
    for preset in presets:
        record = read_result(result_name(stage, preset), folder)
        if record is not None:
            return record
    return None


# --- reporting ------------------------------------------------------------------------------------------

def format_ablation(record: dict[str, Any]) -> str:
    """Text table: one row per variant, `mean ± std` in percent per metric, the paper's number in brackets;
    then the comparisons with FPN and their verdicts."""
    spec = STAGES[record["stage"]]
    lines = [f"{record['stage']} ablation, preset {record['preset']}: ours in %, mean ± std over seeds [paper]",
             f"{'variant':<16}" + "".join(f"{m:>24}" for m in spec.metrics) + f"{'seeds':>7}"]
    for variant, row in record["summary"].items():
        cells = [ours(row[m]) + f" [{percent(record['paper'].get(variant, {}).get(m), scale=1)}]"
                 for m in spec.metrics]
        seeds = max((stats["n"] for stats in row.values() if stats), default=0)
        lines.append(f"{ROW_LABELS[variant]:<16}" + "".join(f"{c:>24}" for c in cells) + f"{seeds:>7}")
    if record["comparisons"]:
        lines.append(f"differences in points, {REFERENCE} minus the variant (verdict: {record['rule']})")
    for pair, by_metric in record["comparisons"].items():
        other = ROW_LABELS[pair.split(" vs ")[1]]
        lines.append(f"{'- ' + other:<16}" + "".join(
            f"{percent(by_metric[m]['delta'], signed=True) + ' (' + by_metric[m]['verdict'] + ')':>24}"
            for m in spec.metrics))
    if record["pending"]:
        lines.append("not run yet: " + ", ".join(f"{p['variant']} seed {p['seed']}" for p in record["pending"]))
    return "\n".join(lines)


def ours(stats: dict[str, Any] | None) -> str:
    """A summary entry as "45.3 ± 1.2" (percent), "45.3" for one seed, "-" when not measured."""
    if stats is None:
        return "-"
    return percent(stats["mean"]) + (f" ± {percent(stats['std'])}" if "std" in stats else "")


def percent(value: float | None, scale: float = 100, signed: bool = False) -> str:
    """0.453 -> "45.3" (scale 100; the paper's numbers are already percent: scale 1); None -> "-"."""
    if value is None:
        return "-"
    return f"{scale * value:+.1f}" if signed else f"{scale * value:.1f}"


def ablation_figure(record: dict[str, Any]) -> Any:
    """Ours beside the paper by object size (fpnlab.plots.ablation_bars); matplotlib is imported only here."""
    from fpnlab.plots import ablation_bars

    spec = STAGES[record["stage"]]
    where = ", ".join(str(x) for x in (record["preset"] + " preset", record["schedule"]["dataset"],
                                          record.get("device")) if x)
    title = f"{record['stage']} ablation: ours ({where}) vs the paper (COCO)"
    return ablation_bars(record["summary"], record["paper"], spec.size_metrics, labels=ROW_LABELS, title=title)


# --- command line ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", choices=list(STAGES), default="rpn",
                        help="rpn: RPN-only models, proposal AR (Table 1); "
                             "detector: Faster R-CNN, COCO AP (Tables 2-3)")
    parser.add_argument("--variants", default="all",
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default all)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--preset", default="cpu", help="training preset: cpu, gpu or test (default cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value for every variant, e.g. --set iterations=200 (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the record (default results/)")
    parser.add_argument("--name", default=None, help="record name (default ablation_<stage>[_<preset>])")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="keep every run's folder here (default: temporary folders)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="start no run likely to end after this many minutes; run again to continue")
    parser.add_argument("--fresh", action="store_true", help="replace an existing record instead of continuing it")
    parser.add_argument("--no-figure", action="store_true", help="do not write the figure <name>.png")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def parse_list(text: str, what: str, cast: Callable[[str], Any]) -> list[Any]:
    try:
        items = [cast(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise FpnlabError(f"--{what} expects a comma-separated list, got {text!r}.") from None
    if not items:
        raise FpnlabError(f"--{what} is empty.")
    return items


def run(args: argparse.Namespace) -> int:
    variants = list(VARIANTS) if args.variants == "all" else parse_list(args.variants, "variants", str)
    seeds = parse_list(args.seeds, "seeds", int)
    out = args.out or results_dir()
    name = args.name or result_name(args.stage, args.preset)
    budget = None if args.time_budget is None else 60 * args.time_budget
    record = run_ablation(args.stage, variants, seeds, args.preset, out=out, name=name, runs_dir=args.runs_dir,
                          resume=not args.fresh, time_budget_s=budget, progress=not args.no_progress,
                          command=args.command_line, **parse_set(args.overrides))
    record = read_result(name, out) or record  # as stored: with device, versions and date
    print(format_ablation(record))
    print(f"record: {out / f'{name}.json'}")
    if not args.no_figure and record["runs"]:
        figure = out / f"{name}.png"
        ablation_figure(record).savefig(figure, dpi=120)
        print(f"figure: {figure}")
    return 0
