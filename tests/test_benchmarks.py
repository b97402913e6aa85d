"""The benchmark scripts still run: tiny CPU runs of detector_speed.py, profile_step.py and head_speed.py.

They time nothing that is asserted (speed lives in the scripts' tables); what is asserted is that every
row is there, every ratio is a positive number, and that fpnlab and torchvision detect the same boxes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fpnlab.ablation import speed
from fpnlab.engine.presets import PRESETS

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


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ imported as a module (it is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# Made-up figures per image: the table adds "other" (total minus the four stages), ms and MFLOPs per ROI.
FPN = dict(backbone_ms=20, neck_ms=5, rpn_ms=10, roi_heads_ms=8, head_ms=3, total_ms=50, rois=300, head_flops=2e6)
C4 = dict(backbone_ms=15, neck_ms=1, rpn_ms=9, roi_heads_ms=120, head_ms=100, total_ms=150, rois=250, head_flops=9e7)


def test_head_speed_table_derives_other_time_and_cost_per_roi_and_divides_c4_by_fpn():
    rows = speed.table_rows({"fpn": FPN, "c4_res5": C4})
    table = {r["metric"].strip(): (r["fpn"], r["c4_res5"], r["ratio"]) for r in rows}
    assert table["total ms/image"] == (50, 150, 3.0)
    assert table["box head ms"] == (3, 100, pytest.approx(100 / 3))
    assert table["other ms"] == (7, 5, pytest.approx(5 / 7))  # 50 - (20 + 5 + 10 + 8), 150 - (15 + 1 + 9 + 120)
    assert table["head ms/ROI"] == (pytest.approx(0.01), pytest.approx(0.4), pytest.approx(40))  # 3/300, 100/250
    assert table["head MFLOPs/ROI"] == (2.0, 90.0, 45.0)
    assert table["ROIs/image"] == (300, 250, pytest.approx(250 / 300))
    lines = speed.format_table(rows).splitlines()
    assert len(lines) == 11 and lines[0].split() == ["FPN", "2fc", "C4", "+", "conv5", "C4", "/", "FPN"]
    assert "total ms/image          50.00      150.00      3.00" in lines
    assert "head ms/ROI            0.0100      0.4000     40.00" in lines
    still = speed.table_rows({"fpn": {**FPN, "neck_ms": 0}, "c4_res5": C4})
    assert still[1]["ratio"] is None and speed.format_table(still).splitlines()[2].endswith(" -")


def test_the_notebook_reads_the_slowest_stage_and_the_ratio_from_a_record():
    record = {"measured": {"fpn": FPN, "c4_res5": C4}}
    assert speed.slowest_stage(record, "c4_res5") == "roi_heads"  # 120 ms of 15, 1, 9, 120
    assert speed.slowest_stage(record, "fpn") == "backbone"  # 20 ms of 20, 5, 10, 8
    assert speed.total_ratio(record) == 3.0  # 150 / 50


def test_head_speed_measures_both_heads_on_a_tiny_model_with_one_run():
    head_speed = load_benchmark("head_speed")
    config = PRESETS["test"].model  # resnet_tiny, 32-channel FPN, 64-d 2fc head, 91 classes
    models = head_speed.build_models(config, proposals=20, device="cpu")
    images = head_speed.make_images(head_speed.Scale(config, 128, 128, runs=1, proposals=20), 1, 1, "cpu")
    measured = {name: head_speed.measure(model, images, warmup=0, device="cpu") for name, model in models.items()}
    assert list(models["c4_res5"].backbone.out_channels) == ["c2", "c3", "c4"]  # conv5 runs in the head only
    for figures in measured.values():
        assert set(figures) == {f"{s}_ms" for s in speed.STAGES} | {"head_ms", "total_ms", "rois", "head_flops"}
        assert figures["rois"] == 20  # no RPN NMS: exactly the proposals asked for
    # 2fc: 2 x (32*49*64 + 64*64 + 64*91 + 64*364) = 267,136 FLOPs per ROI (fc6, fc7, class and box layers);
    # conv5 on 128 x 14 x 14: 2 x 49 x (128*256*9 + 256*256*9 + 128*256) + 2 x 256 x 455 = 90,148,352.
    assert (measured["fpn"]["head_flops"], measured["c4_res5"]["head_flops"]) == (267_136, 90_148_352)
    assert len(speed.table_rows(measured)) == len(speed.ROWS)
