"""Detection transforms: each takes and returns `(image, target)` and moves the boxes with the pixels.

`image` is a float tensor (3, H, W) in [0, 1] (ToTensor makes one from a PIL image); `target["boxes"]` is
(N, 4) xyxy in pixels. `target["area"]`, when present, is rescaled with the image; `target["masks"]`
((N, H, W) uint8), when present, is flipped and resized with it (nearest neighbour: masks stay 0 or 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from fpnlab.data.images import to_tensor
from fpnlab.model.transform import resize_masks

Target = dict[str, Any]


class Compose:
    """Apply transforms one after another."""

    def __init__(self, transforms: Sequence[Callable[[Any, Target], tuple[Any, Target]]]):
        self.transforms = list(transforms)

    def __call__(self, image: Any, target: Target) -> tuple[Any, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class ToTensor:
    """PIL image (any mode, 16-bit included) or uint8 tensor -> float tensor (3, H, W) in [0, 1];
    a float tensor passes unchanged."""

    def __call__(self, image: Image.Image | Tensor, target: Target) -> tuple[Tensor, Target]:
        if isinstance(image, Image.Image):
            return to_tensor(image), target
        if not image.is_floating_point():
            image = image.float() / 255.0
        return image, target


class RandomHorizontalFlip:
    """Mirror left-right with probability p; box x1' = W - x2, x2' = W - x1."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if torch.rand(()) >= self.p:
            return image, target
        width = image.shape[-1]
        boxes = target["boxes"]  # (N, 4)
        target = {
            **target,
            "boxes": torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1),
        }
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)  # (N, H, W)
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ResizeShorterSide:
    """Scale so the shorter side is `min_size`, unless the longer side would pass `max_size`.

    Defaults are the FPN paper's (Sec. 5.1: shorter side 800 pixels) with Detectron's 1333 cap.
    """

    def __init__(self, min_size: int = 800, max_size: int = 1333):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        height, width = image.shape[-2:]
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        new_height, new_width = round(height * scale), round(width * scale)
        image = F.interpolate(
            image[None], size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=True
        )[0]  # (3, H', W')
        sx, sy = new_width / width, new_height / height
        target = {**target, "boxes": target["boxes"] * torch.tensor([sx, sy, sx, sy])}
        if "area" in target:
            target["area"] = target["area"] * (sx * sy)
        if "masks" in target:
            target["masks"] = resize_masks(target["masks"], (new_height, new_width))
        return image, target

    def __repr__(self) -> str:
        return f"ResizeShorterSide(min_size={self.min_size}, max_size={self.max_size})"
