"""Checkpoints: everything a run needs to continue exactly, written so that no crash can lose it.

A checkpoint is a dict of tensors and plain Python values (no pickled classes), so it loads with
`torch.load(path, weights_only=True)`, which cannot run code hidden in a downloaded file:

    format, version       "fpnlab-checkpoint", 1: tells our files from any other .pt file
    model                 the detector's state_dict (float32, or float16 in an exported file)
    model_config          DetectorConfig as a dict: load_model() rebuilds the detector from it
    categories            class names, label i -> categories[i - 1]; label_to_cat_id for COCO files
    train_config          TrainConfig as a dict
    iteration             iterations done
    optimizer, scheduler, scaler, rng, data_position    the rest of the training state (absent in exports)

Saving writes a temporary file next to the target and renames it over the target (`os.replace` is
atomic), so the previous checkpoint stays intact until the new one is complete.
"""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fpnlab.errors import FpnlabError

FORMAT = "fpnlab-checkpoint"
VERSION = 1
DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "demo.pt"
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "data_position")


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write `checkpoint` to `path` atomically (temporary file + rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save({"format": FORMAT, "version": VERSION, **checkpoint}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only when saving failed (disk full, Ctrl-C, ...)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint; any other file raises one clear FpnlabError."""
    path = Path(path)
    if not path.is_file():
        raise FpnlabError(f"checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses pickled classes and non-torch files alike
        what = "holds pickled Python objects" if "Unsupported global" in str(err) else "is corrupt or not a torch file"
        raise FpnlabError(f"checkpoint {path} cannot be loaded with weights_only=True: it {what}.") from None
    except Exception as err:  # a truncated zip, bytes that are no archive, ...: torch raises many types
        raise FpnlabError(f"checkpoint {path} cannot be read: it is truncated or corrupt "
                          f"({type(err).__name__}: {str(err).strip()[:80]}).") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise FpnlabError(f"{path} is not an fpnlab checkpoint (it lacks the '{FORMAT}' marker).")
    if checkpoint.get("version") != VERSION:
        raise FpnlabError(f"checkpoint {path} has format version {checkpoint.get('version')}; "
                          f"this fpnlab reads version {VERSION}.")
    return checkpoint


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """model.load_state_dict(state_dict), with a mismatch explained in one sentence that names `source`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} weight(s) missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unknown weight(s) (e.g. {unexpected[0]})")
        if reshaped:
            k = reshaped[0]
            problems.append(f"{len(reshaped)} shape(s) differ (e.g. {k}: checkpoint "
                            f"{tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})")
        raise FpnlabError(f"checkpoint {source} does not match the model: {'; '.join(problems)}.")
    model.load_state_dict(state_dict)  # copies cast float16 exports back to the model's float32


def build_model_from(checkpoint: dict[str, Any], source: str | Path) -> nn.Module:
    """The detector described by checkpoint["model_config"], with the checkpoint's weights, in eval mode.

    It also carries `.categories` (class names; label i is categories[i - 1]) for drawing detections.
    """
    from fpnlab.detector import DetectorConfig, build_detector

    try:
        config = DetectorConfig(**checkpoint["model_config"])
    except (KeyError, TypeError) as err:
        raise FpnlabError(f"checkpoint {source} holds no usable detector settings ({err}).") from None
    model = build_detector(config)
    load_weights(model, checkpoint["model"], source)
    model.categories = list(checkpoint.get("categories", []))
    return model.eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained FPNDetector stored in a checkpoint (or an exported model), in eval mode on `device`."""
    return build_model_from(load_checkpoint(path), path).to(device)


def export_model(checkpoint_path: str | Path, out_path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """A small file for sharing: model weights in `dtype` (half the size in float16), no training state."""
    checkpoint = load_checkpoint(checkpoint_path)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    slim = {k: v for k, v in checkpoint.items() if k not in TRAINING_STATE and k not in ("format", "version")}
    return save_checkpoint(out_path, {**slim, "model": weights})


def demo_model(device: str | torch.device = "cpu") -> nn.Module:
    """The shipped small detector trained on shapes-mini (data/checkpoints/demo.pt).

    When the file is missing (a partial checkout), the cpu preset is trained instead, once, into
    ~/.cache/fpnlab/demo-cpu; later calls reuse that run.
    """
    if DEMO_CHECKPOINT.is_file():
        return load_model(DEMO_CHECKPOINT, device)
    from fpnlab.config import get_preset
    from fpnlab.train import train

    run_dir = Path.home() / ".cache" / "fpnlab" / "demo-cpu"
    print(f"note: {DEMO_CHECKPOINT} is missing, so the cpu preset is trained instead "
          f"(a few minutes, once) into {run_dir}.")
    result = train(get_preset("cpu", eval_at_end=False), run_dir)
    return load_model(result.checkpoint, device)


# --- random number generators -------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """The state of every random generator a run touches, as tensors and plain values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": np_pos,
                  "has_gauss": np_has_gauss, "gauss": np_gauss},
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() returned (CUDA states only where this machine has the GPUs)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
