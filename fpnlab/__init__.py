"""fpnlab: Feature Pyramid Networks for object detection, one readable stage at a time.

    import fpnlab
    model = fpnlab.build_detector(num_classes=7, backbone="resnet_tiny", norm="bn")
    model = fpnlab.from_torchvision(torchvision_model)   # same weights, same detections

The detector names are imported on first use, so `fpnlab --help` does not wait for torch. The package's
floors and what each module does: fpnlab/README.md. Old flat module names (`fpnlab.levels`) still import
for this release (fpnlab.moved).
"""

from __future__ import annotations

import importlib
from typing import Any

from fpnlab import moved

__version__ = "0.1.0"

_LAZY = {
    "DetectorConfig": "fpnlab.model.config",
    "FPNDetector": "fpnlab.model.detector",
    "build_detector": "fpnlab.model.detector",
    "from_torchvision": "fpnlab.model.torchvision_port",
    "shapes_mini": "fpnlab.data",
    "load_split": "fpnlab.data",
}

__all__ = ["__version__", *_LAZY]

moved.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fpnlab' has no attribute {name!r}")
