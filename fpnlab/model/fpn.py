"""The FPN neck (stage 2): a top-down pathway with lateral connections (FPN paper, Sec. 3, Fig. 3).

    C5 --1x1--> M5 ------------------------------> 3x3 --> P5 --max_pool(k=1, s=2)--> P6
    C4 --1x1--> (+) <- 2x nearest upsample of M5 -> 3x3 --> P4
    C3 --1x1--> (+) <- 2x nearest upsample of M4 -> 3x3 --> P3
    C2 --1x1--> (+) <- 2x nearest upsample of M3 -> 3x3 --> P2

Every P_k has ``out_channels`` = 256 channels (d in the paper) and stride 2^k. The 1x1 convs are
the *lateral* connections, the upsample-and-add the *top-down* pathway, the 3x3 convs reduce the
aliasing of upsampling. Upsampling goes to the lateral map's exact size, so odd sizes work.

The switches reproduce the ablations of the paper's Table 1 (Faster R-CNN RPN on COCO):
    FPN()                          row (c): FPN, P2..P6 (P6 only carries RPN anchors of 512^2).
    FPN(top_down=False)            row (d): bottom-up pyramid, no top-down pathway: P_k = 3x3(1x1(C_k)).
    FPN(lateral=False)             row (e): top-down pyramid without lateral connections: only C5 gets a
                                   1x1 conv; M_k is M_{k+1} upsampled (no add); P_k = 3x3(M_k).
    FPN(out_levels=("p2",))        row (f): the full FPN, but only the finest level P2 is used.
    SingleScaleNeck(source="c4")   row (a): single-scale baseline on C4 (as in the original Faster R-CNN).
    SingleScaleNeck(source="c5")   row (b): single-scale baseline on C5.
Only the convs that the chosen outputs need are built (no unused parameters).
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.errors import FpnlabError
from fpnlab.model.levels import level_number

FPN_LEVELS = ("p2", "p3", "p4", "p5", "p6")
FPN_CHANNELS = 256  # d = 256 in the paper


class FPN(nn.Module):
    """C2..C5 -> P2..P6 (or the ``out_levels`` subset). ``in_channels`` lists the channels of C2..C5.

    Submodules ``lateral[i]`` / ``smooth[i]`` (i = 0 for C2/P2) are torchvision's
    ``inner_blocks[i][0]`` / ``layer_blocks[i][0]``; see ``load_torchvision_fpn``.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = FPN_CHANNELS,
        top_down: bool = True,
        lateral: bool = True,
        out_levels: tuple[str, ...] = FPN_LEVELS,
    ) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise FpnlabError(f"FPN in_channels must list the channels of C2, C3, C4, C5, got {in_channels}.")
        if not out_levels or any(name not in FPN_LEVELS for name in out_levels):
            raise FpnlabError(f"FPN out_levels must be a non-empty subset of {FPN_LEVELS}, got {tuple(out_levels)}.")
        if not (top_down or lateral):
            raise FpnlabError("FPN needs top_down=True or lateral=True: without both, levels below P5 get no input.")
        self.top_down, self.use_lateral = top_down, lateral
        self.out_levels, self.out_channels = tuple(out_levels), out_channels
        self.strides = {name: 2 ** level_number(name) for name in self.out_levels}
        top = 3  # index of C5
        smoothed = sorted({min(level_number(name) - 2, top) for name in out_levels})  # P6 is pooled from P5
        # indices i whose map M_{i+2} is computed: top-down, M_k needs every coarser M as well
        self._merged = list(range(smoothed[0], top + 1)) if top_down else smoothed
        laterals = self._merged if lateral else [top]  # row (e): only C5 has a 1x1 conv
        # ModuleDicts keyed "0".."3" give the parameter names lateral.i.weight, like a ModuleList would.
        self.lateral = nn.ModuleDict({str(i): nn.Conv2d(in_channels[i], out_channels, 1) for i in laterals})
        self.smooth = nn.ModuleDict({str(i): nn.Conv2d(out_channels, out_channels, 3, padding=1) for i in smoothed})
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):  # torchvision's FPN init
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        """features: c2..c5, (B, C_k, H/2^k, W/2^k) -> out_levels, each (B, 256, H/2^k, W/2^k)."""
        # BEGIN UNIT fpn
        c = list(features.values())  # c2, c3, c4, c5
        m: dict[int, Tensor] = {}
        for i in reversed(self._merged):  # coarse to fine: M5 first
            if i == len(c) - 1 or not self.top_down:  # M5, or any level of a bottom-up pyramid (row d)
                m[i] = self.lateral[str(i)](c[i])  # (B, 256, H_i, W_i)
            else:
                upsampled = F.interpolate(m[i + 1], size=c[i].shape[-2:], mode="nearest")  # (B, 256, H_i, W_i)
                m[i] = upsampled + self.lateral[str(i)](c[i]) if self.use_lateral else upsampled
        p = {f"p{i + 2}": self.smooth[str(i)](m[i]) for i in map(int, self.smooth.keys())}
        if "p6" in self.out_levels:  # stride-2 subsampling of P5 (Sec. 4.1), torchvision's LastLevelMaxPool
            p["p6"] = F.max_pool2d(p["p5"], kernel_size=1, stride=2)
        return OrderedDict((name, p[name]) for name in self.out_levels)
        # END UNIT fpn


class SingleScaleNeck(nn.Module):
    """The single-scale baselines, paper Table 1 rows (a) C4 and (b) C5: one 1x1 conv to ``out_channels``
    so the same RPN and ROI heads fit; returns {source: (B, 256, H/stride, W/stride)}.

    ``in_channels`` is the source's channel count, or the backbone's ``out_channels`` dict.
    """

    def __init__(self, in_channels: int | dict[str, int], source: str = "c4", out_channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        if source not in ("c4", "c5"):
            raise FpnlabError(f"SingleScaleNeck source must be 'c4' or 'c5', got {source!r}.")
        if isinstance(in_channels, dict):
            in_channels = in_channels[source]
        self.source, self.out_channels = source, out_channels
        self.strides = {source: 16 if source == "c4" else 32}
        self.reduce = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.kaiming_uniform_(self.reduce.weight, a=1)
        nn.init.zeros_(self.reduce.bias)

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        return OrderedDict([(self.source, self.reduce(features[self.source]))])


def torchvision_fpn_state(state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Rename a torchvision FeaturePyramidNetwork state dict to ours:
    ``{prefix}inner_blocks.i.0.*`` -> ``lateral.i.*`` and ``{prefix}layer_blocks.i.0.*`` -> ``smooth.i.*``."""
    pattern = re.compile(re.escape(prefix) + r"(inner_blocks|layer_blocks)\.(\d+)\.0\.(weight|bias)")
    ours = {"inner_blocks": "lateral", "layer_blocks": "smooth"}
    renamed = {}
    for key, value in state.items():
        match = pattern.fullmatch(key)  # e.g. ("inner_blocks", "2", "weight"); other keys are skipped
        if match:
            block, i, param = match.groups()
            renamed[f"{ours[block]}.{i}.{param}"] = value
    return renamed


@torch.no_grad()
def load_torchvision_fpn(fpn: FPN, torchvision_fpn: nn.Module) -> FPN:
    """Copy the weights of a ``torchvision.ops.FeaturePyramidNetwork`` (same channels) into ``fpn``."""
    fpn.load_state_dict(torchvision_fpn_state(torchvision_fpn.state_dict()))
    return fpn
