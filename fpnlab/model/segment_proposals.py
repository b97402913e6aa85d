"""Segment proposals (stage 9; FPN paper, Sec. 6, Table 6): a DeepMask-style MLP slid over every pyramid level.

At every position of every level the same small MLP sees a 5 x 5 window of the level's features and
predicts, for each of its S scale slots, an object score and a 14 x 14 mask of the square image region
centred on the position. It runs fully convolutionally: the MLP's first layer on the flattened window
is a 5 x 5 convolution, its outputs are 1 x 1 convolutions:

    P_k                                          # (B, C, H/2^k, W/2^k)
    -> 5 x 5 conv (padding 2) + ReLU             # (B, hidden, H/2^k, W/2^k)   the MLP's hidden layer
    -> 1 x 1 conv: S objectness logits           # (B, S, H/2^k, W/2^k)
    -> 1 x 1 conv: S x 14 x 14 mask logits       # (B, S*196, H/2^k, W/2^k)

Scales. Slot s of a level stands for objects of size `scale_s` (in pixels of the resized image the network
sees); its mask covers the square region of side region_factor x scale_s centred at the position's centre
((j + 0.5) stride, (i + 0.5) stride).
FPN gives each level one slot (32..256 on P2..P5 at the lab's 320 px input: the detector's anchor sizes);
the single-level baseline puts all four slots on P4, as a single-scale RPN carries every anchor size.
region_factor = 1.5 (> sqrt(2)) lets the largest object of an octave fit inside its region (perfect predictions
reach segment AR 0.92 with 1.5, 0.83 with 1.0, 0.86 with 2.0 on 40 shapes-mini val images: fpnlab.engine.segments).

Targets, by octave (as FPN assigns anchors by size): an object goes to the scale nearest to its size in log2,

    s* = argmin_s |log2(sqrt(w h) / scale_s)|        (ties to the smaller scale)

and it is the positive of the positions of that scale whose centre lies within one stride of its box
centre, in x and in y (|dx| < stride and |dy| < stride: 1 to 4 positions). A position several objects
claim belongs to the one whose centre is nearest; every other position is negative. A positive's mask
target is its object's whole-image mask RoIAligned over the position's region at 14 x 14.

Loss: binary cross-entropy of the objectness of 256 positions sampled per image, at most half of them
positive (the RPN's balanced sample), plus the mean per-pixel binary cross-entropy of the masks of all
positive positions (zero, attached to the graph, without any).

Inference: the 1000 highest-scoring positions of all levels and slots per image, without NMS, each with its
region box and its 14 x 14 mask probabilities; fpnlab.model.masks.paste_masks puts them in the image.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.errors import DataError
from fpnlab.model.backbone import ResNetBody
from fpnlab.model.boxes import box_area
from fpnlab.model.fpn import FPN
from fpnlab.model.inputs import check_inputs
from fpnlab.model.levels import level_number
from fpnlab.model.masks import paste_masks, project_masks
from fpnlab.model.matching import BalancedPositiveNegativeSampler
from fpnlab.model.transform import DetectionTransform
from fpnlab.switch import skip_value_checks

MASK_SIZE = 14  # M: each mask is M x M
WINDOW = 5  # the MLP's window on the feature map
REGION_FACTOR = 1.5  # a slot's mask region is this many times its object scale
TOP_N = 1000  # proposals kept per image
SAMPLED_PER_IMAGE, POSITIVE_FRACTION = 256, 0.5  # the objectness loss's sample, as the RPN's
ANY_LABEL = 2**62  # class-agnostic: every label >= 1 is an object


class SegmentProposalHead(nn.Module):
    """One MLP for every level: per level (B, C, H, W) -> objectness (B, S, H, W), masks (B, S*M*M, H, W)."""

    def __init__(
        self, in_channels: int, hidden: int, slots: int, mask_size: int = MASK_SIZE, window: int = WINDOW
    ) -> None:
        super().__init__()
        self.slots, self.mask_size = slots, mask_size
        self.mlp = nn.Conv2d(in_channels, hidden, window, padding=window // 2)  # the MLP's layer on the window
        self.objectness = nn.Conv2d(hidden, slots, 1)
        self.masks = nn.Conv2d(hidden, slots * mask_size**2, 1)
        for conv in (self.mlp, self.objectness, self.masks):  # Faster R-CNN's init, as the RPN head
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [F.relu(self.mlp(x)) for x in features]  # per level (B, hidden, H, W)
        return [self.objectness(h) for h in hidden], [self.masks(h) for h in hidden]


class Candidates(NamedTuple):
    """Every (position, slot) of every level, location-major within a level, levels finest first."""

    boxes: Tensor  # (N, 4) the square region each mask covers, in batch pixels
    centres: Tensor  # (N, 2) x, y of the position's centre
    strides: Tensor  # (N,) the stride of its level
    scales: Tensor  # (N,) int64 index of its slot's scale in the sorted list of all scales
    levels: Tensor  # (N,) int64 level number k (2 for P2)


def assign_octaves(boxes: Tensor, scales: Tensor) -> Tensor:
    """Index of the scale nearest each box in log2: boxes (G, 4), scales (L,) increasing -> (G,) int64.

    With scales 32, 64, 128, 256: 40 x 40 -> 0, 50 x 50 -> 1 (|log2(50/64)| = 0.36 < log2(50/32) = 0.64),
    10 x 10 -> 0, 600 x 600 -> 3; sqrt(32 x 64) = 45.25 is a tie and goes to 0.
    """
    size = torch.log2(torch.sqrt(box_area(boxes)))  # (G,)
    return (size[:, None] - torch.log2(scales.to(size))[None]).abs().argmin(dim=1)  # argmin: first of a tie


def level_candidates(
    feature_size: tuple[int, int], stride: int, slot_scales: Tensor, all_scales: Tensor, level: int, factor: float
) -> Candidates:
    """The H * W * S candidates of one level of stride `stride` with scales `slot_scales` (S,)."""
    height, width = feature_size
    ys = (torch.arange(height, device=all_scales.device) + 0.5) * stride  # (H,) centres in pixels
    xs = (torch.arange(width, device=all_scales.device) + 0.5) * stride  # (W,)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    centres = torch.stack([x, y], dim=-1).reshape(-1, 1, 2).expand(-1, len(slot_scales), 2).reshape(-1, 2)
    half = (slot_scales.to(centres) * factor / 2).repeat(height * width)[:, None]  # (H*W*S, 1)
    index = torch.searchsorted(all_scales, slot_scales).repeat(height * width)  # (H*W*S,)
    count = len(index)
    return Candidates(
        torch.cat([centres - half, centres + half], dim=1),
        centres,
        torch.full((count,), float(stride), device=centres.device),
        index,
        torch.full((count,), level, dtype=torch.int64, device=centres.device),
    )


def match_positions(gt_boxes: Tensor, candidates: Candidates, all_scales: Tensor) -> Tensor:
    """(N,) int64: the object (index into gt_boxes (G, 4)) each candidate is the positive of, -1 if negative."""
    if len(gt_boxes) == 0:
        return torch.full((len(candidates.boxes),), -1, dtype=torch.int64, device=gt_boxes.device)
    octave = assign_octaves(gt_boxes, all_scales)  # (G,)
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (G, 2)
    offset = candidates.centres[None] - centre[:, None]  # (G, N, 2)
    near = (offset.abs() < candidates.strides[None, :, None]).all(dim=-1)  # (G, N) within one stride in x and y
    claims = near & (candidates.scales[None] == octave[:, None])  # (G, N)
    distance = torch.where(claims, offset.norm(dim=-1), torch.full_like(claims, math.inf, dtype=offset.dtype))
    nearest, matched = distance.min(dim=0)  # (N,) each: the nearest claiming object
    return torch.where(torch.isfinite(nearest), matched, torch.full_like(matched, -1))


def flatten_masks(masks: Tensor, mask_size: int) -> Tensor:
    """(B, S*M*M, H, W) -> (B, H*W*S, M, M), in the candidates' order (location-major, then slot)."""
    batch, channels, height, width = masks.shape
    slots = channels // mask_size**2
    masks = masks.view(batch, slots, mask_size, mask_size, height, width).permute(0, 4, 5, 1, 2, 3)
    return masks.reshape(batch, height * width * slots, mask_size, mask_size)


