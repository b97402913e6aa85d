"""Old module names that still import, for this release: `from fpnlab.levels import assign_levels` keeps working.

The package was flat until version 0.1; its modules now live on floors (fpnlab/README.md). An old name
imports the module at its new place (the same module object, so `fpnlab.levels is fpnlab.model.levels`)
and warns once with a DeprecationWarning that names the new place. The old names go in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {  # old name -> new name
    "fpnlab.backbone": "fpnlab.model.backbone",
    "fpnlab.fpn": "fpnlab.model.fpn",
    "fpnlab.anchors": "fpnlab.model.anchors",
    "fpnlab.boxes": "fpnlab.model.boxes",
    "fpnlab.matching": "fpnlab.model.matching",
    "fpnlab.rpn": "fpnlab.model.rpn",
    "fpnlab.levels": "fpnlab.model.levels",
    "fpnlab.poolers": "fpnlab.model.poolers",
    "fpnlab.roi_heads": "fpnlab.model.roi_heads",
    "fpnlab.transform": "fpnlab.model.transform",
    "fpnlab.inputs": "fpnlab.model.inputs",
    "fpnlab.model_config": "fpnlab.model.config",
    "fpnlab.detector": "fpnlab.model.detector",
    "fpnlab.torchvision_port": "fpnlab.model.torchvision_port",
    "fpnlab.config": "fpnlab.engine.presets",
    "fpnlab.state": "fpnlab.engine.state",
    "fpnlab.batches": "fpnlab.engine.batches",
    "fpnlab.train": "fpnlab.engine.loop",
    "fpnlab.stopping": "fpnlab.engine.stopping",
    "fpnlab.run_folder": "fpnlab.engine.run_folder",
    "fpnlab.runlog": "fpnlab.engine.runlog",
    "fpnlab.checkpoint": "fpnlab.engine.checkpoint",
    "fpnlab.distributed": "fpnlab.engine.distributed",
    "fpnlab.evaluate": "fpnlab.engine.evaluate",
    "fpnlab.recall": "fpnlab.engine.recall",
    "fpnlab.detect": "fpnlab.engine.inference",
    "fpnlab.variants": "fpnlab.ablation.variants",
    "fpnlab.paper": "fpnlab.ablation.paper",
    "fpnlab.ablation_report": "fpnlab.ablation.report",
    "fpnlab.lab": "fpnlab.teaching.lab",
    "fpnlab.demo": "fpnlab.engine.demo",
    "fpnlab.analysis": "fpnlab.teaching.analysis",
    "fpnlab.questions": "fpnlab.teaching.questions",
    "fpnlab.receptive": "fpnlab.teaching.receptive",
    "fpnlab.jupyter_setup": "fpnlab.teaching.jupyter_setup",
    "fpnlab.widgets": "fpnlab.teaching.widgets",
    "fpnlab.units": "fpnlab.grading",
    "fpnlab.case_inputs": "fpnlab.grading.case_inputs",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name of MOVED and hands out the module at its new place."""

    def __init__(self) -> None:
        self.specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is now {new}; the old name goes in the next release.", DeprecationWarning, stacklevel=2
        )
        module = importlib.import_module(new)
        self.specs[new] = module.__spec__  # the import machinery sets the old name's spec on it next
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.specs[module.__name__]


def install() -> None:
    """Put the finder on sys.meta_path once (fpnlab/__init__.py calls it)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
