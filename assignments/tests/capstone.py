"""Capstone: the detector built from your own units, trained with the cpu preset on shapes-mini, reaches
AP50 on shapes-mini val.

The notebook's capstone section trains it (fpnlab.engine.loop.train under fpnlab.grading.strict(), so that no
torchvision fallback helps) and exports runs/capstone/model.pt. Here that model is loaded into the
detector your units make and scored, again without fallback: AP50 must reach the threshold. Expected
values: pycocotools' COCO evaluation (fpnlab.engine.evaluate) against the annotations of shapes-mini val.
"""

import dataclasses
import os
from pathlib import Path

from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.data import load_split
from fpnlab.engine.checkpoint import build_model_from, load_checkpoint
from fpnlab.engine.evaluate import coco_metrics
from fpnlab.engine.presets import get_preset
from fpnlab.model.config import DetectorConfig

OK_FORMAT = False
name = "capstone"
points = 10
AP50 = 0.2
VAL_IMAGES = 120
MODEL = "runs/capstone/model.pt"


def model_path():
    """The submitted model: under $FPNLAB_SUBMISSION when graded, else beside your fpnlab/ folder."""
    return Path(os.environ.get("FPNLAB_SUBMISSION") or Path(units.__file__).resolve().parents[1]) / MODEL


def settings_that_differ(config):
    """The detector settings of `config` that are not the cpu preset's (the number of classes aside)."""
    preset = dataclasses.asdict(get_preset("cpu").model)
    given = dataclasses.asdict(dataclasses.replace(config, num_classes=get_preset("cpu").model.num_classes))
    return [key for key in preset if preset[key] != given[key]]


@test_case(name="your detector, built from your own units, reaches the AP50 to pass on shapes-mini val")
def reaches_ap50():
    path = model_path()
    assert path.is_file(), f"there is no {MODEL}: run the notebook's capstone section, which trains and exports it."
    refused = [unit for unit in units.UNITS if units.refusal(unit) is not None]
    assert not refused, f"units {', '.join(refused)} are refused (check them), so the detector is not your own."
    checkpoint = load_checkpoint(path)
    differ = settings_that_differ(DetectorConfig.from_dict(checkpoint["model_config"]))
    assert not differ, (
        f"{MODEL} is not the cpu preset's detector: {', '.join(differ)} differ; train it with "
        "get_preset('cpu') as the notebook does."
    )
    with units.strict():
        model = build_model_from(checkpoint, path)
        ap50 = coco_metrics(model, load_split("shapes-mini", "val"), max_images=VAL_IMAGES, progress=None)["AP50"]
    assert ap50 >= AP50, (
        f"AP50 {ap50:.3f} on {VAL_IMAGES} shapes-mini val images is below {AP50}: train again "
        "(all units checked first), or longer with get_preset('cpu', iterations=...)."
    )