def segment_loss(
    logits: Tensor,
    mask_logits: Tensor,
    candidates: Candidates,
    all_scales: Tensor,
    targets: list[dict[str, Tensor]],
    sampler: BalancedPositiveNegativeSampler,
) -> dict[str, Tensor]:
    """logits (B, N), mask_logits (B, N, M, M) -> {"loss_objectness", "loss_mask"} (see the module docstring)."""
    sampled_logits, sampled_labels, positive_masks, mask_targets = [], [], [], []
    for logit, masks, target in zip(logits, mask_logits, targets):
        matched = match_positions(target["boxes"], candidates, all_scales)  # (N,)
        positive, negative = sampler((matched >= 0).long())  # (P,), (Q,)
        sampled_logits.append(logit[torch.cat([positive, negative])])
        sampled_labels.append(torch.cat([torch.ones_like(positive), torch.zeros_like(negative)]).to(logit))
        objects = torch.where(matched >= 0)[0]  # every positive position learns its mask
        positive_masks.append(masks[objects])  # (P_i, M, M)
        mask_targets.append(
            project_masks(target["masks"], candidates.boxes[objects], matched[objects], masks.shape[-1])
        )
    objectness = F.binary_cross_entropy_with_logits(torch.cat(sampled_logits), torch.cat(sampled_labels))
    predicted, wanted = torch.cat(positive_masks), torch.cat(mask_targets)
    mask = F.binary_cross_entropy_with_logits(predicted, wanted) if len(wanted) else mask_logits.sum() * 0
    return {"loss_objectness": objectness, "loss_mask": mask}


