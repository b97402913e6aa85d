"""Checkpoints: everything a run needs to continue exactly, written so that no crash can lose it.

A checkpoint is a dict of tensors and plain Python values (no pickled classes), so it loads with
`torch.load(path, weights_only=True)`, which cannot run code hidden in a downloaded file:

    format, version       "fpnlab-checkpoint", 2: tells our files from any other .pt file
    model                 the detector's state_dict (float32, or float16 in an exported file)
    model_config          DetectorConfig as nested dicts: load_model() rebuilds the detector from it
    categories            class names, label i -> categories[i - 1]; label_to_cat_id for COCO files
    train_config          TrainConfig as nested dicts
    iteration, loss       iterations done, and the mean loss of the last logged window before saving
    optimizer, scheduler, scaler, rng, data_position    the rest of the training state (absent in exports)

Version 1 (flat detector settings) still loads: `load_checkpoint` brings it to version 2's layout.
Saving goes through fpnlab.outputs: a new temporary file under a unique name beside the target, renamed
over it (atomic), so the previous checkpoint stays intact until the new one is complete; it replaces
only an fpnlab checkpoint, never a link or another file, and a failed write (disk full, read-only
folder) raises one FpnlabError that says so. A checkpoint whose weights are not finite is refused when
it is read, before any work.
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fpnlab.env import REPO
from fpnlab.errors import FpnlabError
from fpnlab.model.config import DetectorConfig, upgrade_flat_layout
from fpnlab.model.detector import FPNDetector, build_detector
from fpnlab.outputs import make_folder, same_file, write_atomic
from fpnlab.sources import check_regular_file

FORMAT = "fpnlab-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
DEMO_CHECKPOINT = REPO / "data" / "checkpoints" / "demo.pt"
DEMO_MASK_CHECKPOINT = REPO / "data" / "checkpoints" / "demo_mask.pt"  # the demo detector with the mask head
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "data_position")


# --- writing --------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write `checkpoint` to `path` atomically (fpnlab.outputs.write_atomic); return the path.

    `path` must be new or an fpnlab checkpoint. A failed write raises FpnlabError naming the cause (a
    full disk, no permission) and leaves the file already at `path`, if any, as it was.
    """
    buffer = io.BytesIO()  # serialised in memory first, so that a failed write is an OSError with its cause
    torch.save({"format": FORMAT, "version": VERSION, **checkpoint}, buffer)
    make_folder(Path(path).parent, "checkpoint folder")
    return write_atomic(Path(path), buffer.getvalue(), "checkpoint", may_replace=is_checkpoint)


