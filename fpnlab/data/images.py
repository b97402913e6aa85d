"""Image files -> tensors: every PIL mode scaled correctly, and one clear DataError for any unreadable file.

    image = open_image(path)          # decoded now: a truncated file fails here, naming the file
    tensor = to_tensor(image)         # (3, H, W) float in [0, 1], whatever the bit depth
    tensor, note = read_image(path)   # both, a photo larger than MAX_SIDE shrunk first (`fpnlab detect`)

16-bit images (PNG mode "I;16", "I") are divided by 65535, not clipped at 255 (which would turn them
white); greyscale is repeated over the three channels. Images beyond PIL's decompression-bomb limit
(about 179 million pixels) are refused with their size, before they are decoded.

A photo larger than MAX_SIDE pixels is shrunk by `read_image` before it becomes a float tensor (an
8000 x 8000 photo would take gigabytes otherwise); the detector resizes its input to a few hundred
pixels anyway, so nothing it could find is lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fpnlab.errors import DataError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
MAX_SIDE = 2048  # longer image sides are shrunk to this by read_image


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


def read_image(path: str | Path, max_side: int = MAX_SIDE) -> tuple[Tensor, str]:
    """The image file as (3, H, W) float in [0, 1], its longer side at most `max_side`, and a note saying
    whether it was shrunk ("" if not). A missing, unreadable or oversized file raises DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"image file {path} does not exist.")
    image = open_image(path)
    note = ""
    if max(image.size) > max_side:
        original = image.size
        image = image.convert("I" if image.mode in SIXTEEN_BIT_MODES else "RGB")  # modes PIL resizes well
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        note = f"shrunk from {original[0]} x {original[1]} to {image.width} x {image.height} pixels"
    return to_tensor(image), note