@torch.no_grad()
def select_proposals(
    logits: Tensor, mask_logits: Tensor, candidates: Candidates, top_n: int = TOP_N
) -> list[dict[str, Tensor]]:
    """Per image the top_n candidates by score, best first, no NMS: {"boxes" (K, 4) regions in batch pixels,
    "scores" (K,), "masks" (K, 1, M, M) probabilities, "levels" (K,) level number k}."""
    scores, index = torch.sigmoid(logits).topk(min(top_n, logits.shape[1]), dim=1)  # (B, K) each
    return [
        {
            "boxes": candidates.boxes[i],
            "scores": s,
            "masks": torch.sigmoid(m[i])[:, None],
            "levels": candidates.levels[i],
        }
        for s, i, m in zip(scores, index, mask_logits)
    ]


def binary_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = 0.5) -> Tensor:
    """(K, 1, M, M) probabilities at their (K, 4) region boxes -> (K, H, W) bool masks of the image."""
    return paste_masks(masks, boxes, image_size)[:, 0] >= threshold


class SegmentProposer(nn.Module):
    """Transform + ResNet + FPN + SegmentProposalHead on `levels`, slots `scales[l]` on level l (in pixels of the
    image resized to `size`, which the network sees).

        model.train(); losses = model(images, targets)   # targets need "boxes", "labels", "masks" (N, H, W)
        model.eval();  proposals = model(images)          # [{"boxes", "scores", "masks", "levels"}] per image

    FPN: levels ("p2", "p3", "p4", "p5"), scales ((32,), (64,), (128,), (256,)); the single-level baseline:
    ("p4",), ((32, 64, 128, 256),), P4 of the same FPN. Boxes (the regions the 14 x 14 masks cover) are in the
    pixels of the input images; `binary_masks` pastes them.
    """

    def __init__(
        self,
        levels: tuple[str, ...],
        scales: tuple[tuple[int, ...], ...],
        backbone: str = "resnet_tiny",
        fpn_channels: int = 64,
        hidden: int = 512,
        size: int = 320,
        region_factor: float = REGION_FACTOR,
        top_n: int = TOP_N,
    ) -> None:
        super().__init__()
        self.levels, self.region_factor, self.top_n = tuple(levels), region_factor, top_n
        self.slot_scales = [torch.tensor(s, dtype=torch.float32) for s in scales]
        self.all_scales = torch.tensor(sorted({s for level in scales for s in level}), dtype=torch.float32)
        self.transform = DetectionTransform(size, size)
        self.backbone = ResNetBody(backbone, "bn", 5)  # BatchNorm that learns, every layer trains (from scratch)
        self.neck = FPN(list(self.backbone.out_channels.values()), fpn_channels, out_levels=self.levels)
        self.head = SegmentProposalHead(fpn_channels, hidden, len(scales[0]))
        self.sampler = BalancedPositiveNegativeSampler(SAMPLED_PER_IMAGE, POSITIVE_FRACTION)

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        images, input_sizes = check_inputs(images, targets, self.training, ANY_LABEL, next(self.parameters()).dtype)
        if self.training and not all("masks" in t for t in targets):
            raise DataError("segment proposals learn masks: every training target needs 'masks' (N, H, W).")
        with skip_value_checks():
            batch, targets = self.transform(images, targets)  # (B, 3, H, W)
            pyramid: OrderedDict[str, Tensor] = self.neck(self.backbone(batch.tensor))  # per level (B, C, H_k, W_k)
            maps = [pyramid[name] for name in self.levels]
            objectness, masks = self.head(maps)  # per level (B, S, H_k, W_k), (B, S*M*M, H_k, W_k)
            candidates = self.candidates(batch.padded_size, [m.shape[-2:] for m in maps], maps[0].device)
            logits = torch.cat([o.permute(0, 2, 3, 1).flatten(1) for o in objectness], 1)  # (B, N)
            mask_logits = torch.cat([flatten_masks(m, self.head.mask_size) for m in masks], 1)  # (B, N, M, M)
            if self.training:
                return segment_loss(logits, mask_logits, candidates, self.all_scales.to(logits), targets, self.sampler)
            found = select_proposals(logits, mask_logits, candidates, self.top_n)
        return self.transform.postprocess(found, batch.image_sizes, input_sizes)

    def candidates(
        self, padded_size: tuple[int, int], feature_sizes: list[tuple[int, int]], device: torch.device
    ) -> Candidates:
        """Every level's candidates in batch pixels, concatenated (stride = padded size // feature size)."""
        per_level = [
            level_candidates(
                tuple(size),
                padded_size[0] // size[0],
                scales.to(device),
                self.all_scales.to(device),
                level_number(name),
                self.region_factor,
            )
            for name, size, scales in zip(self.levels, feature_sizes, self.slot_scales)
        ]
        return Candidates(*(torch.cat(column) for column in zip(*per_level)))
