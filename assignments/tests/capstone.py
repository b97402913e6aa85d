"""Capstone, part 1: the detector you trained (runs/capstone/model.pt), built from your own units, reaches
AP50 on shapes-mini val.

The notebook's capstone section trains it (fpnlab.engine.loop.train under fpnlab.grading.strict(), so that no
torchvision fallback helps) and exports runs/capstone/model.pt. Here that model is loaded into the detector
your units make, in a process of its own without fallback (fpnlab.teaching.capstone.detections), and its
detections on the val images come back as plain tensors. Expected values: pycocotools' COCO evaluation
(fpnlab.engine.evaluate.detection_metrics) against the annotations of shapes-mini val, here.
"""

import dataclasses
import os
from pathlib import Path

from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.data import load_split
from fpnlab.engine.evaluate import detection_metrics
from fpnlab.engine.presets import get_preset
from fpnlab.grading import remote
from fpnlab.model.config import DetectorConfig

OK_FORMAT = False
name = "capstone"
points = 5
AP50 = 0.2
VAL_IMAGES = 120
MODEL = "runs/capstone/model.pt"
TIME_LIMIT_S = 600


def model_path():
    """The submitted model: under $FPNLAB_SUBMISSION when graded, else beside your fpnlab/ folder."""
    return Path(os.environ.get("FPNLAB_SUBMISSION") or remote.current_setup().package) / MODEL


def settings_that_differ(config):
    """The detector settings of `config` that are not the cpu preset's (the number of classes aside)."""
    preset = dataclasses.asdict(get_preset("cpu").model)
    given = dataclasses.asdict(dataclasses.replace(config, num_classes=get_preset("cpu").model.num_classes))
    return [key for key in preset if preset[key] != given[key]]


@test_case(name="your detector, built from your own units, reaches the AP50 to pass on shapes-mini val")
def reaches_ap50():
    path = model_path()
    assert path.is_file(), f"there is no {MODEL}: run the notebook's capstone section, which trains and exports it."
    refused = remote.refused_units()
    assert not refused, f"units {', '.join(refused)} are refused or not graded, so the detector is not your own."
    found = units.run_job(
        "capstone", "fpnlab.teaching.capstone:detections", str(path), VAL_IMAGES, time_limit_s=TIME_LIMIT_S
    )
    differ = settings_that_differ(DetectorConfig.from_dict(found["config"]))
    assert not differ, (
        f"{MODEL} is not the cpu preset's detector: {', '.join(differ)} differ; train it with "
        "get_preset('cpu') as the notebook does."
    )
    ap50 = detection_metrics(found["outputs"], load_split("shapes-mini", "val"))["AP50"]
    assert ap50 >= AP50, (
        f"AP50 {ap50:.3f} on {VAL_IMAGES} shapes-mini val images is below {AP50}: train again "
        "(all units checked first), or longer with get_preset('cpu', iterations=...)."
    )
