"""Detection transforms move the boxes exactly with the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fpnlab.data.transforms import Compose, RandomHorizontalFlip, ResizeShorterSide, ToTensor


def _image_with_block(height: int, width: int, box: tuple[int, int, int, int]) -> tuple[torch.Tensor, dict]:
    """A black image with one white block filling the pixels of xyxy `box`, and its target."""
    x1, y1, x2, y2 = box
    image = torch.zeros(3, height, width)
    image[:, y1:y2, x1:x2] = 1.0
    target = {
        "boxes": torch.tensor([box], dtype=torch.float32),
        "labels": torch.tensor([1]),
        "area": torch.tensor([float((x2 - x1) * (y2 - y1))]),
    }
    return image, target


def _block_extent(image: torch.Tensor) -> list[float]:
    """xyxy of the pixels brighter than half, in pixel-edge coordinates."""
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_to_tensor_from_pil_and_uint8():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image, target = ToTensor()(Image.fromarray(pixels), {"boxes": torch.zeros(0, 4)})
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    assert torch.allclose(image * 255, torch.from_numpy(pixels).permute(2, 0, 1).float())
    again, _ = ToTensor()(torch.from_numpy(pixels).permute(2, 0, 1), target)
    assert torch.equal(again, image)
    assert ToTensor()(image, target)[0] is image


def test_flip_moves_boxes_with_the_pixels():
    image, target = _image_with_block(20, 30, (3, 4, 10, 15))
    flipped, moved = RandomHorizontalFlip(p=1.0)(image, target)
    assert moved["boxes"].tolist() == [[20.0, 4.0, 27.0, 15.0]]
    assert _block_extent(flipped) == moved["boxes"][0].tolist()
    assert target["boxes"].tolist() == [[3.0, 4.0, 10.0, 15.0]]  # the input target is left alone
    same, kept = RandomHorizontalFlip(p=0.0)(image, target)
    assert same is image and kept["boxes"].tolist() == target["boxes"].tolist()


def test_flip_probability():
    torch.manual_seed(0)
    image, target = _image_with_block(4, 6, (0, 0, 2, 2))
    flips = sum(RandomHorizontalFlip(p=0.3)(image, target)[1]["boxes"][0, 0].item() != 0 for _ in range(2000))
    assert flips / 2000 == pytest.approx(0.3, abs=0.04)


@pytest.mark.parametrize(
    "size, limits, expected",
    [
        ((50, 100), (100, 1000), (100, 200)),  # shorter side 50 -> 100
        ((50, 400), (100, 500), (62, 500)),  # the longer side would pass 500: scale 1.25
        ((120, 80), (40, 1333), (60, 40)),  # downscaling
    ],
)
def test_resize_scales_boxes_and_area(size, limits, expected):
    height, width = size
    image, target = _image_with_block(height, width, (10, 20, 30, 40))
    resized, moved = ResizeShorterSide(*limits)(image, target)
    assert tuple(resized.shape[-2:]) == expected
    sx, sy = expected[1] / width, expected[0] / height
    assert moved["boxes"][0].tolist() == pytest.approx([10 * sx, 20 * sy, 30 * sx, 40 * sy])
    assert moved["area"].item() == pytest.approx(400 * sx * sy)
    assert _block_extent(resized) == pytest.approx(moved["boxes"][0].tolist(), abs=1.0)


def test_compose_runs_in_order():
    image, target = _image_with_block(10, 20, (0, 0, 5, 10))
    out, moved = Compose([ResizeShorterSide(20, 100), RandomHorizontalFlip(p=1.0)])(image, target)
    assert tuple(out.shape) == (3, 20, 40)
    assert moved["boxes"].tolist() == [[30.0, 0.0, 40.0, 20.0]]
