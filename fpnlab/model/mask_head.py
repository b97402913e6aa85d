"""The Mask R-CNN head (stage 9): a small FCN on each ROI's pyramid features predicts its object's mask.

Mask R-CNN (He et al. 2017) with FPN (their Fig. 4, right), as torchvision's maskrcnn_resnet50_fpn:

    ROI -> Eq. 1 picks P_k -> RoIAlign 14 x 14 (sampling ratio 2)       # (R, 256, 14, 14)
        -> 4 x [3 x 3 conv 256 + ReLU]                                  # (R, 256, 14, 14)
        -> 2 x 2 transposed conv, stride 2, + ReLU                      # (R, 256, 28, 28)
        -> 1 x 1 conv to one logit map per class                        # (R, K, 28, 28)

    training    only the positive ROIs the box head sampled; each learns the RoIAligned mask of its
                matched object (fpnlab.model.masks.project_masks) on its class's channel (mask_loss)
    inference   the detections' own boxes: sigmoid of the detected class's channel, (D, 1, 28, 28);
                the detector pastes them into the input image (fpnlab.model.masks.paste_masks)

It attaches to RoIHeads as an extra head ("mask"): the box head runs exactly as without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.model.config import MaskHeadConfig
from fpnlab.model.masks import mask_loss, project_masks
from fpnlab.model.poolers import MultiScaleRoIPooler
from fpnlab.model.roi_heads import PositiveRoIs
from fpnlab.model.transform import ImageBatch


class MaskPredictor(nn.Module):
    """(R, C, 14, 14) -> (R, num_classes, 28, 28) logits: transposed conv 2 x 2 / 2 + ReLU, then 1 x 1 conv."""

    def __init__(self, in_channels: int, deconv_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(in_channels, deconv_channels, 2, stride=2)
        self.mask_fcn_logits = nn.Conv2d(deconv_channels, num_classes, 1)
        nn.init.kaiming_normal_(self.conv5_mask.weight, mode="fan_out", nonlinearity="relu")
        # detectron2's start for the logits (torchvision's Kaiming init gives logits of +-20 on a from-scratch
        # backbone with few classes, and a first loss near 10): every mask starts at probability 0.5
        nn.init.normal_(self.mask_fcn_logits.weight, std=0.001)
        nn.init.zeros_(self.mask_fcn_logits.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x)))


class MaskHead(nn.Module):
    """Pooler + conv tower + predictor; ``loss`` in training and ``predict`` in inference (RoIHeads' extra head)."""

    def __init__(self, pooler: MultiScaleRoIPooler, in_channels: int, num_classes: int, config: MaskHeadConfig) -> None:
        super().__init__()
        self.pooler, self.config = pooler, config
        widths = (in_channels, *config.conv_layers)
        self.convs = nn.ModuleList(
            nn.Conv2d(w_in, w_out, 3, padding=config.dilation, dilation=config.dilation)
            for w_in, w_out in zip(widths, widths[1:])
        )
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.predictor = MaskPredictor(widths[-1], config.deconv_channels, num_classes)

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], batch: ImageBatch) -> Tensor:
        """Per-image boxes in batch pixels -> (R, num_classes, 28, 28) mask logits."""
        x = self.pooler(features, boxes, batch.padded_size)  # (R, C, 14, 14)
        for conv in self.convs:
            x = F.relu(conv(x))  # (R, 256, 14, 14)
        return self.predictor(x)  # (R, K, 28, 28)

    def loss(
        self, features: dict[str, Tensor], positives: PositiveRoIs, targets: list[dict[str, Tensor]], batch: ImageBatch
    ) -> dict[str, Tensor]:
        """{"loss_mask"}: each positive ROI against its matched object's mask, on that object's class."""
        logits = self.forward(features, positives.boxes, batch)  # (P, K, M, M)
        mask_targets = [
            project_masks(target["masks"], boxes, matched, logits.shape[-1])
            for target, boxes, matched in zip(targets, positives.boxes, positives.matched)
        ]  # per image (P_i, M, M)
        return {"loss_mask": mask_loss(logits, torch.cat(mask_targets), torch.cat(positives.labels))}

    @torch.no_grad()
    def predict(
        self, features: dict[str, Tensor], detections: list[dict[str, Tensor]], batch: ImageBatch
    ) -> list[dict[str, Tensor]]:
        """Adds "masks" (D, 1, M, M), the probability map of each detection's own class, to each image's dict."""
        logits = self.forward(features, [d["boxes"] for d in detections], batch)  # (D, K, M, M)
        labels = torch.cat([d["labels"] for d in detections])
        probabilities = logits[torch.arange(len(labels), device=labels.device), labels].sigmoid()[:, None]
        counts = [len(d["boxes"]) for d in detections]
        return [{**d, "masks": m} for d, m in zip(detections, probabilities.split(counts))]
