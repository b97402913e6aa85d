"""The lab's small trained detectors, ready without training: `demo_model()` and `demo_mask_model()`.

The shipped file data/checkpoints/demo.pt is the demo preset trained on shapes-mini
(`make checkpoint`; its training run and scores are in results/demo_training.json and
demo_checkpoint.json); data/checkpoints/demo_mask.pt is the demo_mask preset, the same detector with
Mask R-CNN's head (`make checkpoint-mask`; results/demo_mask_training.json, demo_mask_checkpoint.json).
In a partial checkout without them, a shorter run (the cpu preset's 1200 iterations) is trained once
into the cache folder instead and reused from there.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fpnlab.data import cache_dir
from fpnlab.engine.checkpoint import DEMO_CHECKPOINT, DEMO_MASK_CHECKPOINT, load_model
from fpnlab.engine.loop import train
from fpnlab.engine.presets import get_preset
from fpnlab.model.detector import FPNDetector


def demo_model(device: str | torch.device = "cpu") -> FPNDetector:
    """The shipped small detector (data/checkpoints/demo.pt), or the cpu preset trained once into the cache."""
    return _shipped_or_trained(DEMO_CHECKPOINT, "cpu", "demo-cpu", device)


def demo_mask_model(device: str | torch.device = "cpu") -> FPNDetector:
    """The shipped small Mask R-CNN (data/checkpoints/demo_mask.pt), or demo_mask for the cpu preset's 1200
    iterations, trained once into the cache."""
    return _shipped_or_trained(DEMO_MASK_CHECKPOINT, "demo_mask", "demo-mask-cpu", device, iterations=1200)


def _shipped_or_trained(
    checkpoint: Path, preset: str, folder: str, device: str | torch.device, **overrides: int
) -> FPNDetector:
    if checkpoint.is_file():
        return load_model(checkpoint, device)
    run_dir = Path(cache_dir()) / folder
    print(f"note: {checkpoint} is missing, so the {preset} preset is trained instead (minutes, once) into {run_dir}.")
    result = train(get_preset(preset, eval_at_end=False, **overrides), run_dir)
    return load_model(result.checkpoint, device)
