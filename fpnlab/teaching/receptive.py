"""Receptive fields: how many input pixels one cell of a feature map can see.

A chain of convolutions and poolings with kernel sizes k_i and strides s_i sees

    r = 1 + sum_i (k_i - 1) * j_i,      j_i = s_1 * s_2 * ... * s_(i-1)   (the "jump" before layer i)

pixels along each axis. A ResNet's residual shortcuts add nothing wider than the main path, so the
main path's convolutions alone give the receptive field of C2..C5. The FPN's 3x3 smoothing and the
RPN's 3x3 conv each add 2 x stride on top, which is why the paper's lesson depends on object size at
the network input (notebook 08):

    receptive_fields(ResNetBody("resnet_tiny"))   # {"c2": 27, "c3": 51, "c4": 99, "c5": 195}
    receptive_fields(ResNetBody("resnet50"))      # {"c2": 35, "c3": 91, "c4": 267, "c5": 427}
"""

from __future__ import annotations

from torch import nn

from fpnlab.model.backbone import ResNetBody


def _pair_first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def grow(field: int, jump: int, layer: nn.Module) -> tuple[int, int]:
    """(receptive field, jump) after one conv or pooling layer."""
    kernel, stride = _pair_first(layer.kernel_size), _pair_first(layer.stride)
    return field + (kernel - 1) * jump, jump * stride


def main_path(body: ResNetBody) -> list[tuple[str, str, nn.Module]]:
    """Every convolution and pooling of the main path, in order: (stage "c2".."c5", layer name, layer); the
    stem's conv1 and max pool count towards C2."""
    layers = [("c2", "conv1", body.conv1), ("c2", "maxpool", body.maxpool)]
    for k, stage in zip(range(2, 6), (body.layer1, body.layer2, body.layer3, body.layer4)):
        for b, block in enumerate(stage):
            for (
                name,
                layer,
            ) in block.named_children():  # conv1, bn1, conv2, ... in forward order (downsample: a shortcut)
                if isinstance(layer, nn.Conv2d):
                    layers.append((f"c{k}", f"layer{k - 1}.{b}.{name}", layer))
    return layers


def receptive_fields(body: ResNetBody) -> dict[str, int]:
    """The receptive field of C2..C5 of a ResNet body, in input pixels (main path of every block)."""
    field, jump, fields = 1, 1, {}
    for stage, _, layer in main_path(body):
        field, jump = grow(field, jump, layer)
        fields[stage] = field
    return fields


def with_3x3_convs(field: int, stride: int, convs: int) -> int:
    """The receptive field after `convs` more 3x3 convolutions on a map of this stride (FPN smoothing, RPN head)."""
    return field + convs * 2 * stride
