"""What notebook 09 measures about masks: how much of an object survives a trip through an M x M grid.

    round_trip_iou(dataset, size=28)   mean IoU of crop_and_paste with the true mask, by class and COCO size bucket
    objects(dataset, count)            the first `count` objects of a split: image, mask, box, class, bucket

A perfect mask head can do no better than the round trip: its 28 x 28 output is pasted back exactly so.
The masks are taken at the detector's input scale (`scale`: shapes-mini's 160 px images are seen at 320 px),
because that is where Mask R-CNN's targets are made.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import torch
from torch import Tensor

from fpnlab.data.coco import AREA_RANGES
from fpnlab.data.transforms import resize_masks
from fpnlab.model.masks import crop_and_paste, mask_iou

DETECTOR_SCALE = 2.0  # the CPU detector's input: shapes-mini's 160 px images resized to 320 px


class MaskedObject(NamedTuple):
    image: Tensor  # (3, H, W) the object's image at `scale`
    mask: Tensor  # (H, W) uint8 its true mask
    box: Tensor  # (4,) its box, xyxy pixels
    category: str
    bucket: str  # COCO size bucket of its annotated area (small, medium, large)


def size_bucket(area: float) -> str:
    """COCO's bucket of an annotation's area (in the original image's pixels)."""
    return next(name for name, (low, high) in AREA_RANGES.items() if low <= area < high)


def objects(dataset: Any, count: int | None = None, scale: float = DETECTOR_SCALE) -> list[MaskedObject]:
    """The objects of a CocoDetection built with masks=True, in order, resized by `scale` with their image."""
    found: list[MaskedObject] = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        size = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
        image = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        masks = resize_masks(target["masks"], size)  # (N, H', W')
        for mask, box, label, area in zip(masks, target["boxes"] * scale, target["labels"], target["area"]):
            found.append(MaskedObject(image, mask, box, dataset.categories[int(label) - 1], size_bucket(float(area))))
            if count is not None and len(found) == count:
                return found
    return found


def round_trip_iou(
    dataset: Any, size: int = 28, aligned: bool = False, scale: float = DETECTOR_SCALE
) -> dict[str, dict[str, float]]:
    """{category: {bucket: mean IoU}} of every object's true mask with its crop_and_paste at size x size, plus a
    row "all" per bucket; a bucket a class has no object in is left out."""
    ious: dict[tuple[str, str], list[float]] = defaultdict(list)
    for obj in objects(dataset, scale=scale):
        back = crop_and_paste(obj.mask[None], obj.box[None], size, aligned)  # (1, H, W)
        iou = float(mask_iou(back, obj.mask[None])[0, 0])
        ious[(obj.category, obj.bucket)].append(iou)
        ious[("all", obj.bucket)].append(iou)
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (category, bucket), values in sorted(ious.items()):
        table[category][bucket] = sum(values) / len(values)
    return dict(table)
