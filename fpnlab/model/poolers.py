"""Multi-scale ROI pooling (stage 5): crop a fixed 7 x 7 feature from the pyramid level each ROI belongs to.

RoIAlign (Mask R-CNN paper, Sec. 3) averages bilinear samples taken at regular points inside each
output bin; RoIPool (Fast R-CNN paper, Sec. 2.1) max-pools over bins snapped to integer pixels and is
kept for comparison. Each exists twice: torchvision's kernel (``roi_align``, ``roi_pool``, the default)
and a plain-PyTorch reference to read (``*_reference``); ``fpnlab.switch`` selects the reference.

ROIs are either an (K, 5) tensor of (batch index, x1, y1, x2, y2) or a list with one (K_i, 4) tensor
per image, in image pixels; ``spatial_scale`` (1 / stride) maps them onto the feature map.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import Tensor, nn

from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import check_boxes
from fpnlab.model.levels import assign_levels, level_number
from fpnlab.switch import reference_ops_enabled


def roi_align(
    features: Tensor,
    rois: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign: (B, C, H, W), K rois -> (K, C, *output_size). torchvision's kernel, or the reference
    under ``fpnlab.switch.use_reference_ops()``."""
    rois = as_rois(rois)
    if reference_ops_enabled():
        return roi_align_reference(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return torchvision.ops.roi_align(features, rois, _pair(output_size), spatial_scale, sampling_ratio, aligned)


def roi_pool(
    features: Tensor, rois: Tensor | list[Tensor], output_size: int | tuple[int, int], spatial_scale: float = 1.0
) -> Tensor:
    """RoIPool: (B, C, H, W), K rois -> (K, C, *output_size). torchvision's kernel, or the reference
    under ``fpnlab.switch.use_reference_ops()``."""
    rois = as_rois(rois)
    if reference_ops_enabled():
        return roi_pool_reference(features, rois, output_size, spatial_scale)
    return torchvision.ops.roi_pool(features, rois, _pair(output_size), spatial_scale)


def as_rois(boxes: Tensor | list[Tensor]) -> Tensor:
    """Per-image boxes [(K_i, 4), ...] or (K, 5) rois -> checked (K, 5) rois of (batch index, x1, y1, x2, y2)."""
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            check_boxes(b, f"boxes of image {i}")
        index = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
        return torch.cat([torch.cat(index), torch.cat(boxes)], dim=1)
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise FpnlabError(f"rois must be (K, 5) rows of (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}.")
    check_boxes(boxes[:, 1:], "rois")
    return boxes


def roi_align_reference(
    features: Tensor,
    rois: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign in plain PyTorch: (B, C, H, W), K rois -> (K, C, PH, PW).

    Each ROI is cut into PH x PW bins; each bin averages gh x gw bilinear samples on a regular grid
    (gh = sampling_ratio, or ceil(bin height) when sampling_ratio <= 0, "adaptive"). ``aligned=True``
    shifts boxes by -0.5 pixel so pixel centres sit at half-integers (Detectron2's fix); with
    ``aligned=False`` (torchvision's Faster R-CNN default) ROIs are at least 1 x 1 feature pixel.
    Vectorised over ROIs, bins and samples; ROIs needing fewer samples than the largest grid mask
    the extra ones out.
    """
    rois = as_rois(rois)
    ph, pw = _pair(output_size)
    start_x, start_y, end_x, end_y = (rois[:, 1:] * spatial_scale - (0.5 if aligned else 0.0)).unbind(1)  # (K,)
    roi_w, roi_h = end_x - start_x, end_y - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    wy, iy = _sample_weights(start_y, roi_h, ph, sampling_ratio, features.shape[2])  # (K, PH, G, 2) each
    wx, ix = _sample_weights(start_x, roi_w, pw, sampling_ratio, features.shape[3])  # (K, PW, G, 2) each
    batch, channels, height, width = features.shape
    pixels = features.permute(0, 2, 3, 1).reshape(batch * height * width, channels)  # one row per pixel
    first = (rois[:, 0].long() * height * width)[:, None, None, None, None]  # (K, 1, 1, 1, 1) its image's row 0
    out = features.new_zeros(len(rois), ph, pw, channels)  # (K, PH, PW, C)
    for a in range(2):  # the 4 bilinear neighbours: (low, high) row x (low, high) column
        for b in range(2):
            row = first + iy[:, :, :, None, None, a] * width + ix[:, None, None, :, :, b]  # (K, PH, G, PW, G)
            weight = wy[:, :, :, None, None, a] * wx[:, None, None, :, :, b]  # (K, PH, G, PW, G)
            out += (pixels[row] * weight[..., None]).sum(dim=(2, 4))  # sum over each bin's samples
    return out.permute(0, 3, 1, 2)  # (K, C, PH, PW)


def _sample_weights(start: Tensor, length: Tensor, bins: int, sampling_ratio: int, size: int) -> tuple[Tensor, Tensor]:
    """Bilinear weights and pixel indices along one axis: (K, bins, G, 2), for the low and high neighbour.

    Sample i of bin p sits at start + (p + (i + 0.5) / g) * length / bins. Samples more than one pixel
    outside the map weigh 0; others are clamped into it. Weights include 1 / g, the bin's average.
    """
    # BEGIN UNIT roi_align
    if sampling_ratio > 0:
        grid = torch.full_like(length, sampling_ratio, dtype=torch.long)  # (K,)
    else:
        grid = torch.ceil(length / bins).long()  # adaptive: about one sample per feature pixel
    g = max(int(grid.max()), 1) if len(grid) else 1
    bin_size = (length / bins)[:, None, None]  # (K, 1, 1)
    p = torch.arange(bins, device=start.device, dtype=start.dtype)[None, :, None]  # (1, bins, 1)
    i = torch.arange(g, device=start.device, dtype=start.dtype)[None, None, :]  # (1, 1, G)
    n = grid.clamp(min=1).to(start.dtype)[:, None, None]  # (K, 1, 1)
    coord = start[:, None, None] + p * bin_size + (i + 0.5) * bin_size / n  # (K, bins, G)
    used = (i < grid[:, None, None]) & (coord >= -1.0) & (coord <= size)  # (K, bins, G)
    coord = coord.clamp(min=0, max=size - 1)
    low = coord.floor()
    frac = coord - low  # 0 at the last pixel, where low and high coincide
    high = (low + 1).clamp(max=size - 1)
    weights = torch.stack([1 - frac, frac], dim=-1) * (used / n)[..., None]  # (K, bins, G, 2)
    return weights, torch.stack([low, high], dim=-1).long()
    # END UNIT roi_align


def roi_pool_reference(
    features: Tensor, rois: Tensor | list[Tensor], output_size: int | tuple[int, int], spatial_scale: float = 1.0
) -> Tensor:
    """RoIPool in plain PyTorch: (B, C, H, W), K rois -> (K, C, PH, PW).

    The ROI is rounded to whole feature pixels (half away from zero, like C's round), split into
    PH x PW bins [floor(p * size / PH), ceil((p + 1) * size / PH)), each max-pooled; empty bins give 0.
    """
    rois = as_rois(rois)
    ph, pw = _pair(output_size)
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).unbind(1)  # (K,)
    row_start, row_end = _bin_ranges(y1, y2, ph, features.shape[2])  # (K, PH) each
    col_start, col_end = _bin_ranges(x1, x2, pw, features.shape[3])  # (K, PW) each
    lh = max(int((row_end - row_start).max()), 1) if len(rois) else 1  # largest bin, in pixels
    lw = max(int((col_end - col_start).max()), 1) if len(rois) else 1
    rows = row_start[..., None] + torch.arange(lh, device=rois.device)  # (K, PH, LH)
    cols = col_start[..., None] + torch.arange(lw, device=rois.device)  # (K, PW, LW)
    inside = (rows < row_end[..., None])[:, :, :, None, None] & (cols < col_end[..., None])[:, None, None]
    image = rois[:, 0].long()[:, None, None, None, None]  # (K, 1, 1, 1, 1)
    rows = rows.clamp(max=features.shape[2] - 1)[:, :, :, None, None]  # (K, PH, LH, 1, 1)
    cols = cols.clamp(max=features.shape[3] - 1)[:, None, None]  # (K, 1, 1, PW, LW)
    window = features.permute(0, 2, 3, 1)[image, rows, cols]  # (K, PH, LH, PW, LW, C)
    window = window.masked_fill(~inside[..., None], float("-inf"))
    pooled = window.amax(dim=(2, 4))  # (K, PH, PW, C)
    pooled = pooled.masked_fill(pooled == float("-inf"), 0.0)  # empty bins
    return pooled.permute(0, 3, 1, 2)  # (K, C, PH, PW)


def _round_half_away(x: Tensor) -> Tensor:
    """C's round(): 2.5 -> 3, -2.5 -> -3 (torch.round rounds half to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bin_ranges(start: Tensor, end: Tensor, bins: int, size: int) -> tuple[Tensor, Tensor]:
    """RoIPool bins along one axis: integer [first, last) pixel of each bin, clipped to the map: (K, bins) each."""
    length = (end - start + 1).clamp(min=1)[:, None]  # (K, 1) whole pixels, ends included
    p = torch.arange(bins, device=start.device, dtype=start.dtype)
    first = torch.floor(p * length / bins) + start[:, None]
    last = torch.ceil((p + 1) * length / bins) + start[:, None]
    return first.clamp(0, size).long(), last.clamp(0, size).long()


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


class MultiScaleRoIPooler(nn.Module):
    """Pool every ROI from its pyramid level (FPN paper, Sec. 4.2): (sum K_i, C, 7, 7).

    The level of a box is FPN Eq. 1 (``fpnlab.model.levels.assign_levels``) clamped to the levels given,
    whose names end in their level number k (stride 2^k): "p2".."p5", or "c4" for the C4 baseline. With
    a single level every ROI is pooled from it. Each level's scale is inferred like torchvision's
    MultiScaleRoIAlign: feature height / image height rounded to a power of 2, and must match the name.
    """

    def __init__(
        self,
        levels: tuple[str, ...] = ("p2", "p3", "p4", "p5"),
        output_size: int = 7,
        sampling_ratio: int = 2,
        aligned: bool = False,
        mode: str = "align",
        canonical_size: float = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if mode not in ("align", "pool"):
            raise FpnlabError(f"MultiScaleRoIPooler mode must be 'align' or 'pool', got {mode!r}.")
        self.ks = [level_number(name) for name in levels]
        if self.ks != list(range(self.ks[0], self.ks[0] + len(levels))):
            raise FpnlabError(f"MultiScaleRoIPooler levels must be consecutive and in order, got {levels}.")
        self.levels, self.output_size, self.sampling_ratio = tuple(levels), output_size, sampling_ratio
        self.aligned, self.mode = aligned, mode
        self.canonical_size, self.canonical_level = canonical_size, canonical_level

    def levels_of(self, proposals: list[Tensor]) -> list[Tensor]:
        """Level k (e.g. 2..5) each proposal is pooled from: one (K_i,) int64 tensor per image."""
        return [assign_levels(p, self.ks[0], self.ks[-1], self.canonical_size, self.canonical_level) for p in proposals]

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        """features: level name -> (B, C, H_l, W_l); proposals: per image (K_i, 4) in pixels of the
        batch tensor (image_size = its (height, width)) -> (sum K_i, C, output_size, output_size)."""
        # BEGIN UNIT pooler
        maps = [features[name] for name in self.levels]
        if sum(len(p) for p in proposals) == 0:  # no images, or no proposals in any: nothing to pool
            return maps[0].new_zeros(0, maps[0].shape[1], self.output_size, self.output_size)
        scales = [self._scale(name, k, f, image_size) for name, k, f in zip(self.levels, self.ks, maps)]
        rois = as_rois(proposals)  # (K, 5)
        if len(maps) == 1:
            return self._pool(maps[0], rois, scales[0])
        ks = torch.cat(self.levels_of(proposals))  # (K,)
        out = maps[0].new_zeros(len(rois), maps[0].shape[1], self.output_size, self.output_size)
        for k, feature, scale in zip(self.ks, maps, scales):
            index = torch.where(ks == k)[0]
            out[index] = self._pool(feature, rois[index], scale)
        return out  # (K, C, 7, 7), in the order of the concatenated proposals
        # END UNIT pooler

    def _pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        if self.mode == "pool":
            return roi_pool(feature, rois, self.output_size, scale)
        return roi_align(feature, rois, self.output_size, scale, self.sampling_ratio, self.aligned)

    @staticmethod
    def _scale(name: str, k: int, feature: Tensor, image_size: tuple[int, int]) -> float:
        """1 / stride: feature height / image height rounded to a power of 2 (as torchvision infers it)."""
        scale = 2.0 ** round(math.log2(feature.shape[-2] / image_size[0]))
        if scale != 2.0**-k:
            raise FpnlabError(
                f"feature {name!r} is {feature.shape[-2]} rows high for an image {image_size[0]} "
                f"rows high, which is not stride {2**k}; pass the padded batch size as image_size."
            )
        return scale
