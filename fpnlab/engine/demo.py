"""The lab's small trained detector, ready without training: `demo_model()`.

The shipped file data/checkpoints/demo.pt is the demo preset trained on shapes-mini
(`make checkpoint`; its training run and scores are in results/demo_training.json and
demo_checkpoint.json). In a partial checkout without it, the cpu preset is trained once into the
cache folder instead and reused from there.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fpnlab.data import cache_dir
from fpnlab.engine.checkpoint import DEMO_CHECKPOINT, load_model
from fpnlab.engine.loop import train
from fpnlab.engine.presets import get_preset
from fpnlab.model.detector import FPNDetector


def demo_model(device: str | torch.device = "cpu") -> FPNDetector:
    """The shipped small detector (data/checkpoints/demo.pt), or the cpu preset trained once into the cache."""
    if DEMO_CHECKPOINT.is_file():
        return load_model(DEMO_CHECKPOINT, device)
    run_dir = Path(cache_dir()) / "demo-cpu"
    print(
        f"note: {DEMO_CHECKPOINT} is missing, so the cpu preset is trained instead "
        f"(a few minutes, once) into {run_dir}."
    )
    result = train(get_preset("cpu", eval_at_end=False), run_dir)
    return load_model(result.checkpoint, device)
