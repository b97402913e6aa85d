"""pycocotools' COCOeval of boxes and of masks, quietly: what fpnlab.engine.evaluate and .segments score with.

cocoeval(coco_gt, results, image_ids, use_cats, max_dets, iou_type)   evaluated and accumulated
summary(evaluator, names)                                             its summary numbers, named
mask_rle(mask)                                                        a binary mask as COCO's RLE
with_mask_rles(detections)                                            detections' masks as RLEs
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from fpnlab.model.masks import MASK_THRESHOLD


def cocoeval(
    coco_gt: Any,
    results: list[dict[str, Any]],
    image_ids: list[int],
    use_cats: bool,
    max_dets: tuple[int, ...],
    iou_type: str = "bbox",
) -> Any:
    """pycocotools' COCOeval of `results` over `image_ids`, evaluated and accumulated, quietly. iou_type "bbox":
    each result has a "bbox" [x, y, w, h]; "segm": a "segmentation" (an RLE, mask_rle)."""
    coco_dt = COCO()  # COCO.loadRes without its prints and its failure on an empty result list
    coco_dt.dataset = {
        "images": coco_gt.dataset["images"],
        "categories": coco_gt.dataset["categories"],
        "annotations": [{**r, "id": i + 1, "iscrowd": 0, **_extent(r, iou_type)} for i, r in enumerate(results)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.params.useCats = int(use_cats)
        evaluator.params.maxDets = list(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _extent(result: dict[str, Any], iou_type: str) -> dict[str, Any]:
    """The "area" (and for masks the "bbox") pycocotools' loadRes would add to a result."""
    if iou_type == "segm":
        rle = result["segmentation"]
        return {"area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist()}
    return {"area": result["bbox"][2] * result["bbox"][3]}


def mask_rle(mask: Tensor) -> dict[str, Any]:
    """A binary (H, W) mask -> COCO's compressed RLE, counts as text (JSON-ready, as COCO files store it)."""
    rle = mask_utils.encode(np.asfortranarray(mask.to(torch.uint8).cpu().numpy()))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def with_mask_rles(detections: dict[str, Any]) -> dict[str, Any]:
    """Detections whose "masks" (D, 1, H, W) probabilities become D binary RLEs (mask_rle), for COCO's segm."""
    if "masks" not in detections:
        return detections
    return {**detections, "masks": [mask_rle(mask[0] >= MASK_THRESHOLD) for mask in detections["masks"]]}


def summary(evaluator: Any, names: tuple[str, ...]) -> dict[str, float]:
    """COCOeval's summary numbers (stats: AP, AP50, AP75, AP_s/m/l, AR1/10/100, AR_s/m/l), the first len(names)."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    return {name: float(value) for name, value in zip(names, evaluator.stats)}
