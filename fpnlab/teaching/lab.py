"""What a notebook starts with, in one call: the device, a trained detector, the data, one example.

    lab = start_lab(checkpoint=None)     # the shipped demo detector on the best device, shapes-mini val
    ex = lab.example(3)                  # val image 3 seen by the detector: every stage's output
    ex.resized, ex.gt_boxes              # the image the network sees, and its boxes in the same pixels

    coco = coco_detector()               # torchvision's COCO-trained R50-FPN, or None offline

Every notebook of the lab runs the same setup, so it lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from fpnlab.data import CocoDetection, load_split
from fpnlab.engine.checkpoint import load_model
from fpnlab.env import default_device, device_name
from fpnlab.errors import FpnlabError
from fpnlab.model.detector import FPNDetector, Inspection
from fpnlab.model.torchvision_port import coco_weights_reachable, from_torchvision
from fpnlab.model.transform import resize_boxes
from fpnlab.teaching import facts


@dataclass
class Example:
    """One val image as the detector sees it."""

    image: Tensor  # (3, H, W) in [0, 1], as stored
    target: dict[str, Tensor]  # its ground truth, in the image's pixels
    seen: Inspection  # FPNDetector.inspect of the image: features, anchors, proposals, levels, detections
    resized: Tensor  # (3, h, w) the image the network sees (resized, not normalised), on the CPU
    gt_boxes: Tensor  # (N, 4) the ground truth in the pixels of `resized`


@dataclass
class Lab:
    """The device, the detector and the val split a notebook works with."""

    device: torch.device
    model: FPNDetector
    val_set: CocoDetection

    def example(self, index: int) -> Example:
        """Val image `index` through every stage of the detector (eval mode, no gradients)."""
        image, target = self.val_set[index]
        seen = self.model.inspect([image.to(self.device)])
        size = seen.image_sizes[0]
        return Example(
            image, target, seen, seen.resized[0].cpu(), resize_boxes(target["boxes"], image.shape[-2:], size)
        )


def start_lab(checkpoint: str | Path | None = None, dataset: str = "shapes-mini", seed: int = 0) -> Lab:
    """The lab's starting point: the shipped demo detector (or `checkpoint`) on the best device, the val
    split of `dataset`, torch's generator seeded with `seed`; prints one line saying what was loaded."""
    torch.manual_seed(seed)
    device = default_device()
    model = facts.demo()[0] if checkpoint is None else load_model(checkpoint, device)  # the questions' own
    val_set = load_split(dataset, "val")
    config = model.config
    print(
        f"device {device_name(device)}; detector {'demo' if checkpoint is None else checkpoint} "
        f"({config.backbone}, {config.min_size} px input, levels {', '.join(config.rpn_levels())}); "
        f"{dataset} val: {len(val_set)} images"
    )
    return Lab(device, model, val_set)


def coco_detector(device: torch.device | str | None = None) -> FPNDetector | None:
    """torchvision's COCO-trained Faster R-CNN R50-FPN as an fpnlab detector (`from_torchvision(weights=
    "DEFAULT")`, about 160 MB, downloaded once), or None, with one line saying why, when it cannot be had."""
    if not coco_weights_reachable():
        print("COCO weights: not cached and the download server is out of reach (offline?); skipping this part.")
        return None
    try:
        return from_torchvision(weights="DEFAULT").to(device or default_device())
    except FpnlabError as err:
        print(f"COCO weights: {err}")
        return None
