"""Where the lab runs: the repository it comes from, the device to use, whether it is Colab, the software versions to
record with every result."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy
import torch
import torchvision

REPO = Path(__file__).resolve().parent.parent  # the checkout: data/, results/, notebooks/ beside fpnlab/


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def on_colab() -> bool:
    """True in a Google Colab runtime: its kernel imports google.colab at start, its processes see COLAB_RELEASE_TAG."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def quick_runs() -> bool:
    """True when FPNLAB_QUICK_RUNS=1: the test suite runs notebooks 07 and 08 with their training shortened to
    seconds (a student never sets it; the notebooks' own settings are the full runs)."""
    return os.environ.get("FPNLAB_QUICK_RUNS") == "1"


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable name: the GPU model, or the CPU with its core count."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU ({torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour the results depend on."""
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
    }
    if torch.version.cuda:
        info["cuda"] = torch.version.cuda
    return info


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
