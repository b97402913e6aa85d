"""Unit 'fpn': the top-down pathway and lateral connections, P2..P6, fpnlab/fpn.py `FPN.forward`.

Expected values: torchvision's FeaturePyramidNetwork (with LastLevelMaxPool for P6) holding the same
weights, and, for the ablations torchvision has no switch for, the paper's definitions worked out here
with the module's own convolutions: no top-down, P_k = smooth_k(lateral_k(C_k)); no lateral, M5 =
lateral_5(C5), M_k = M_{k+1} upsampled (nearest) to C_k's size, P_k = smooth_k(M_k).
"""

import torch
import torch.nn.functional as F
from otter.test_files import test_case
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from fpnlab import grading as units
from fpnlab.model import fpn

OK_FORMAT = False
name = "fpn"
points = 4
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret
CHANNELS = [8, 12, 16, 20]  # C2..C5


def features(sides, seed, dtype=torch.float32):
    """Random C2..C5 of the given (height, width) each."""
    gen = torch.Generator().manual_seed(seed)
    return {
        f"c{k + 2}": torch.randn(2, c, h, w, generator=gen, dtype=dtype).to(units.DEVICE)
        for k, (c, (h, w)) in enumerate(zip(CHANNELS, sides))
    }


def pair(seed, dtype=torch.float32, **switches):
    """Our FPN and torchvision's, the same weights in both."""
    torch.manual_seed(seed)
    theirs = FeaturePyramidNetwork(CHANNELS, 6, extra_blocks=LastLevelMaxPool()).to(units.DEVICE, dtype)
    ours = units.build(fpn.FPN, CHANNELS, 6, **switches)  # rebuilt with these weights in the unit's process
    ours.obj.to(units.DEVICE, dtype).load_state_dict(fpn.torchvision_fpn_state(theirs.state_dict()), strict=False)
    return ours, theirs


def expect_levels(got, expected, what):
    if not isinstance(got, dict) or list(got) != list(expected):
        raise AssertionError(
            f"{what}: expected a dict with keys {', '.join(expected)} in that order, got "
            f"{list(got) if isinstance(got, dict) else type(got).__name__}."
        )
    for key in expected:
        units.expect_close(got[key], expected[key], f"{what}, {key}")


def torchvision_levels(theirs, given):
    return dict(zip(["p2", "p3", "p4", "p5", "p6"], theirs(dict(given)).values()))


@test_case(name="FPN, P2..P6, against torchvision's FeaturePyramidNetwork on a 64 x 96 input's C2..C5")
def full_against_torchvision():
    ours, theirs = pair(seed=0)
    given = features([(16, 24), (8, 12), (4, 6), (2, 3)], seed=1)
    got = units.run("fpn", ours, given)
    with torch.no_grad():
        expected = torchvision_levels(theirs, given)
    expect_levels(got, expected, "P2..P6")


@test_case(name="no top-down pathway (Table 1 row d): P_k = smooth(lateral(C_k)), P6 pooled from P5")
def no_top_down_by_hand():
    ours, _ = pair(seed=2, top_down=False)
    given = features([(16, 24), (8, 12), (4, 6), (2, 3)], seed=3)
    got = units.run("fpn", ours, given)
    with torch.no_grad():
        c = list(given.values())
        expected = {f"p{i + 2}": ours.obj.smooth[str(i)](ours.obj.lateral[str(i)](c[i])) for i in range(4)}
        expected["p6"] = F.max_pool2d(expected["p5"], kernel_size=1, stride=2)
    expect_levels(got, expected, "P2..P6 without the top-down pathway")


@test_case(name="no lateral connections (Table 1 row e) on odd sizes", hidden=True)
def no_lateral_by_hand():
    ours, _ = pair(seed=SEED + 4, lateral=False)
    given = features([(17, 25), (9, 13), (5, 7), (3, 4)], seed=SEED + 5)
    got = units.run("fpn", ours, given)
    with torch.no_grad():
        c = list(given.values())
        m = {3: ours.obj.lateral["3"](c[3])}
        for i in (2, 1, 0):
            m[i] = F.interpolate(m[i + 1], size=c[i].shape[-2:], mode="nearest")
        expected = {f"p{i + 2}": ours.obj.smooth[str(i)](m[i]) for i in range(4)}
        expected["p6"] = F.max_pool2d(expected["p5"], kernel_size=1, stride=2)
    expect_levels(got, expected, "P2..P6 without lateral connections")


@test_case(name="odd, non-square C2..C5 (a 65 x 97 input) against torchvision, float64", hidden=True)
def odd_sizes_float64():
    ours, theirs = pair(seed=SEED + 6, dtype=torch.float64)
    given = features([(17, 25), (9, 13), (5, 7), (3, 4)], seed=SEED + 7, dtype=torch.float64)
    got = units.run("fpn", ours, given)
    with torch.no_grad():
        expected = torchvision_levels(theirs, given)
    expect_levels(got, expected, "float64 P2..P6")


@test_case(name="only some levels: P2 alone (Table 1 row f), and P4..P6", hidden=True)
def level_subsets():
    given = features([(16, 24), (8, 12), (4, 6), (2, 3)], seed=SEED + 9)
    for levels in (("p2",), ("p4", "p5", "p6")):
        ours, theirs = pair(seed=SEED + 8, out_levels=levels)
        got = units.run("fpn", ours, given)
        with torch.no_grad():
            expected = {k: v for k, v in torchvision_levels(theirs, given).items() if k in levels}
        expect_levels(got, expected, f"levels {', '.join(levels)}")
