"""The conv5 ROI head (stage 6 of the single-scale baseline): the ResNet's fifth stage, run on every ROI.

FPN paper, Table 3 row (a): the C4 Faster R-CNN of the ResNet paper (He et al., 2016) has no fully connected
hidden layers. Its backbone stops at C4, and the ResNet's conv5 stage (layer4: three bottleneck blocks in ResNet-50)
becomes the ROI head, shared by all classes:

    C4 (B, 1024, H/16, W/16) --RoIAlign 14 x 14--> (R, 1024, 14, 14) --conv5, first block stride 2-->
    (R, 2048, 7, 7) --average over the 7 x 7 grid--> (R, 2048) --FastRCNNPredictor--> scores, box deltas

(ResNet-50's widths; resnet_tiny's are 128 and 256.) conv5 then runs once per ROI instead of once per
image: ~1.6 GFLOPs per ROI for ResNet-50, against ~0.03 for FPN's 2fc head on 256 x 7 x 7 features,
which is why FPN calls its head "lighter and faster" (benchmarks/head_speed.py measures both).

The weights are the backbone's own (ImageNet's when pretrained): ``ResNetBody.split_conv5`` hands layer4
over, with the backbone's normalisation (frozen, BatchNorm or GroupNorm). Like every head, it trains.
``RoIHeads`` uses it as its ``box_head``, in place of ``TwoMLPHead``; nothing else changes.
"""

from __future__ import annotations

from torch import Tensor, nn

from fpnlab.model.backbone import stage_width


class Res5Head(nn.Module):
    """(R, C4 channels, 14, 14) pooled C4 features -> (R, C5 channels): conv5, then the average over its grid.

    ``conv5``: a ResNet's layer4 (from ``ResNetBody.split_conv5``); ``out_features`` is its width.
    """

    def __init__(self, conv5: nn.Sequential) -> None:
        super().__init__()
        self.layer4 = conv5  # the name it has in the backbone, so its weights are recognisable
        self.out_features = stage_width(conv5)  # 2048 for ResNet-50, 256 for resnet_tiny
        self.layer4.requires_grad_(True)  # a head trains, whatever the backbone's trainable_layers

    def forward(self, pooled: Tensor) -> Tensor:
        x = self.layer4(pooled)  # (R, 2048, 7, 7): the first block's stride 2 halves the 14 x 14 grid
        return x.mean(dim=(2, 3))  # (R, 2048): average pooling, the ResNet classifier's pooling
