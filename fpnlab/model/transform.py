"""The detector's input and output transform: normalise, resize, pad into one batch; map the outputs back.

A list of images of any sizes becomes one (B, 3, H, W) tensor the backbone can run on:

    1. normalise each channel with ImageNet's mean and std (what the ResNet was pretrained on);
    2. resize so the shorter side is ``min_size`` unless the longer side would pass ``max_size``
       (FPN paper, Sec. 5: shorter side 800), bilinear, exactly as torchvision's GeneralizedRCNNTransform;
    3. pad at the bottom and right with zeros to a common size, a multiple of 32 (the stride of C5),
       so every level's feature map lines up with the image grid.

Training boxes (and masks, when a target has them) are resized with their image; detections (boxes, and any
other per-instance output in pixels, such as masks) are mapped back to each input image's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_DIVISIBLE = 32  # stride of C5: padded sizes are multiples of it
InstanceField = Callable[[Tensor, Tensor, tuple[int, int]], Tensor]


class ImageBatch(NamedTuple):
    """Images resized and padded into one tensor, with the size each image has inside it."""

    tensor: Tensor  # (B, 3, H, W), H and W multiples of 32
    image_sizes: list[tuple[int, int]]  # (height, width) of each resized image, before padding

    @property
    def padded_size(self) -> tuple[int, int]:
        """(H, W) of the batch tensor: the frame anchors and ROI pooling work in."""
        return (self.tensor.shape[-2], self.tensor.shape[-1])


class DetectionTransform(nn.Module):
    """list of (3, H_i, W_i) images in [0, 1] (+ targets) -> ImageBatch (+ targets with resized boxes)."""

    def __init__(
        self,
        min_size: int = 800,
        max_size: int = 1333,
        image_mean: tuple[float, ...] = IMAGENET_MEAN,
        image_std: tuple[float, ...] = IMAGENET_STD,
        size_divisible: int = SIZE_DIVISIBLE,
    ) -> None:
        super().__init__()
        self.min_size, self.max_size, self.size_divisible = min_size, max_size, size_divisible
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        # per-instance outputs in pixels besides "boxes", and how each goes back to the input image (a head
        # that adds one, such as a mask head, registers it here): name -> f(value, boxes, input size)
        self.instance_fields: dict[str, InstanceField] = {}

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        resized = [self.resize(self.normalize(image)) for image in images]
        sizes = [(image.shape[-2], image.shape[-1]) for image in resized]
        if targets is not None:  # new dicts: the caller's targets are not modified
            targets = [
                {**t, "boxes": resize_boxes(t["boxes"], image.shape[-2:], size)}
                for t, image, size in zip(targets, images, sizes)
            ]
            for target, size in zip(targets, sizes):
                if "masks" in target:
                    target["masks"] = resize_masks(target["masks"], size)
        return ImageBatch(self.pad(resized), sizes), targets

    def normalize(self, image: Tensor) -> Tensor:
        """(3, H, W) in [0, 1] -> zero mean, unit variance per channel (ImageNet statistics)."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def unnormalized(self, batch: ImageBatch) -> list[Tensor]:
        """What the network sees, for drawing: each resized image (3, h, w), unpadded, back in [0, 1]."""
        mean = torch.as_tensor(self.image_mean, dtype=batch.tensor.dtype, device=batch.tensor.device)[:, None, None]
        std = torch.as_tensor(self.image_std, dtype=batch.tensor.dtype, device=batch.tensor.device)[:, None, None]
        return [(image[:, :h, :w] * std + mean).clamp(0, 1) for image, (h, w) in zip(batch.tensor, batch.image_sizes)]

    def resize(self, image: Tensor) -> Tensor:
        """(3, H, W) -> (3, floor(H * s), floor(W * s)), s = min(min_size / shorter side, max_size / longer side).

        An image so elongated that a side would shrink below one pixel raises DataError.
        """
        scale = resize_scale(image.shape[-2:], self.min_size, self.max_size)
        height, width = (math.floor(side * scale) for side in image.shape[-2:])
        if height < 1 or width < 1:
            raise DataError(
                f"an image of {image.shape[-2]} x {image.shape[-1]} pixels is too elongated: fitted into "
                f"min_size {self.min_size} / max_size {self.max_size} it would be {height} x {width} "
                "pixels; crop it closer to a square first."
            )
        # recompute_scale_factor=True: the output size is floor(side * scale) and the interpolation then
        # uses the exact ratio input / output per axis, as torchvision does.
        return F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=True
        )[0]

    def pad(self, images: list[Tensor]) -> Tensor:
        """Zero-pad at the bottom and right to a common size divisible by 32: (B, 3, H, W)."""
        height = padded_side(max(image.shape[-2] for image in images), self.size_divisible)
        width = padded_side(max(image.shape[-1] for image in images), self.size_divisible)
        batch = images[0].new_zeros(len(images), images[0].shape[0], height, width)
        for slot, image in zip(batch, images):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch

    def postprocess(
        self,
        results: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Per image, a dict of per-instance fields in the pixels of the resized image -> the same dict in the
        pixels of the image the user passed in: "boxes" are rescaled; every field named in
        `instance_fields` is mapped by its function (value, boxes in input pixels, input size); the others
        (scores, labels) are not in pixels and stay as they are."""
        mapped = []
        for result, size, original in zip(results, image_sizes, original_sizes):
            out = {**result, "boxes": resize_boxes(result["boxes"], size, original)}
            for name, to_input in self.instance_fields.items():
                if name in result:
                    out[name] = to_input(result[name], out["boxes"], original)
            mapped.append(out)
        return mapped


def resize_scale(size: tuple[int, int], min_size: int, max_size: int) -> float:
    """The one scale factor for an image of (height, width): shorter side -> min_size, longer side <= max_size."""
    return min(min_size / min(size), max_size / max(size))


def padded_side(side: int, size_divisible: int = SIZE_DIVISIBLE) -> int:
    """The smallest multiple of ``size_divisible`` >= side, e.g. 426 -> 448."""
    return int(math.ceil(side / size_divisible) * size_divisible)


def resize_boxes(boxes: Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Scale (N, 4) boxes from an image of old_size (h, w) to one of new_size: x by w'/w, y by h'/h."""
    ratio_h, ratio_w = (
        torch.tensor(float(new), device=boxes.device) / torch.tensor(float(old), device=boxes.device)
        for new, old in zip(new_size, old_size)
    )  # float32 ratios, as torchvision computes them
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack([x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h], dim=1)


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W) masks -> (N, h, w), nearest neighbour (each output pixel copies the input pixel its centre falls
    in), as torchvision resizes a target's masks with its image; the dtype is kept."""
    return F.interpolate(masks[:, None].float(), size=size)[:, 0].to(masks.dtype)
