"""Load any COCO-format detection dataset: one JSON file plus one folder of images.

`CocoDetection[i]` returns `(image, target)`, torchvision's detection convention:

    image  : float tensor (3, H, W) in [0, 1]
    target : boxes (N, 4) float32 xyxy pixels, labels (N,) int64 in 1..K (0 is background),
             image_id int, area (N,) float32, iscrowd (N,) int64 (all 0),
             and with `masks=True` masks (N, H, W) uint8: 1 inside object n (its polygons or RLE)

Design
------
* The JSON is checked once, up front, so a broken file fails at construction with one `DataError`
  naming the file and the record at fault, not deep inside a training loop. Image problems (missing,
  truncated, not an image, wrong size) can only be seen when an image is opened, and raise then.
* COCO category ids may have gaps (COCO's own run 1..90); labels are made contiguous: `categories[i]`
  is the name of label i + 1, and `label_to_cat_id` maps back for writing results.
* Optional fields are completed as pycocotools' own loaders expect them, so that evaluation never meets
  a missing key: a missing `area` is the box's w x h (as `COCO.loadRes` computes it), a missing
  `iscrowd` is 0; a negative area and ids beyond 64-bit integers are refused, naming the file and field.
* Crowd annotations (iscrowd=1) mark regions, not objects: they stay in `.coco` (COCOeval ignores
  detections there) but are kept out of training targets. Boxes with zero or negative width or height
  are dropped, with one warning per dataset that counts them.
* Nothing is ever written into the dataset's folders.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor

from fpnlab.data.images import exif_rotation, open_image
from fpnlab.data.transforms import ToTensor
from fpnlab.errors import DataError
from fpnlab.model.boxes import xywh_to_xyxy
from fpnlab.outputs import write_atomic
from fpnlab.sources import read_bytes

MAX_COORDINATE = 100_000  # pixels: a box coordinate beyond this is a broken file, not a large image
INT64 = (-(2**63), 2**63 - 1)  # ids must fit here: pycocotools and torch keep them as 64-bit integers
# COCOeval's size buckets, on an annotation's `area` (pixels).
AREA_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, math.inf)}

# Fields every record of each section must have, and their JSON types.
REQUIRED_FIELDS: dict[str, dict[str, type]] = {
    "images": {"id": int, "file_name": str},
    "categories": {"id": int, "name": str},
    "annotations": {"id": int, "image_id": int, "category_id": int, "bbox": list},
}

Target = dict[str, Any]
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


def size_bucket_shares(annotations: list[dict[str, Any]]) -> dict[str, float]:
    """Fraction of annotations in each COCO size bucket, by their `area` field (as COCOeval buckets them)."""
    areas = [ann["area"] for ann in annotations]
    return {name: sum(low <= a < high for a in areas) / max(len(areas), 1) for name, (low, high) in AREA_RANGES.items()}


# --- checking the JSON --------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _type_name(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _check_records(data: dict[str, Any], path: Path) -> None:
    """Every record has its required fields with the right types, and ids are unique per section."""
    for section, fields in REQUIRED_FIELDS.items():
        seen: set[int] = set()
        for i, record in enumerate(data[section]):
            where = f"{path}: {section}[{i}]"
            if not isinstance(record, dict):
                raise DataError(f"{where} should be an object but is {_type_name(record)}.")
            for field, kind in fields.items():
                if field not in record:
                    raise DataError(f"{where} has no '{field}' field.")
                value = record[field]
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise DataError(f"{where}['{field}'] should be {_type_name(kind())} but is {value!r}.")
            for field in fields:
                if fields[field] is int and not INT64[0] <= record[field] <= INT64[1]:
                    raise DataError(f"{where}['{field}'] is {record[field]}, beyond a 64-bit integer.")
            if record["id"] in seen:
                raise DataError(f"{path}: id {record['id']} appears twice in '{section}'.")
            seen.add(record["id"])


def _check_image_sizes(data: dict[str, Any], path: Path) -> None:
    """`width` and `height`, where given, are positive whole numbers."""
    for i, image in enumerate(data["images"]):
        for field in ("width", "height"):
            value = image.get(field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise DataError(
                    f"{path}: images[{i}]['{field}'] should be a whole number of pixels >= 1 but is {value!r}."
                )


def _check_box(ann: dict[str, Any], image: dict[str, Any], where: str) -> None:
    """4 finite numbers [x, y, w, h] within MAX_COORDINATE pixels, and not entirely outside the image."""
    box = ann["bbox"]
    if len(box) != 4 or not all(_is_number(v) and abs(v) <= MAX_COORDINATE for v in box):
        raise DataError(
            f"{where} has bbox {box!r}; it should be 4 numbers [x, y, width, height] within {MAX_COORDINATE:,} pixels."
        )
    x, y, w, h = box
    width, height = image.get("width"), image.get("height")
    if width is not None and height is not None and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
        raise DataError(
            f"{where} has bbox {box!r}, which lies entirely outside its {width}x{height} image (id {image['id']})."
        )


def _check_annotation_values(data: dict[str, Any], path: Path) -> None:
    """Boxes are 4 finite numbers on their image, optional fields have sane values, every id reference resolves."""
    images = {image["id"]: image for image in data["images"]}
    category_ids = {category["id"] for category in data["categories"]}
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}] (id {ann['id']})"
        if ann["image_id"] not in images:
            raise DataError(f"{where} points to image_id {ann['image_id']}, which is not in 'images'.")
        _check_box(ann, images[ann["image_id"]], where)
        valid_box = ann["bbox"][2] > 0 and ann["bbox"][3] > 0  # degenerate boxes are dropped, whatever their area
        if "area" in ann and (not _is_number(ann["area"]) or (valid_box and ann["area"] < 0)):
            raise DataError(f"{where} has area {ann['area']!r}; it should be a number >= 0 (or left out).")
        if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), bool):
            raise DataError(f"{where} has iscrowd {ann['iscrowd']!r}; it should be 0 or 1.")
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))  # as pycocotools' loadRes computes it
        ann.setdefault("iscrowd", 0)
        if ann["category_id"] not in category_ids:
            raise DataError(f"{where} points to category_id {ann['category_id']}, which is not in 'categories'.")


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Parse and check a COCO detection file; any problem raises one DataError naming the file."""
    path = Path(path)
    raw = read_bytes(path, "annotation file")  # a regular file: a pipe or a device is refused at once
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"annotation file {path} is not valid JSON ({err}).") from None
    except RecursionError:
        raise DataError(f"annotation file {path} is nested too deeply to be COCO annotations.") from None
    if not isinstance(data, dict):
        raise DataError(
            f"annotation file {path} is not COCO: its top level is {_type_name(data)}, "
            "not an object with 'images', 'annotations' and 'categories'."
        )
    for section in REQUIRED_FIELDS:
        if section not in data:
            raise DataError(f"annotation file {path} is not COCO: it has no '{section}' list.")
        if not isinstance(data[section], list):
            raise DataError(f"annotation file {path}: '{section}' should be a list but is {_type_name(data[section])}.")
    if not data["categories"]:
        raise DataError(f"annotation file {path} has an empty 'categories' list.")
    _check_records(data, path)
    _check_image_sizes(data, path)
    _check_annotation_values(data, path)
    return data


