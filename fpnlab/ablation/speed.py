"""The head-speed record (benchmarks/head_speed.py, FPN paper Sec. 5.2: FPN's lighter head): its table and
what the notebook reads from it.

The record holds, per model, milliseconds per image inside each stage of the detector, the box head's own
time, the ROIs it saw and its FLOPs per ROI. `table_rows` derives the rest and divides C4 + conv5 by FPN:

    rows = table_rows({"fpn": {... "total_ms": 50 ...}, "c4_res5": {... "total_ms": 150 ...}})
    rows[6]   # {"metric": "total ms/image", "fpn": 50, "c4_res5": 150, "ratio": 3.0}
"""

from __future__ import annotations

from typing import Any

MODELS = {"fpn": "FPN 2fc", "c4_res5": "C4 + conv5"}  # name -> column title; the ratio is the second / the first
STAGES = ("backbone", "neck", "rpn", "roi_heads")  # the detector's submodules, timed
ROWS = (  # (label, key in figures(), decimals)
    ("backbone ms", "backbone_ms", 2),
    ("neck ms", "neck_ms", 2),
    ("rpn ms", "rpn_ms", 2),
    ("roi_heads ms", "roi_heads_ms", 2),
    ("  box head ms", "head_ms", 2),
    ("other ms", "other_ms", 2),
    ("total ms/image", "total_ms", 2),
    ("ROIs/image", "rois", 0),
    ("head ms/ROI", "head_ms_per_roi", 4),
    ("head MFLOPs/ROI", "head_mflops", 2),
)


def figures(measured: dict[str, float]) -> dict[str, float]:
    """A model's measured figures with the derived ones: other ms, head ms per ROI, head MFLOPs per ROI."""
    other = measured["total_ms"] - sum(measured[f"{name}_ms"] for name in STAGES)
    per_roi = measured["head_ms"] / measured["rois"] if measured["rois"] else float("nan")
    return {**measured, "other_ms": other, "head_ms_per_roi": per_roi, "head_mflops": measured["head_flops"] / 1e6}


def table_rows(measured: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """[{"metric", "fpn", "c4_res5", "ratio"}] in ROWS order; ratio = c4_res5 / fpn (None when fpn's is 0)."""
    fpn, c4 = figures(measured["fpn"]), figures(measured["c4_res5"])
    return [
        {"metric": label, "fpn": fpn[key], "c4_res5": c4[key], "ratio": c4[key] / fpn[key] if fpn[key] else None}
        for label, key, _ in ROWS
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as the benchmark prints them: one line per figure, the two models and their ratio."""
    decimals = {label: d for label, _, d in ROWS}
    lines = [f"{'':<17}{MODELS['fpn']:>12}{MODELS['c4_res5']:>12}{'C4 / FPN':>10}"]
    for r in rows:
        d = decimals[r["metric"]]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"{r['metric']:<17}{r['fpn']:>12.{d}f}{r['c4_res5']:>12.{d}f}{ratio:>10}")
    return "\n".join(lines)


def slowest_stage(record: dict[str, Any], model: str) -> str:
    """The stage (of STAGES) where `model` spends the most time per image in a head-speed record."""
    measured = record["measured"][model]
    return max(STAGES, key=lambda name: measured[f"{name}_ms"])


def total_ratio(record: dict[str, Any]) -> float:
    """C4 + conv5's time per image divided by FPN's, in a head-speed record."""
    measured = record["measured"]
    return measured["c4_res5"]["total_ms"] / measured["fpn"]["total_ms"]
