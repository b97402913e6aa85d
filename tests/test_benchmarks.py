"""The benchmark scripts still run: tiny CPU runs of detector_speed.py and profile_step.py.

They time nothing that is asserted (speed lives in the scripts' tables); what is asserted is that every
row is there, every ratio is a positive number, and that fpnlab and torchvision detect the same boxes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["--device", "cpu", "--height", "64", "--width", "96", "--batch", "2", "--warmup", "0", "--threads", "1"]


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_detector_speed_prints_every_row_with_positive_ratios_and_equal_detections(tmp_path):
    out = run_script(
        "detector_speed.py",
        *TINY,
        "--train-iters",
        "1",
        "--infer-iters",
        "1",
        "--precisions",
        "fp32,bf16",
        "--save",
        env={"FPNLAB_RESULTS": str(tmp_path)},
    )
    rows = re.findall(r"^(train img/s|infer ms/img b1|infer img/s)\s+(fp32|bf16)\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.M)
    assert sorted((metric, precision) for metric, precision, *_ in rows) == sorted(
        (m, p) for m in ("train img/s", "infer ms/img b1", "infer img/s") for p in ("fp32", "bf16")
    )
    for _, _, torchvision, fpnlab, ratio in rows:  # values with 2 decimals, the ratio with 3 (never rounded twice)
        tv, ours, half = float(torchvision), float(fpnlab), 0.005
        assert tv > 0 and ours > 0
        assert (ours - half) / (tv + half) - half <= float(ratio) <= (ours + half) / (tv - half) + half
    boxes, scores = re.search(r"max \|diff\| boxes (\S+) px, scores (\S+), labels equal", out).groups()
    assert float(boxes) < 1e-3 and float(scores) < 1e-5  # same weights, same images: same detections
    losses = re.search(r"same sampling seed \(torchvision / fpnlab\): (.*)$", out, re.M).group(1)
    pairs = re.findall(r"(loss_\w+) ([\d.]+) / ([\d.]+)", losses)
    assert len(pairs) == 4 and all(a == b for _, a, b in pairs)  # same sampled anchors and ROIs: same losses
    record = json.loads((tmp_path / "benchmark_cpu.json").read_text())
    assert len(record["rows"]) == len(rows) and record["detections"]["labels_equal"]
    assert record["settings"]["height"] == 64 and "CPU" in record["device"]


def test_profile_step_breaks_a_step_into_stages_sync_ops_and_top_ops(tmp_path):
    out = run_script(
        "profile_step.py", *TINY, "--model", "cpu", "--top", "5", "--save", env={"FPNLAB_RESULTS": str(tmp_path)}
    )
    train, infer = out.split("== train step")[1].split("== inference")
    for section, stages in (
        (train, ("backbone", "neck", "rpn", "roi_heads", "backward", "optimizer")),
        (infer, ("backbone", "neck", "rpn", "roi_heads")),
    ):
        table = dict(re.findall(r"^(\w+)\s+([\d.]+)\s+[\d.]+\s+\d+\s+\d+\s+\d+\s+\d+$", section, re.M))
        assert set(stages) <= set(table) and all(float(table[s]) > 0 for s in stages)
        top = re.findall(r"^  (aten::\S+)\s+(\d+)\s+([\d.]+)$", section, re.M)
        assert len(top) == 5 and all(int(calls) > 0 for _, calls, _ in top)
        assert "per-image ops" in section
    rpn_syncs = re.search(r"^rpn\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(\d+)\s+(\d+)$", train, re.M).groups()
    assert int(rpn_syncs[0]) >= int(rpn_syncs[1])  # batch 2 syncs at least as often as batch 1
    record = json.loads((tmp_path / "profile_cpu_cpu.json").read_text())
    for step, section in (("train", train), ("inference", infer)):
        stages = dict(re.findall(r"^(\w+)\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(\d+)\s+\d+$", section, re.M))
        assert record[step]["sync_ops_batch2"] == sum(int(n) for n in stages.values())  # the printed table's sum
        assert record[step]["sync_ops_per_image"] == record[step]["sync_ops_batch2"] - record[step]["sync_ops_batch1"]
