"""Anchors (stage 3): reference boxes laid on every pyramid level's grid (FPN paper, Sec. 4.1).

FPN gives each level one anchor size, 32^2 on P2 up to 512^2 on P6, in three aspect ratios
(1:2, 1:1, 2:1), so 3 anchors per location; the single-scale baselines instead put all 15 on one level.
Anchors are centred on the grid points (x * stride, y * stride), in torchvision's layout: row-major
over locations, then the A anchors of a location (ratio-major, size-minor).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from fpnlab.errors import FpnlabError

FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))  # one size per level, P2..P6
FPN_ASPECT_RATIOS = (0.5, 1.0, 2.0)  # height / width
CACHE_SIZE = 16  # grids kept, least recently used dropped first


class AnchorGenerator(nn.Module):
    """Anchors for every level: ``sizes[l]`` (side lengths) x ``aspect_ratios`` on level l's grid."""

    def __init__(
        self,
        sizes: tuple[tuple[int, ...], ...] = FPN_SIZES,
        aspect_ratios: tuple[float, ...] | tuple[tuple[float, ...], ...] = FPN_ASPECT_RATIOS,
    ) -> None:
        super().__init__()
        sizes = tuple(tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise FpnlabError(
                f"AnchorGenerator got {len(sizes)} levels of sizes but {len(aspect_ratios)} of aspect ratios."
            )
        self.sizes, self.aspect_ratios = sizes, tuple(tuple(r) for r in aspect_ratios)
        self._cache: OrderedDict[tuple, list[Tensor]] = OrderedDict()

    def num_anchors_per_location(self) -> list[int]:
        """A for each level (3 for FPN; 15 for a single level carrying all five sizes)."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_level(self, feature_sizes: list[tuple[int, int]]) -> list[int]:
        """H_l * W_l * A_l: how many of the concatenated anchors belong to each level."""
        return [h * w * a for (h, w), a in zip(feature_sizes, self.num_anchors_per_location())]

    def anchor_levels(self, feature_sizes: list[tuple[int, int]], device: torch.device | str = "cpu") -> Tensor:
        """Level index (0 for the first level given) of every concatenated anchor: (sum_l H_l * W_l * A_l,) int64."""
        counts = torch.tensor(self.num_anchors_per_level(feature_sizes), device=device)
        return torch.repeat_interleave(torch.arange(len(counts), device=device), counts)

    def cell_anchors(self, level: int) -> Tensor:
        """The A anchors of one grid point at (0, 0): (A, 4), corners rounded to whole pixels like torchvision."""
        # BEGIN UNIT cell_anchors
        sizes = torch.tensor(self.sizes[level], dtype=torch.float32)  # (S,)
        ratios = torch.tensor(self.aspect_ratios[level], dtype=torch.float32)  # (R,) height / width
        h_factor = torch.sqrt(ratios)  # area-preserving: w * h = size^2
        widths = (sizes[None, :] / h_factor[:, None]).flatten()  # (R*S,) ratio-major
        heights = (sizes[None, :] * h_factor[:, None]).flatten()
        return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()  # (A, 4)
        # END UNIT cell_anchors

    def grid_anchors(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> list[Tensor]:
        """One (H_l * W_l * A_l, 4) tensor of anchors per level, for a padded batch of ``image_size``.

        The stride of level l is image_size // feature_size. Results are cached per (image size, feature
        sizes, device, dtype) and shared: do not modify them in place.
        """
        feature_sizes = [tuple(int(s) for s in size) for size in feature_sizes]
        if len(feature_sizes) != len(self.sizes):
            raise FpnlabError(
                f"AnchorGenerator has {len(self.sizes)} levels but got {len(feature_sizes)} feature maps."
            )
        key = (tuple(int(s) for s in image_size), tuple(feature_sizes), torch.device(device), dtype)
        if key not in self._cache:
            self._cache[key] = [
                self._level_anchors(level, key[0], size, key[2], dtype) for level, size in enumerate(feature_sizes)
            ]
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def _level_anchors(
        self,
        level: int,
        image_size: tuple[int, int],
        feature_size: tuple[int, int],
        device: torch.device,
        dtype: torch.dtype,
    ) -> Tensor:
        # BEGIN UNIT grid_anchors
        (height, width), (image_h, image_w) = feature_size, image_size
        ys = torch.arange(height, device=device) * (image_h // height)  # (H,) grid rows in pixels
        xs = torch.arange(width, device=device) * (image_w // width)  # (W,)
        y, x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        shifts = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
        cell = self.cell_anchors(level).to(device=device, dtype=dtype)  # (A, 4)
        return (shifts + cell[None]).reshape(-1, 4)  # (H*W*A, 4)
        # END UNIT grid_anchors
