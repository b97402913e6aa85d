"""Image files -> tensors: as a photo viewer shows them, every PIL mode scaled correctly, one clear DataError.

    image = open_image(path)          # decoded now, EXIF orientation applied: a truncated file fails here
    tensor = to_tensor(image)         # (3, H, W) float in [0, 1], whatever the bit depth
    tensor, note = read_image(path)   # both, a photo larger than MAX_SIDE shrunk first (`fpnlab detect`)

Only regular files are opened (fpnlab.sources): a named pipe, a socket or a device is refused at once.
A camera's EXIF orientation tag is applied (`ImageOps.exif_transpose`), so the pixels are those a viewer
shows upright; `exif_rotation` tells whether it changed the size (width and height swapped).

High-bit images are scaled, not clipped: 16-bit ("I;16", and "I" within 0..65535) are divided by 65535;
32-bit integers beyond that and 32-bit floats ("F", a float TIFF) are scaled by their range (a float
image already within [0, 1] is kept as it is; one within 0..255 or 0..65535 is divided by that). A
float image holding NaN or infinity is refused. Greyscale is repeated over the three channels. Images
beyond PIL's decompression-bomb limit (about 179 million pixels) are refused with their size, before
they are decoded.

A photo larger than MAX_SIDE pixels is shrunk by `read_image` before it becomes a float tensor (an
8000 x 8000 photo would take gigabytes otherwise); the detector resizes its input to a few hundred
pixels anyway, so nothing it could find is lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from fpnlab.errors import DataError
from fpnlab.sources import check_regular_file

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
HIGH_BIT_MODES = (*SIXTEEN_BIT_MODES, "I", "F")  # one channel, more than 8 bits: scaled by to_tensor
MAX_SIDE = 2048  # longer image sides are shrunk to this by read_image
EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 5..8 turn the image by a quarter (width and height swap)


def open_image(path: Path, listed_in: Path | None = None) -> Image.Image:
    """The decoded image at `path`, upright (EXIF orientation applied); DataError for a missing, truncated,
    oversized or non-image file, and for anything that is not a regular file."""
    where = f" (listed in {listed_in})" if listed_in is not None else ""
    check_regular_file(path, "image file", DataError, where)
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here
            return upright(image)
    except FileNotFoundError:
        raise DataError(f"image file {path}{where} does not exist.") from None
    except Image.DecompressionBombError as err:
        raise DataError(f"image file {path}{where} is too large to read safely ({err}); shrink it first.") from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError) as err:  # corrupt or non-image files
        raise DataError(f"image file {path}{where} cannot be read; it is truncated or not an image ({err}).") from None


def upright(image: Image.Image) -> Image.Image:
    """A copy of the image as a viewer shows it: its EXIF orientation applied (the data outlives the file)."""
    turned = ImageOps.exif_transpose(image)
    return image.copy() if turned is None or turned is image else turned


def exif_rotation(path: Path) -> int:
    """The EXIF orientation of an image file (1 = upright, 5..8 = turned a quarter), 1 when it has none."""
    try:
        with Image.open(path) as image:
            value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) else 1


def scaled(pixels: np.ndarray, mode: str) -> np.ndarray:
    """A one-channel high-bit image's values in [0, 1]: 16-bit / 65535, otherwise by the values' range."""
    if not np.isfinite(pixels).all():
        raise DataError(f"the {mode} image holds NaN or infinite values")
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and low >= 0 and high <= 65535):
        return pixels / 65535.0
    if mode == "F" and low >= 0:
        for top in (1.0, 255.0, 65535.0):
            if high <= top:
                return pixels / top
    return (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)


def to_tensor(image: Image.Image) -> Tensor:
    """A PIL image of any mode -> (3, H, W) float32 in [0, 1]."""
    if image.mode in HIGH_BIT_MODES:
        pixels = scaled(np.asarray(image, dtype=np.float64), image.mode).astype(np.float32)  # (H, W)
        return torch.from_numpy(np.clip(pixels, 0.0, 1.0)).expand(3, -1, -1).contiguous()
    pixels = np.array(image.convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0


def read_image(path: str | Path, max_side: int = MAX_SIDE) -> tuple[Tensor, str]:
    """The image file as (3, H, W) float in [0, 1], upright, its longer side at most `max_side`, and a note
    saying whether it was shrunk ("" if not). A missing, unreadable or oversized file raises DataError."""
    path = Path(path)
    image = open_image(path)
    note = ""
    if max(image.size) > max_side:
        original = image.size
        if image.mode not in ("I", "F"):  # modes PIL resizes well: 32-bit ints and floats, and RGB
            image = image.convert("I" if image.mode in SIXTEEN_BIT_MODES else "RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        note = f"shrunk from {original[0]} x {original[1]} to {image.width} x {image.height} pixels"
    try:
        return to_tensor(image), note
    except ValueError as err:
        raise DataError(f"image file {path}: {err}.") from None
