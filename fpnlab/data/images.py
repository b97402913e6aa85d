"""Image files -> tensors: every PIL mode scaled correctly, and one clear DataError for any unreadable file.

    image = open_image(path)          # decoded now: a truncated file fails here, naming the file
    tensor = to_tensor(image)         # (3, H, W) float in [0, 1], whatever the bit depth

16-bit images (PNG mode "I;16", "I") are divided by 65535, not clipped at 255 (which would turn them
white); greyscale is repeated over the three channels. Images beyond PIL's decompression-bomb limit
(about 179 million pixels) are refused with their size, before they are decoded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import DataError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def open_image(path: Path, listed_in: Path | None = None) -> Image.Image:
    """The decoded image at `path`; a missing, truncated, oversized or non-image file raises DataError."""
    where = f" (listed in {listed_in})" if listed_in is not None else ""
    if path.is_dir():
        raise DataError(f"image file {path}{where} is a folder, not an image.")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here
            return image.copy()  # the data outlives the closed file
    except FileNotFoundError:
        raise DataError(f"image file {path}{where} does not exist.") from None
    except Image.DecompressionBombError as err:
        raise DataError(f"image file {path}{where} is too large to read safely ({err}); shrink it first.") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for corrupt or non-image files
        raise DataError(f"image file {path}{where} cannot be read; it is truncated or not an image ({err}).") from None


def to_tensor(image: Image.Image) -> Tensor:
    """A PIL image of any mode -> (3, H, W) float32 in [0, 1]."""
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float32) / 65535.0  # (H, W)
        return torch.from_numpy(np.clip(pixels, 0.0, 1.0)).expand(3, -1, -1).contiguous()
    if image.mode == "F":  # 32-bit float: taken to be in [0, 1] already
        return torch.from_numpy(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)).expand(3, -1, -1).contiguous()
    pixels = np.array(image.convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
