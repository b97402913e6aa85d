"""The Region Proposal Network (stage 4): objectness and box deltas for every anchor, then the best boxes.

FPN paper, Sec. 4.1: one small head (3x3 conv, then two sibling 1x1 convs) slides over *every*
pyramid level with shared weights; each level carries anchors of one size (32^2 on P2 .. 512^2 on P6).

    inference   per level: the pre_nms_top_n highest-scoring anchors (1000 at test time), decoded into
                boxes; per image: clip to the image, drop tiny boxes, NMS at IoU 0.7 within each level
                (one batched NMS over all levels), keep the post_nms_top_n best (1000) as proposals.
    training    anchors matched to ground truth (IoU >= 0.7 positive, < 0.3 negative, plus each gt's
                best anchor), 256 sampled per image, half positive; losses (Faster R-CNN Eq. 1):
                binary cross-entropy on objectness, smooth L1 (beta 1/9) on the positives' deltas.

Numbers and order of operations follow torchvision's RegionProposalNetwork, so proposals are equal;
for speed only the top-k anchors of each level are decoded (decoding is per box, so nothing changes).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.model.anchors import AnchorGenerator
from fpnlab.model.boxes import BoxCoder, batched_nms, clip_boxes_to_image, remove_small_boxes
from fpnlab.model.config import SMOOTH_L1_BETA, RPNConfig
from fpnlab.model.matching import BalancedPositiveNegativeSampler, Matcher, sample_targets
from fpnlab.model.transform import ImageBatch
from fpnlab.overrides import temporarily

MIN_PROPOSAL_SIZE = 1e-3  # pixels: proposals thinner than this are dropped (torchvision's value)


class RPNHead(nn.Module):
    """One head for all levels: 3x3 conv + ReLU, then 1x1 convs to A objectness logits and 4A box deltas."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.deltas = nn.Conv2d(in_channels, 4 * num_anchors, kernel_size=1)
        for conv in (self.conv, self.objectness, self.deltas):  # Faster R-CNN's init: N(0, 0.01), zero bias
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level (B, C, H, W) -> objectness logits (B, A, H, W) and deltas (B, 4A, H, W)."""
        hidden = [F.relu(self.conv(x)) for x in features]
        return [self.objectness(h) for h in hidden], [self.deltas(h) for h in hidden]


class RPNOutput(NamedTuple):
    """What the RPN computed for a batch; boxes are in the pixels of the resized, padded batch."""

    boxes: list[Tensor]  # per image (K_i, 4) proposals, best first
    scores: list[Tensor]  # per image (K_i,) objectness probability
    levels: list[Tensor]  # per image (K_i,) int64 index of the pyramid level whose anchor made the proposal
    objectness: list[Tensor]  # per level (B, A, H, W) logits
    anchors: list[Tensor]  # per level (H * W * A, 4), shared by every image of the batch
    losses: dict[str, Tensor]  # loss_objectness, loss_rpn_box_reg in training, else empty


class RegionProposalNetwork(nn.Module):
    """Features of every level -> proposals per image (+ the two RPN losses in training).

    ``config`` (fpnlab.model.config.RPNConfig) holds the numbers: torchvision's by default, with
    proposal counts (pre_nms_top_n per level, post_nms_top_n per image) of 2000 / 2000 in training and
    1000 / 1000 at test time. ``settings(...)`` changes the inference ones inside a ``with`` block.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, config: RPNConfig = RPNConfig()) -> None:
        super().__init__()
        self.anchor_generator, self.head, self.config = anchor_generator, head, config
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(config.fg_iou_thresh, config.bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(config.batch_size_per_image, config.positive_fraction)

    def settings(self, **values: Any) -> AbstractContextManager[None]:
        """Other proposal settings inside a ``with`` block, e.g. settings(nms_thresh=1.0) for no NMS, or
        settings(test=ProposalCounts(1000, 10**6)) to keep every candidate."""
        return temporarily(self, ("train", "test", "nms_thresh", "score_thresh"), values)

    def forward(
        self, features: dict[str, Tensor], batch: ImageBatch, targets: list[dict[str, Tensor]] | None = None
    ) -> RPNOutput:
        maps = list(features.values())  # per level (B, C, H_l, W_l)
        objectness, deltas = self.head(maps)  # per level (B, A, H_l, W_l), (B, 4A, H_l, W_l)
        anchors = self.anchor_generator.grid_anchors(
            batch.padded_size, [m.shape[-2:] for m in maps], maps[0].device, maps[0].dtype
        )  # per level (H_l*W_l*A, 4)
        logits = [flatten_objectness(o) for o in objectness]  # per level (B, H_l*W_l*A)
        deltas = [flatten_deltas(d) for d in deltas]  # per level (B, H_l*W_l*A, 4)
        boxes, scores, levels = self.select_proposals(logits, deltas, anchors, batch.image_sizes)
        losses = {}
        if self.training:
            losses = self.loss(torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors), targets)
        return RPNOutput(boxes, scores, levels, objectness, anchors, losses)

    @torch.no_grad()
    def select_proposals(
        self, logits: list[Tensor], deltas: list[Tensor], anchors: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-level top-k -> decode -> per image: clip, drop tiny, NMS per level, top-k. Not differentiated."""
        counts = self.config.counts(self.training)
        top_logits, top_boxes, top_levels = [], [], []
        for level, (logit, delta, anchor) in enumerate(zip(logits, deltas, anchors)):
            logit, index = logit.topk(min(counts.pre_nms_top_n, logit.shape[1]), dim=1)  # (B, k) each
            rows = torch.arange(len(index), device=index.device)[:, None]  # (B, 1)
            picked = self.box_coder.decode(delta[rows, index].reshape(-1, 4), anchor[index].reshape(-1, 4))
            top_logits.append(logit)
            top_boxes.append(picked.view(*index.shape, 4))  # (B, k, 4)
            top_levels.append(torch.full_like(index, level))
        scores = torch.sigmoid(torch.cat(top_logits, 1))  # (B, K)
        boxes, levels = torch.cat(top_boxes, 1), torch.cat(top_levels, 1)  # (B, K, 4), (B, K)
        # per image from here: images differ in size and in how many candidates survive
        per_image = [
            self.filter_image(*args, counts.post_nms_top_n) for args in zip(boxes, scores, levels, image_sizes)
        ]
        boxes, scores, levels = (list(column) for column in zip(*per_image))
        return boxes, scores, levels

    def filter_image(
        self, boxes: Tensor, scores: Tensor, levels: Tensor, image_size: tuple[int, int], top_n: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One image's candidates (K, 4), (K,), (K,) -> its proposals, best first."""
        # BEGIN UNIT filter_image
        boxes = clip_boxes_to_image(boxes, image_size)
        keep = remove_small_boxes(boxes, MIN_PROPOSAL_SIZE)
        keep = keep[scores[keep] >= self.config.score_thresh]
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, self.config.nms_thresh)[:top_n]  # NMS within each level
        return boxes[keep], scores[keep], levels[keep]
        # END UNIT filter_image

    def loss(
        self, logits: Tensor, deltas: Tensor, anchors: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Faster R-CNN Eq. 1 on 256 sampled anchors per image: logits (B, N), deltas (B, N, 4), anchors (N, 4).

        L = BCE(objectness of sampled) + sum smooth_L1(deltas of sampled positives) / number sampled.
        """
        # BEGIN UNIT rpn_loss
        sampled_logits, sampled_labels, positive_deltas, positive_targets = [], [], [], []
        for logit, delta, target in zip(logits, deltas, targets):
            gt = target["boxes"]
            objects = torch.ones(len(gt), dtype=torch.int64, device=gt.device)  # class-agnostic: 1 = object
            sampled = sample_targets(self.matcher, self.sampler, self.box_coder, gt, objects, anchors)
            sampled_logits.append(logit[torch.cat([sampled.positive, sampled.negative])])
            sampled_labels.append(sampled.labels.to(logit.dtype))
            positive_deltas.append(delta[sampled.positive])
            positive_targets.append(sampled.box_targets)
        sampled_logits, sampled_labels = torch.cat(sampled_logits), torch.cat(sampled_labels)
        num_sampled = max(len(sampled_labels), 1)
        objectness = F.binary_cross_entropy_with_logits(sampled_logits, sampled_labels, reduction="sum")
        box_reg = F.smooth_l1_loss(
            torch.cat(positive_deltas), torch.cat(positive_targets), beta=SMOOTH_L1_BETA, reduction="sum"
        )
        return {"loss_objectness": objectness / num_sampled, "loss_rpn_box_reg": box_reg / num_sampled}
        # END UNIT rpn_loss


def flatten_objectness(logits: Tensor) -> Tensor:
    """(B, A, H, W) -> (B, H*W*A), in the anchors' order: location-major, then the A anchors of a location."""
    # BEGIN UNIT flatten_objectness
    return logits.permute(0, 2, 3, 1).reshape(logits.shape[0], -1)
    # END UNIT flatten_objectness


def flatten_deltas(deltas: Tensor) -> Tensor:
    """(B, 4A, H, W) -> (B, H*W*A, 4), in the anchors' order."""
    # BEGIN UNIT flatten_deltas
    batch, channels, height, width = deltas.shape
    return deltas.view(batch, channels // 4, 4, height, width).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
    # END UNIT flatten_deltas