def is_checkpoint(path: Path) -> bool:
    """Whether `path` is a file save_checkpoint wrote (its pickled dict names the format), without loading it."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            return FORMAT.encode() in archive.read(name)
    except (OSError, zipfile.BadZipFile, StopIteration, ValueError, RuntimeError):
        return False


def export_model(checkpoint_path: str | Path, out_path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """A small file for sharing: model weights in `dtype` (half the size in float16), no training state."""
    if same_file(Path(out_path), Path(checkpoint_path)):
        raise FpnlabError(f"--export {out_path} is the training checkpoint itself; export to another file.")
    checkpoint = load_checkpoint(checkpoint_path)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    slim = {k: v for k, v in checkpoint.items() if k not in TRAINING_STATE and k not in ("format", "version")}
    return save_checkpoint(out_path, {**slim, "model": weights})


# --- reading --------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint; any other file raises one clear FpnlabError."""
    path = Path(path)
    check_regular_file(path, "checkpoint", FpnlabError)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses pickled classes and non-torch files alike
        if "Unsupported global" in str(err) or "GLOBAL" in str(err):
            raise FpnlabError(
                f"checkpoint {path} contains pickled Python objects, which can run code when "
                "loaded, so it was refused; fpnlab's checkpoints hold only tensors and plain "
                "values."
            ) from None
        raise FpnlabError(f"checkpoint {path} cannot be read: it is corrupt or not a torch file.") from None
    except Exception as err:  # a truncated zip, bytes that are no archive, ...: torch raises many types
        raise FpnlabError(
            f"checkpoint {path} cannot be read: it is truncated or corrupt "
            f"({type(err).__name__}: {str(err).strip()[:80]})."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise FpnlabError(f"{path} is not an fpnlab checkpoint (it lacks the '{FORMAT}' marker).")
    if checkpoint.get("version") not in READABLE_VERSIONS:
        raise FpnlabError(
            f"checkpoint {path} has format version {checkpoint.get('version')}; "
            f"this fpnlab reads versions {', '.join(map(str, READABLE_VERSIONS))}."
        )
    if checkpoint["version"] == 1:
        checkpoint = upgrade_version1(checkpoint)
    check_contents(checkpoint, path)
    return checkpoint


def upgrade_version1(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A version-1 checkpoint (flat detector settings) in version 2's layout."""
    upgraded = dict(checkpoint, version=VERSION)
    if isinstance(checkpoint.get("model_config"), dict):
        upgraded["model_config"] = upgrade_flat_layout(checkpoint["model_config"])
    train_config = checkpoint.get("train_config")
    if isinstance(train_config, dict) and isinstance(train_config.get("model"), dict):
        upgraded["train_config"] = {**train_config, "model": upgrade_flat_layout(train_config["model"])}
    return upgraded


def check_contents(checkpoint: dict[str, Any], path: Path) -> None:
    """The fields every checkpoint needs, of the right kinds; FpnlabError naming the first that is not."""
    weights = checkpoint.get("model")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise FpnlabError(
            f"checkpoint {path} has no model weights (no 'model' dict of tensors); it is damaged "
            "or was not written by fpnlab."
        )
    if not isinstance(checkpoint.get("model_config"), dict):
        raise FpnlabError(f"checkpoint {path} has no detector settings ('model_config'); it is damaged.")
    categories = checkpoint.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise FpnlabError(f"checkpoint {path}: 'categories' should be a list of class names.")
    broken = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:
        raise FpnlabError(
            f"checkpoint {path} has weights that are not finite (NaN or infinite, e.g. {broken}); "
            "it cannot detect anything. Use an earlier checkpoint."
        )


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
            problems.append(
                f"{len(reshaped)} shape(s) differ (e.g. {k}: checkpoint "
                f"{tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})"
            )
        raise FpnlabError(f"checkpoint {source} does not match the model: {'; '.join(problems)}.")
    model.load_state_dict(state_dict)  # copies cast float16 exports back to the model's float32


def build_model_from(checkpoint: dict[str, Any], source: str | Path) -> FPNDetector:
    """The detector described by checkpoint["model_config"], with the checkpoint's weights, in eval mode.

    It also carries `.categories` (class names; label i is categories[i - 1]) for drawing detections.
    """
    try:
        config = DetectorConfig.from_dict(checkpoint["model_config"])
    except FpnlabError as err:
        raise FpnlabError(f"checkpoint {source} holds unusable detector settings: {err}") from None
    categories = list(checkpoint.get("categories", []))
    if categories and len(categories) != config.num_classes - 1:
        raise FpnlabError(
            f"checkpoint {source} names {len(categories)} categories but its detector has "
            f"{config.num_classes - 1} classes (plus background); the file is inconsistent."
        )
    model = build_detector(config)
    load_weights(model, checkpoint["model"], source)
    model.categories = categories or [f"class {i}" for i in range(1, config.num_classes)]
    return model.eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> FPNDetector:
    """The trained FPNDetector stored in a checkpoint (or an exported model), in eval mode on `device`."""
    return build_model_from(load_checkpoint(path), path).to(device)


# --- random number generators -------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The state of every random generator a run touches, as tensors and plain values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": np_pos,
            "has_gauss": np_has_gauss,
            "gauss": np_gauss,
        },
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
