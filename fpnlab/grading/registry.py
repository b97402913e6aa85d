"""The graded assignment's units: the functions students write, where each lives and which section teaches it.

    UNITS["iou"]          Unit("model/boxes.py", "_iou", "0.2 Intersection over union", ("box_iou",))
    where("iou")          'write the body of _iou in fpnlab/model/boxes.py (notebook section 0.2 ...)'
    build_it_yourself(0)  the "build it yourself" text that ends lab notebook 00: its stage's units

A unit's code sits in its stage module between `# BEGIN UNIT <name>` and `# END UNIT <name>`
(fpnlab.grading.markers); the student release replaces it with a stub (assignments/stubs.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DEVICE = torch.device(os.environ.get("FPNLAB_UNITS_DEVICE", "cpu"))  # where the test cases put their tensors


@dataclass(frozen=True)
class Unit:
    """One function a student writes: where it lives, where the notebook teaches it, what it may not call."""

    module: str  # file under fpnlab/, e.g. "model/boxes.py"
    function: str  # qualified name in that module
    section: str  # the notebook section that introduces it
    forbidden: tuple[str, ...] = ()  # the lab's own functions that already compute the same thing


UNITS: dict[str, Unit] = {
    "area": Unit("model/boxes.py", "box_area", "0.1 Box area"),
    "iou": Unit("model/boxes.py", "_iou", "0.2 Intersection over union", ("box_iou",)),
    "encode": Unit("model/boxes.py", "BoxCoder.encode", "0.3 Boxes to regression targets"),
    "decode": Unit("model/boxes.py", "BoxCoder.decode", "0.4 Regression targets to boxes"),
    "nms": Unit("model/boxes.py", "_nms_reference", "0.5 NMS", ("nms", "_nms", "nms_reference", "batched_nms")),
    "backbone": Unit("model/backbone.py", "ResNetBody.forward", "1.1 Bottom-up pathway"),
    "fpn": Unit("model/fpn.py", "FPN.forward", "2.1 Top-down pathway and lateral connections"),
    "cell_anchors": Unit("model/anchors.py", "AnchorGenerator.cell_anchors", "3.1 The anchors of one cell"),
    "grid_anchors": Unit(
        "model/anchors.py", "AnchorGenerator._level_anchors", "3.2 Anchors on a grid", ("grid_anchors",)
    ),
    "flatten_objectness": Unit("model/rpn.py", "flatten_objectness", "4.1 RPN outputs in anchor order"),
    "flatten_deltas": Unit("model/rpn.py", "flatten_deltas", "4.1 RPN outputs in anchor order"),
    "matcher": Unit("model/matching.py", "Matcher.__call__", "4.2 Matching anchors to objects"),
    "sampler": Unit("model/matching.py", "BalancedPositiveNegativeSampler.__call__", "4.3 The balanced sample"),
    "filter_image": Unit("model/rpn.py", "RegionProposalNetwork.filter_image", "4.4 Choosing proposals"),
    "rpn_loss": Unit("model/rpn.py", "RegionProposalNetwork.loss", "4.5 The RPN's losses"),
    "assign_levels": Unit("model/levels.py", "assign_levels", "5.1 Eq. 1: which level pools a ROI"),
    "roi_align": Unit("model/poolers.py", "_sample_weights", "5.2 RoIAlign's bilinear samples", ("roi_align",)),
    "pooler": Unit("model/poolers.py", "MultiScaleRoIPooler.forward", "5.3 Pooling from the pyramid"),
    "roi_loss": Unit("model/roi_heads.py", "RoIHeads.loss", "6.1 The Fast R-CNN losses"),
    "detect_image": Unit("model/roi_heads.py", "RoIHeads.detect_image", "6.2 Detections of one image"),
    "mask_targets": Unit("model/masks.py", "project_masks", "9.1 Mask targets: ground truth seen through each ROI"),
    "mask_loss": Unit("model/masks.py", "mask_loss", "9.2 The mask loss: one class's channel"),
    "paste_masks": Unit("model/masks.py", "paste_masks", "9.3 Masks back into the image", ("crop_and_paste",)),
}


def where(unit: str) -> str:
    """Where to write `unit`: its function, file and notebook section."""
    found = UNITS[unit]
    return f"write the body of {found.function} in fpnlab/{found.module} (notebook section {found.section})"


def stage_units(stage: int) -> list[str]:
    """The units of a stage (= lab notebook number), in the assignment's order."""
    return [name for name, unit in UNITS.items() if unit.section.split(".")[0] == str(stage)]


def build_it_yourself(stage: int) -> str:
    """The markdown of the "build it yourself" cell that ends lab notebook `stage`: the assignment's units of
    that stage, each with its section, function and file (an empty string for a stage without units)."""
    names = stage_units(stage)
    if not names:
        return ""
    rows = [
        f"* **{UNITS[name].section}**: `{UNITS[name].function}` in `fpnlab/{UNITS[name].module}`, "
        f'checked with `check("{name}")`'
        for name in names
    ]
    units = "one unit" if len(names) == 1 else f"{len(names)} units"
    return (
        f"### Build it yourself\n\nThe graded assignment (`notebooks/fpn_assignment.ipynb` in its release) has you "
        f"write this stage's code yourself: {units}, in section {stage} of the assignment notebook.\n\n"
        + "\n".join(rows)
    )
