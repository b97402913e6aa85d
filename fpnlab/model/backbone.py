"""The bottom-up pathway (stage 1): a ResNet body returning C2..C5 (FPN paper, Sec. 3).

C_k is the output of the last residual block of stage k (conv2_x .. conv5_x), at stride 2^k:
4, 8, 16, 32. The torchvision ResNets are built by torchvision itself (with random weights unless
``pretrained``), so submodule names (conv1, bn1, layer1..layer4) and state dicts map one to one onto
torchvision's ``backbone.body``; ``resnet_tiny`` is a narrow net from the same BasicBlock for CPU runs.

Normalisation: "frozen_bn" (FrozenBatchNorm2d: fixed ImageNet statistics, for fine-tuning pretrained
weights and equality with torchvision), "bn" (BatchNorm that learns, for training from scratch with
reasonable batches) or "gn" (GroupNorm, batch-size independent, Wu & He 2018).

The C4 baseline with a conv5 head (FPN paper, Table 3 row a) hands layer4 over to its ROI head
(``split_conv5``): the body then stops at C4, and conv5 runs once per ROI instead of once per image.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import FrozenBatchNorm2d

from fpnlab.errors import FpnlabError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
TINY_WIDTHS = (32, 64, 128, 256)  # resnet_tiny: channels of C2..C5
TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")  # trainable_layers=k trains the first k


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The normalisation module for ``norm``: a function channels -> module."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(group_count(channels), channels)
    raise FpnlabError(f"norm must be 'frozen_bn', 'bn' or 'gn', got {norm!r}.")


def group_count(channels: int) -> int:
    """GroupNorm groups: 32 (the GN paper's default), fewer for narrow layers so a group has >= 4 channels."""
    return math.gcd(32, max(channels // 4, 1))


class ResNetBody(nn.Module):
    """ResNet without its classifier: forward((B, 3, H, W)) -> OrderedDict c2..c5 (strides 4, 8, 16, 32).

    ``trainable_layers`` (0..5) trains layer4, layer3, layer2, layer1, conv1 in that order, as in
    torchvision; None means 3 for "frozen_bn" (torchvision's fine-tuning default) and 5, everything,
    for "bn"/"gn" (training from scratch).
    """

    def __init__(
        self,
        name: str = "resnet50",
        norm: str = "frozen_bn",
        trainable_layers: int | None = None,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if trainable_layers is None:
            trainable_layers = 3 if norm == "frozen_bn" else 5
        if not 0 <= trainable_layers <= 5:
            raise FpnlabError(f"trainable_layers must be between 0 and 5, got {trainable_layers}.")
        net = _tiny_resnet(norm_layer(norm)) if name == "resnet_tiny" else _torchvision_resnet(name, norm)
        if pretrained:
            net.load_state_dict(_imagenet_state_dict(name, norm))
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.name, self.norm = name, norm
        self.out_channels = {f"c{k}": stage_width(layer) for k, layer in zip(range(2, 6), self._stages())}
        self.strides = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
        train = TRAINABLE_ORDER[:trainable_layers] + (("bn1",) if trainable_layers == 5 else ())
        for param_name, param in self.named_parameters():
            param.requires_grad_(param_name.split(".")[0] in train)

    def _stages(self) -> list[nn.Module]:
        return [stage for stage in (self.layer1, self.layer2, self.layer3, self.layer4) if stage is not None]

    def split_conv5(self) -> nn.Sequential:
        """Remove layer4 (conv5_x, with its weights) and return it, for a conv5 ROI head: the body then
        computes C2..C4 only."""
        conv5, self.layer4 = self.layer4, None
        del self.out_channels["c5"], self.strides["c5"]
        return conv5

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        # BEGIN UNIT backbone
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # (B, 64, H/4, W/4): the stem
        features = OrderedDict()
        for k, stage in zip(range(2, 6), self._stages()):
            x = stage(x)  # (B, C_k, H/2^k, W/2^k)
            features[f"c{k}"] = x
        return features
        # END UNIT backbone


def _torchvision_resnet(name: str, norm: str) -> torchvision.models.ResNet:
    if name not in RESNETS:
        raise FpnlabError(f"backbone must be one of {RESNETS + ('resnet_tiny',)}, got {name!r}.")
    return getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer(norm))


def _tiny_resnet(norm: Callable[[int], nn.Module]) -> nn.Module:
    """A narrow ResNet: torchvision's stem and one BasicBlock per stage, widths TINY_WIDTHS."""
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, TINY_WIDTHS[0], 7, stride=2, padding=3, bias=False)
    net.bn1, net.relu, net.maxpool = norm(TINY_WIDTHS[0]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
    in_width = TINY_WIDTHS[0]
    for i, width in enumerate(TINY_WIDTHS):
        stride = 1 if i == 0 else 2
        downsample = None
        if stride != 1 or in_width != width:
            downsample = nn.Sequential(nn.Conv2d(in_width, width, 1, stride=stride, bias=False), norm(width))
        setattr(net, f"layer{i + 1}", nn.Sequential(BasicBlock(in_width, width, stride, downsample, norm_layer=norm)))
        in_width = width
    for module in net.modules():  # torchvision's ResNet init
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net


def stage_width(stage: nn.Sequential) -> int:
    """Output channels of a ResNet stage: those of its last block's last norm layer."""
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).weight.shape[0]


def _imagenet_state_dict(name: str, norm: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``name`` (IMAGENET1K_V1, as torchvision's Faster R-CNN uses)."""
    if name == "resnet_tiny":
        raise FpnlabError("pretrained=True: there are no ImageNet weights for 'resnet_tiny'; use pretrained=False.")
    if norm == "gn":
        raise FpnlabError("pretrained=True: ImageNet weights have BatchNorm statistics; use norm='frozen_bn' or 'bn'.")
    weights = torchvision.models.get_weight(f"{name.replace('resnet', 'ResNet')}_Weights.IMAGENET1K_V1")
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a truncated file a RuntimeError
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise FpnlabError(
            f"pretrained=True: the ImageNet weights for {name} could not be downloaded from {weights.url} "
            f"({error}); connect to the internet, or copy that file to {cache}, or train from scratch with "
            f"pretrained=False and norm='bn' or 'gn'."
        ) from error