def write_coco_json(path: Path, data: dict[str, Any], may_replace: Callable[[Path], bool] | None = None) -> Path:
    """Write a COCO file atomically (fpnlab.outputs): a reader never sees half of it; it replaces only what
    `may_replace` accepts as the lab's own file."""
    return write_atomic(path, json.dumps(data, separators=(",", ":")), "annotation file", may_replace=may_replace)


def _coco_index(data: dict[str, Any]) -> COCO:
    """A pycocotools COCO object over already-parsed data, without its console chatter."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# --- the dataset --------------------------------------------------------------------------------


class CocoDetection(torch.utils.data.Dataset):
    """Images and detection targets from a COCO JSON (`ann_file`) and an image folder (`image_dir`).

    `transforms(image, target)` runs after the image became a float tensor (see fpnlab.data.transforms).
    `masks=True` adds each object's mask to its target (every kept annotation then needs a `segmentation`).
    """

    def __init__(
        self, image_dir: str | Path, ann_file: str | Path, transforms: Transform | None = None, masks: bool = False
    ):
        self.image_dir, self.ann_file, self.masks = Path(image_dir), Path(ann_file), masks
        self.coco = _coco_index(read_coco_json(self.ann_file))
        if not self.image_dir.is_dir():
            raise DataError(f"image folder {self.image_dir} (for {self.ann_file}) does not exist.")
        self.transforms = transforms
        self.ids: list[int] = sorted(self.coco.imgs)
        cat_ids = sorted(self.coco.cats)
        self.categories: list[str] = [self.coco.cats[c]["name"] for c in cat_ids]
        self.label_to_cat_id: dict[int, int] = {label: c for label, c in enumerate(cat_ids, start=1)}
        self.num_classes = len(cat_ids) + 1  # + background
        self._targets = self._build_targets({c: label for label, c in self.label_to_cat_id.items()})

    def _build_targets(self, cat_to_label: dict[int, int]) -> dict[int, Target]:
        """Training targets per image id: crowd regions left out, degenerate boxes dropped (one warning)."""
        targets, dropped, self._annotations = {}, 0, {}
        for image_id in self.ids:
            anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)  # (n, 4)
            keep = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
            dropped += int((~keep).sum())
            kept = [a for a, k in zip(anns, keep.tolist()) if k]
            self._annotations[image_id] = kept  # in target order: masks are decoded from them on demand
            targets[image_id] = {
                "boxes": xywh_to_xyxy(xywh[keep]),  # (N, 4)
                "labels": torch.tensor([cat_to_label[a["category_id"]] for a in kept], dtype=torch.int64),
                "area": torch.tensor([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in kept], dtype=torch.float32),
                "iscrowd": torch.zeros(len(kept), dtype=torch.int64),
            }
        if dropped:
            warnings.warn(
                f"{self.ann_file}: dropped {dropped} box(es) with zero or negative width or height.", stacklevel=3
            )
        return targets

    def __len__(self) -> int:
        return len(self.ids)

    def image_info(self, idx: int) -> dict[str, Any]:
        """The COCO `images` record of item `idx` (id, file_name, width, height, ...)."""
        return dict(self.coco.imgs[self.ids[idx]])

    def load_image(self, idx: int) -> Image.Image:
        """Item `idx`'s image, decoded (any mode); a missing, unreadable or wrongly sized file raises DataError."""
        info = self.image_info(idx)
        path = self.image_dir / info["file_name"]
        image = open_image(path, listed_in=self.ann_file)
        expected = (info.get("width", image.width), info.get("height", image.height))
        if image.size != expected:
            rotation = exif_rotation(path)
            turned = f" once its EXIF orientation {rotation} is applied (as a viewer shows it)" if rotation >= 5 else ""
            raise DataError(
                f"image file {path} is {image.width}x{image.height} pixels{turned} but {self.ann_file} "
                f"says {expected[0]}x{expected[1]}."
            )
        return image

    def __getitem__(self, idx: int) -> tuple[Tensor, Target]:
        image_id = self.ids[idx]
        target = {name: value.clone() for name, value in self._targets[image_id].items()}
        target["image_id"] = image_id
        try:
            image, target = ToTensor()(self.load_image(idx), target)  # (3, H, W) float in [0, 1]
        except DataError as err:
            if "image file" in str(err):
                raise
            raise DataError(f"image file {self.image_dir / self.image_info(idx)['file_name']}: {err}.") from None
        if self.masks:
            target["masks"] = self.instance_masks(image_id, image.shape[-2:])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def instance_masks(self, image_id: int, size: tuple[int, int]) -> Tensor:
        """(N, H, W) uint8, one mask per object of the image's target, decoded from its polygons or RLE."""
        annotations = self._annotations[image_id]
        masks = [annotation_mask(a, size, self.ann_file) for a in annotations]
        return torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, *size), dtype=torch.uint8)

    def __repr__(self) -> str:
        return f"CocoDetection({len(self)} images, {self.num_classes - 1} classes, ann_file={str(self.ann_file)!r})"


def annotation_mask(ann: dict[str, Any], size: tuple[int, int], ann_file: Path) -> np.ndarray:
    """One annotation's `segmentation` (polygons, RLE or uncompressed RLE) -> (H, W) uint8 mask; DataError
    naming the file and annotation when it has none or pycocotools cannot read it."""
    height, width = int(size[0]), int(size[1])
    where = f"{ann_file}: annotation id {ann['id']}"
    segmentation = ann.get("segmentation")
    if not segmentation:
        raise DataError(f"{where} has no 'segmentation', so it has no mask (masks=True needs one per object).")
    try:
        if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        mask = mask_utils.decode(rle)
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise DataError(f"{where} has a 'segmentation' pycocotools cannot read ({err}).") from None
    if mask.shape != (height, width):
        raise DataError(f"{where} has a {mask.shape[1]}x{mask.shape[0]} mask on a {width}x{height} image.")
    return mask.astype(np.uint8)


def collate_fn(batch: list[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Detection batches keep images of different sizes apart: a list of images, a list of targets."""
    images, targets = zip(*batch)
    return list(images), list(targets)
