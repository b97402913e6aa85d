"""The runs a student starts in notebooks 07 and 08, run once here and stored, so each notebook can show what
its own run should reach and how long it takes (`make notebook-runs`):

    python -m fpnlab.teaching.notebook_runs 07    # results/notebook07_default.json: the default training run
    python -m fpnlab.teaching.notebook_runs 08    # results/notebook08_rerun.json and notebook08_rerun_1x.json
    python -m fpnlab.teaching.notebook_runs 08-table3   # results/notebook08_rerun_table3.json

Each does exactly what the notebook's cells do with their default settings (the same functions, settings
and seeds), timed on this machine, and records the load average, so a busy machine can be told apart.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch

from fpnlab.ablation.runner import run_ablation
from fpnlab.data import load_split
from fpnlab.engine.checkpoint import load_model
from fpnlab.engine.evaluate import coco_metrics
from fpnlab.engine.inference import detect_all
from fpnlab.engine.loop import train
from fpnlab.engine.presets import get_preset
from fpnlab.engine.recall import recall_by_size
from fpnlab.errors import FpnlabError
from fpnlab.outputs import temporary_folder
from fpnlab.results import write_result
from fpnlab.teaching import analysis

NOTEBOOK07 = {"preset": "cpu", "max_val_images": 30, "seed": 0}  # notebook 07's settings cell
NOTEBOOK08 = {"variants": ("fpn", "no_top_down", "no_lateral"), "seeds": (3, 4), "preset": "cpu", "jobs": 2}
NOTEBOOK08_TABLE3 = {"variants": ("c5", "fpn"), "seeds": (3, 4), "preset": "cpu", "jobs": 2}  # Table 3's re-run
AT_1X = {"model": {"min_size": 160, "max_size": 160, "anchor_sizes": (16, 32, 64, 128)}}  # the 1x control


def notebook07_default() -> dict[str, Any]:
    """Notebook 07's default run: the cpu preset trained from scratch, then measured as the notebook does."""
    cfg = get_preset(NOTEBOOK07["preset"], eval_at_end=False)
    with temporary_folder("fpnlab-notebook07-") as run_dir:
        torch.manual_seed(NOTEBOOK07["seed"])
        started = time.perf_counter()
        result = train(cfg, run_dir, progress=None)
        wall_s = time.perf_counter() - started
        model = load_model(result.checkpoint)
    return {
        "settings": NOTEBOOK07,
        "iterations": result.iteration,
        "wall_s": round(wall_s, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "history": result.history,
        **measured(model, load_split(cfg.dataset, "val"), NOTEBOOK07["max_val_images"]),
    }


def measured(model: torch.nn.Module, val_set: Any, count: int) -> dict[str, Any]:
    """What notebook 07 measures on a trained model: COCO metrics, the two recalls, detections >= 0.5."""
    images, targets = zip(*(val_set[i] for i in range(count)))
    found = detect_all(model, images)
    by_size = recall_by_size(found, list(targets), score_thresh=0.5, iou_thresh=0.5)
    objects = sum(s["objects"] for s in by_size.values())
    return {
        "val_metrics": coco_metrics(model, val_set, max_images=count, progress=None),
        "recall": {
            "rpn_after_nms": analysis.recall_after_steps(model, val_set, count)["after NMS"],
            "detections_0.5": sum(s["recall"] * s["objects"] for s in by_size.values()) / objects,
        },
        "detections_0.5_per_image": [int((d["scores"] >= 0.5).sum()) for d in found],
    }


def notebook08_rerun(stage: str, settings: dict[str, Any], which: str, **overrides: Any) -> dict[str, Any]:
    """One of notebook 08's re-runs with its default variants, seeds and jobs: Table 1's (stage "rpn", NOTEBOOK08,
    at 2x or with AT_1X the 1x control) or Table 3's (stage "detector", NOTEBOOK08_TABLE3)."""
    variants, seeds, preset, jobs = (settings[key] for key in ("variants", "seeds", "preset", "jobs"))
    return run_ablation(stage, variants, seeds, preset, jobs=jobs, progress=None, command=command(which), **overrides)


def command(which: str) -> str:
    """How a record of these runs is remade."""
    return f"make notebook-runs (python -m fpnlab.teaching.notebook_runs {which})"


def main(which: str) -> int:
    if which == "07":
        print(f"wrote {write_result('notebook07_default', notebook07_default(), command=command('07'))}")
    elif which == "08":
        for name, overrides in (("notebook08_rerun", {}), ("notebook08_rerun_1x", AT_1X)):
            record = notebook08_rerun("rpn", NOTEBOOK08, which, **overrides)
            print(f"wrote {write_result(name, record, command=command(which))}")
    elif which == "08-table3":
        record = notebook08_rerun("detector", NOTEBOOK08_TABLE3, which)
        print(f"wrote {write_result('notebook08_rerun_table3', record, command=command(which))}")
    else:
        raise FpnlabError(f"which notebook's runs? 07, 08 or 08-table3, got {which!r}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
