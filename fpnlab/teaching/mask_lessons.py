"""What notebook 09 measures about masks: how much of an object survives a trip through an M x M grid.

    round_trip_iou(dataset, size=28)   mean IoU of crop_and_paste with the true mask, by class and COCO size bucket
    objects(dataset, count)            the first `count` objects of a split: image, mask, box, class, bucket
    val_round_trip(aligned)            round_trip_iou of shapes-mini val at 28 x 28, once per session
    mask_minus_box(record, metric)     a stored evaluation's mask AP minus its box AP (e.g. "AP_s")
    mask_head_view(model, image)       a Mask R-CNN's detections with every class's mask and each mask ROI's level
    channel_ious(view, target, d)      each class channel's mask of detection d against the object it found
    channel_summary(model, dataset)    over 20 images: how often the detected class's channel is the best mask
    segment_table(record)              the stored segment-proposal runs beside the paper's Table 6, as text

A perfect mask head can do no better than the round trip: its 28 x 28 output is pasted back exactly so.
The masks are taken at the detector's input scale (`scale`: shapes-mini's 160 px images are seen at 320 px),
because that is where Mask R-CNN's targets are made.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from typing import Any, NamedTuple

import torch
from torch import Tensor

from fpnlab.ablation.paper import PAPER_TABLE6
from fpnlab.ablation.report import compare_rows
from fpnlab.data import load_split
from fpnlab.data.coco import AREA_RANGES
from fpnlab.model.boxes import box_iou
from fpnlab.model.detector import FPNDetector
from fpnlab.model.masks import MASK_THRESHOLD, crop_and_paste, mask_iou, project_masks
from fpnlab.model.transform import ImageBatch, resize_boxes, resize_masks

DETECTOR_SCALE = 2.0  # the CPU detector's input: shapes-mini's 160 px images resized to 320 px


class MaskedObject(NamedTuple):
    image: Tensor  # (3, H, W) the object's image at `scale`
    mask: Tensor  # (H, W) uint8 its true mask
    box: Tensor  # (4,) its box, xyxy pixels
    category: str
    bucket: str  # COCO size bucket of its annotated area (small, medium, large)


class MaskHeadView(NamedTuple):
    detections: dict[str, Tensor]  # boxes, labels, scores, masks (D, 1, H, W): in the input image's pixels
    probabilities: Tensor  # (D, K, M, M) the head's mask of every class for each detection
    levels: Tensor  # (D,) the level k Eq. 1 pools each detection's mask ROI from


class ChannelSummary(NamedTuple):
    best: int  # detections whose detected class's channel is the best mask (ties count)
    detections: int  # detections overlapping an object by box IoU >= 0.5
    mean_gap: float  # mean IoU of the best channel minus the detected class's
    mean_spread: float  # mean IoU of the best channel minus the worst


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


@cache
def val_round_trip(aligned: bool = False) -> dict[str, dict[str, float]]:
    """round_trip_iou of shapes-mini's val split at 28 x 28 (Mask R-CNN's M), torchvision's sampling or aligned."""
    return round_trip_iou(load_split("shapes-mini", "val", masks=True), 28, aligned)


def mask_minus_box(record: dict[str, Any], metric: str = "AP") -> float:
    """A stored `fpnlab eval` record's mask AP minus its box AP, for "AP", "AP50", "AP_s", ... (as fractions)."""
    metrics = record["coco_metrics"]
    return metrics[f"mask_{metric}"] - metrics[metric]


@torch.no_grad()
def mask_head_view(model: FPNDetector, image: Tensor, score_threshold: float = 0.5) -> MaskHeadView:
    """One image through a Mask R-CNN: its detections scoring >= score_threshold, and for each the mask head's
    M x M probabilities of every class (the detector keeps only the detected class's) and its pooling level."""
    seen = model.inspect([image])
    found = seen.detections[0]
    keep = found["scores"] >= score_threshold
    found = {name: value[keep] for name, value in found.items()}
    boxes = resize_boxes(found["boxes"], seen.input_sizes[0], seen.image_sizes[0])  # in the batch's pixels
    head = model.roi_heads.extra_heads["mask"]
    logits = head(seen.pyramid, [boxes], ImageBatch(seen.images, seen.image_sizes))  # (D, K, M, M)
    return MaskHeadView(found, logits.sigmoid(), head.pooler.levels_of([boxes])[0])


def channel_ious(view: MaskHeadView, target: dict[str, Tensor], index: int) -> list[float] | None:
    """For detection `index`: the IoU of each class channel's M x M mask (>= 0.5) with the ground truth seen through
    the detection's box (the object it overlaps most), classes 1..K-1 in order; None when it overlaps no object
    by box IoU >= 0.5. Boxes and the target's masks in the same (input image) pixels."""
    box = view.detections["boxes"][index : index + 1].cpu()
    overlaps = box_iou(box, target["boxes"])[0]
    if len(overlaps) == 0 or overlaps.max() < 0.5:
        return None
    size = view.probabilities.shape[-1]
    truth = project_masks(target["masks"].float(), box, overlaps.argmax()[None], size)[0] >= MASK_THRESHOLD
    channels = view.probabilities[index, 1:].cpu() >= MASK_THRESHOLD  # (K - 1, M, M)
    return mask_iou(channels, truth[None])[:, 0].tolist()


def channel_summary(model: FPNDetector, dataset: Any, images: int = 20) -> ChannelSummary:
    """channel_ious of every detection scoring >= 0.5 on the first `images` images of a masks=True dataset."""
    device = next(model.parameters()).device
    best, gaps, spreads = 0, [], []
    for index in range(images):
        image, target = dataset[index]
        view = mask_head_view(model, image.to(device))
        for detection in range(len(view.detections["boxes"])):
            ious = channel_ious(view, target, detection)
            if ious is not None:
                own = ious[int(view.detections["labels"][detection]) - 1]
                best += int(own >= max(ious) - 1e-6)
                gaps.append(max(ious) - own)
                spreads.append(max(ious) - min(ious))
    return ChannelSummary(best, len(gaps), sum(gaps) / max(len(gaps), 1), sum(spreads) / max(len(spreads), 1))


SEGMENT_COLUMNS = ("AR@100", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000")


def segment_table(record: dict[str, Any]) -> str:
    """A results/segment_proposals_cpu.json record as a table in percent: each variant's mean +- std over the seeds
    that chose the settings and over the unseen ones, FPN minus the single level with the lab's verdict, then the
    paper's Table 6 rows (COCO, ResNet-50; "-" where the lab quotes no figure)."""
    lines = [f"{'':<22s}" + "".join(f"{c:>15s}" for c in SEGMENT_COLUMNS)]
    for group, label in (("runs", "seeds 0-2"), ("unseen_seeds", "unseen seeds")):
        for variant, row in record[group]["summary"].items():
            cells = [f"{100 * row[c]['mean']:6.1f} +-{100 * (row[c]['std'] or 0):4.1f}" for c in SEGMENT_COLUMNS]
            lines.append(f"{variant + ', ' + label:<22s}" + "".join(f"{cell:>15s}" for cell in cells))
        verdicts = [compare_rows(record[group], "fpn", "single", c)["verdict"] for c in SEGMENT_COLUMNS]
        lines.append(f"{'fpn minus single':<22s}" + "".join(f"{v:>15s}" for v in verdicts))
    for name, row in PAPER_TABLE6.items():
        cells = [f"{row[c]:.1f}" if c in row else "-" for c in SEGMENT_COLUMNS]
        lines.append(f"{'paper ' + name:<22s}" + "".join(f"{cell:>15s}" for cell in cells))
    return "\n".join(lines)
