"""Reading an ablation record: means and spreads over seeds, the lab's rule, a table and a figure.

summarize(runs, metrics)     {variant: {metric: {"mean", "std", "n"}}}
compare(ours, other)         the difference of two variants and the verdict of the rule:
                             a difference not larger than the spread (the larger sample standard
                             deviation over seeds) is "no difference"
format_ablation(record)      text table: ours (mean ± std) beside the paper's number, then FPN minus each row
ablation_figure(record)      bars by object size, ours beside the paper's
load_ablation(stage)         the stored record (GPU first, else CPU)
anchor_size_table(record)    per anchor size: share of positives and top objectness (why row f fails)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fpnlab.ablation.variants import REFERENCE, ROW_LABELS, STAGES, VARIANTS, check_names, result_name
from fpnlab.plots import ablation_bars
from fpnlab.results import read_result

WIDTH = 24  # characters per metric column of the text table


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
    """The values of `metric` over the seeds of `variant`."""
    return [run["metrics"][metric] for run in runs if run["variant"] == variant]


def compare_rows(record: dict[str, Any], row: str, other: str, metric: str) -> dict[str, Any]:
    """`compare` of two rows of a record on one metric: row minus other, its spread and verdict."""
    runs = record["runs"]
    return compare(metric_values(runs, row, metric), metric_values(runs, other, metric))


def run_means(record: dict[str, Any], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """{variant: {key: mean over its seeds}} of per-run figures such as "final_loss" or "train_s"."""
    variants = dict.fromkeys(run["variant"] for run in record["runs"])
    return {
        v: {k: statistics.fmean(run[k] for run in record["runs"] if run["variant"] == v) for k in keys}
        for v in variants
    }


def summarize(runs: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {metric: {"mean", "std", "n"}}} over the seeds of each variant, in VARIANTS order."""
    present = [v for v in VARIANTS if any(run["variant"] == v for run in runs)]
    return {v: {m: mean_std(metric_values(runs, v, m)) for m in metrics} for v in present}


def comparisons(runs: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{"fpn vs <variant>": {metric: compare(...)}} for every other variant that was run."""
    present = [v for v in VARIANTS if v != REFERENCE and any(run["variant"] == v for run in runs)]
    if not any(run["variant"] == REFERENCE for run in runs):
        return {}
    return {
        f"{REFERENCE} vs {v}": {
            m: compare(metric_values(runs, REFERENCE, m), metric_values(runs, v, m)) for m in metrics
        }
        for v in present
    }


def load_ablation(
    stage: str, presets: Sequence[str] = ("gpu", "cpu"), folder: Path | None = None
) -> dict[str, Any] | None:
    """The stored record of `stage`: results/ablation_<stage>.json (gpu), else the first of the other
    presets' records that exists (its "preset" and "device" say which); None when none was produced."""
    check_names(stage, [])
    for preset in presets:
        record = read_result(result_name(stage, preset), folder)
        if record is not None:
            return record
    return None


def format_ablation(record: dict[str, Any]) -> str:
    """Text table: one row per variant, `mean ± std` in percent per metric, the paper's number in brackets;
    then the comparisons with FPN and their verdicts."""
    spec = STAGES[record["stage"]]
    lines = [
        f"{record['stage']} ablation, preset {record['preset']}: ours in %, mean ± std over seeds [paper]",
        f"{'variant':<16}" + "".join(f"{m:>{WIDTH}}" for m in spec.metrics) + f"{'seeds':>7}",
    ]
    for variant, row in record["summary"].items():
        cells = [ours(row[m]) + f" [{percent(record['paper'].get(variant, {}).get(m), scale=1)}]" for m in spec.metrics]
        seeds = max((stats["n"] for stats in row.values() if stats), default=0)
        lines.append(f"{ROW_LABELS[variant]:<16}" + "".join(f"{c:>{WIDTH}}" for c in cells) + f"{seeds:>7}")
    if record["comparisons"]:
        lines.append(f"differences in points, {REFERENCE} minus the variant (verdict: {record['rule']})")
    for pair, by_metric in record["comparisons"].items():
        other = ROW_LABELS[pair.split(" vs ")[1]]
        lines.append(
            f"{'- ' + other:<16}"
            + "".join(
                f"{percent(by_metric[m]['delta'], signed=True) + ' (' + by_metric[m]['verdict'] + ')':>{WIDTH}}"
                for m in spec.metrics
            )
        )
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
    """Ours beside the paper by object size (fpnlab.plots.ablation_bars)."""
    spec = STAGES[record["stage"]]
    where = ", ".join(
        str(x) for x in (record["preset"] + " preset", record["schedule"]["dataset"], record.get("device")) if x
    )
    title = f"{record['stage']} ablation: ours ({where}) vs the paper (COCO)"
    return ablation_bars(record["summary"], record["paper"], spec.size_metrics, labels=ROW_LABELS, title=title)


def anchor_size_table(record: dict[str, Any], variants: Sequence[str] = tuple(VARIANTS)) -> str:
    """Text table of the RPN runs' anchor-size diagnosis (fpnlab.engine.evaluate.anchor_size_statistics), mean over
    seeds, for `variants` (default all): the share of positive anchors and the best objectness logit of each
    anchor size, and the proposals left per image. Why row (f) misses small objects, in numbers."""
    runs = [run for run in record["runs"] if "anchor_sizes" in run]
    sizes = list(runs[0]["anchor_sizes"]["sizes"]) if runs else []
    lines = [
        f"{'variant':<16}"
        + "".join(f"{'pos% ' + s:>9}" for s in sizes)
        + "".join(f"{'logit ' + s:>10}" for s in sizes)
        + f"{'proposals':>11}"
    ]
    for variant in (v for v in VARIANTS if v in variants):
        mine = [run["anchor_sizes"] for run in runs if run["variant"] == variant]
        if not mine:
            continue
        share = [statistics.fmean(m["sizes"][s]["positive_share"] for m in mine) for s in sizes]
        logit = [statistics.fmean(m["sizes"][s]["best_logit"] for m in mine) for s in sizes]
        proposals = statistics.fmean(m["proposals_per_image"] for m in mine)
        lines.append(
            f"{ROW_LABELS[variant]:<16}"
            + "".join(f"{100 * v:9.1f}" for v in share)
            + "".join(f"{v:10.2f}" for v in logit)
            + f"{proposals:11.0f}"
        )
    return "\n".join(lines)
