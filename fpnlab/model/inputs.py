"""What the detector accepts, checked once at its entrance (the assembly): one clear DataError per problem.

    images    a list of (3, H, W) float tensors with values in [0, 1] (or one (B, 3, H, W) tensor)
    targets   in training, one dict per image: "boxes" (N, 4) float (x1, y1, x2, y2) with x2 > x1 and
              y2 > y1, "labels" (N,) int64 in 1..num_classes-1 (0 is the background); N may be 0;
              int32, uint8 or bool labels are refused here, as torchvision refuses them (labels.long());
              for a mask head also "masks" (N, H, W) of 0s and 1s, one per box, the image's size

Everything after the entrance works on checked values, which is why the detector can switch the box
operations' own checks off (fpnlab.switch.skip_value_checks) and save a host-device sync per call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fpnlab.errors import DataError


def check_inputs(
    images: list[Tensor] | Tensor,
    targets: list[dict[str, Tensor]] | None,
    training: bool,
    num_classes: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """Raise DataError on anything the detector cannot use; return the images as a list and their (h, w).

    A (B, 3, H, W) tensor is accepted as a batch of B images. Floating-point images of another type
    (float64 from numpy, say) are converted to `dtype`, the type of the detector's weights.
    """
    if isinstance(images, Tensor) and images.dim() == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise DataError(f"images must be a non-empty list of (3, H, W) float tensors, got {_describe(images)}.")
    for i, image in enumerate(images):
        check_image(image, f"images[{i}]")
    if training and targets is None:
        raise DataError(
            "targets are required in training mode (one dict with 'boxes' and 'labels' per image); "
            "pass targets, or call model.eval() to detect."
        )
    if targets is not None:
        if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
            raise DataError(
                f"targets must be a list with one dict per image: {len(images)} image(s) but "
                f"{len(targets) if isinstance(targets, (list, tuple)) else _describe(targets)} target(s)."
            )
        for i, (target, image) in enumerate(zip(targets, images)):
            check_target(target, num_classes, f"targets[{i}]")
            if "masks" in target:
                check_masks(target["masks"], len(target["boxes"]), image.shape[-2:], f"targets[{i}]['masks']")
    return [image.to(dtype) for image in images], [(image.shape[-2], image.shape[-1]) for image in images]


def check_image(image: Any, name: str) -> None:
    """A (3, H, W) floating-point tensor with finite values in [0, 1] (one host sync when it is)."""
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.numel() == 0:
        raise DataError(f"{name} must be a (3, H, W) image tensor, got {_describe(image)}.")
    if image.device.type == "meta":
        raise DataError(f"{name} is on the meta device: it has a shape but no values to detect in.")
    if not image.is_floating_point():
        raise DataError(
            f"{name} must be a float tensor with values in [0, 1], got {image.dtype} "
            f"(for 8-bit images use image.float() / 255)."
        )
    low, high = torch.aminmax(image)
    if bool((low >= -0.01) & (high <= 1.01)):  # False for NaN too
        return
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise DataError(f"{name} contains NaN or infinite values.")
    raise DataError(
        f"{name} has values in [{low:.3g}, {high:.3g}] but must be in [0, 1]: pass raw pixels "
        f"/ 255, the detector normalises them itself."
    )


def check_target(target: Any, num_classes: int, name: str) -> None:
    """{"boxes": finite (N, 4) float with x2 > x1 and y2 > y1, "labels": (N,) integers in 1..num_classes-1}."""
    if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
        raise DataError(f"{name} must be a dict with 'boxes' and 'labels', got {_describe(target)}.")
    boxes, labels = target["boxes"], target["labels"]
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        raise DataError(
            f"{name}['boxes'] must be an (N, 4) float tensor of (x1, y1, x2, y2), got {_describe(boxes)} "
            f"(an image without objects has torch.zeros((0, 4)))."
        )
    if not isinstance(labels, Tensor) or labels.shape != (len(boxes),) or labels.dtype != torch.int64:
        raise DataError(
            f"{name}['labels'] must be a ({len(boxes)},) int64 tensor, one label per box, got {_describe(labels)} "
            "(as torchvision; labels.long() converts integer labels)."
        )
    if boxes.device.type == "meta" or labels.device.type == "meta":
        raise DataError(f"{name} is on the meta device: it has a shape but no values.")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])  # (N,)
    known = (labels >= 1) & (labels < num_classes)  # (N,)
    if bool(torch.isfinite(boxes).all() & ~empty.any() & known.all()):  # one host sync for a valid target
        return
    if not torch.isfinite(boxes).all():
        raise DataError(f"{name}['boxes'] contains NaN or infinite coordinates.")
    if empty.any():
        first = int(torch.where(empty)[0][0])
        raise DataError(
            f"{name}['boxes'] has {int(empty.sum())} box(es) with x2 <= x1 or y2 <= y1, the first is "
            f"#{first} {[round(v, 2) for v in boxes[first].tolist()]}; boxes need a positive width and height."
        )
    raise DataError(
        f"{name}['labels'] must be in 1..{num_classes - 1} (0 is background), "
        f"got values from {int(labels.min())} to {int(labels.max())}."
    )


def check_masks(masks: Any, count: int, size: tuple[int, int], name: str) -> None:
    """(count, H, W) masks of 0s and 1s (uint8, bool or float) on an image of size (H, W)."""
    if not isinstance(masks, Tensor) or tuple(masks.shape) != (count, *size):
        raise DataError(
            f"{name} must be a ({count}, {size[0]}, {size[1]}) tensor, one mask per box the size of its image, "
            f"got {_describe(masks)}."
        )
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise DataError(f"{name} must hold only 0 and 1 (a binary mask per object).")


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}"
