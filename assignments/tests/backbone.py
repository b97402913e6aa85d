"""Unit 'backbone': the bottom-up pathway's C2..C5, fpnlab/backbone.py `ResNetBody.forward`.

Expected values: shapes worked out by hand (strides 4, 8, 16, 32, sides rounded up), and torchvision's
IntermediateLayerGetter running the same layers.
"""

import torch
from otter.test_files import test_case
from torchvision.models._utils import IntermediateLayerGetter

from fpnlab import grading as units
from fpnlab.model import backbone

OK_FORMAT = False
name = "backbone"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret
LAYERS = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}


def body_and_images(net, norm, size, seed, dtype=torch.float32):
    torch.manual_seed(seed)
    body = units.build(backbone.ResNetBody, net, norm=norm)  # rebuilt with these weights in the unit's process
    body.obj.eval().to(device=units.DEVICE, dtype=dtype)
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(units.DEVICE)
    return body, images


def expect_features(got, expected, what):
    if not isinstance(got, dict) or list(got) != ["c2", "c3", "c4", "c5"]:
        raise AssertionError(
            f"{what}: expected a dict with keys c2, c3, c4, c5 in that order, got "
            f"{list(got) if isinstance(got, dict) else type(got).__name__}."
        )
    for key in got:
        units.expect_close(got[key], expected[key], f"{what}, {key}")


@test_case(name="by hand: resnet_tiny on a 64 x 96 batch gives C2..C5 of 16 x 24 .. 2 x 3, widths 32..256")
def shapes_by_hand():
    body, images = body_and_images("resnet_tiny", "bn", (64, 96), seed=0)
    got = units.run("backbone", body, images)
    shapes = {"c2": (2, 32, 16, 24), "c3": (2, 64, 8, 12), "c4": (2, 128, 4, 6), "c5": (2, 256, 2, 3)}
    got_shapes = {k: tuple(v.shape) for k, v in got.items()} if isinstance(got, dict) else type(got).__name__
    if got_shapes != shapes:
        raise AssertionError(f"C2..C5 shapes: got {got_shapes}, expected {shapes}.")


@test_case(name="resnet_tiny's C2..C5 against torchvision's IntermediateLayerGetter")
def values_against_torchvision():
    body, images = body_and_images("resnet_tiny", "bn", (64, 96), seed=1)
    got = units.run("backbone", body, images)
    with torch.no_grad():
        expected = IntermediateLayerGetter(body.obj, LAYERS)(images)
    expect_features(got, expected, "C2..C5 of resnet_tiny")


@test_case(name="resnet18 (frozen BatchNorm) on an odd, non-square 65 x 97 batch", hidden=True)
def resnet18_odd_size():
    body, images = body_and_images("resnet18", "frozen_bn", (65, 97), seed=SEED + 2)
    got = units.run("backbone", body, images)
    with torch.no_grad():
        expected = IntermediateLayerGetter(body.obj, LAYERS)(images)
    expect_features(got, expected, "C2..C5 of resnet18 at 65 x 97")


@test_case(name="float64 weights and images, GroupNorm", hidden=True)
def float64_group_norm():
    body, images = body_and_images("resnet_tiny", "gn", (40, 72), seed=SEED + 3, dtype=torch.float64)
    got = units.run("backbone", body, images)
    with torch.no_grad():
        expected = IntermediateLayerGetter(body.obj, LAYERS)(images)
    expect_features(got, expected, "float64 C2..C5")
