"""Stage 2: the FPN neck and its Table 1 variants, by hand and against torchvision's FeaturePyramidNetwork."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from fpnlab.errors import FpnlabError
from fpnlab.model.fpn import FPN, SingleScaleNeck, load_torchvision_fpn, torchvision_fpn_state

IN_CHANNELS = [8, 16, 24, 32]


def bottom_up(height: int, width: int, seed: int = 0, batch: int = 2) -> OrderedDict:
    """Random C2..C5 with a ResNet's sizes for a (height, width) image (each stride-2 stage rounds up)."""
    gen = torch.Generator().manual_seed(seed)
    features, h, w = OrderedDict(), height, width
    for k, c in zip(range(2, 6), IN_CHANNELS):
        h, w = (-(-h // 4), -(-w // 4)) if k == 2 else (-(-h // 2), -(-w // 2))
        features[f"c{k}"] = torch.randn(batch, c, h, w, generator=gen)
    return features


def randomise(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def identity_fpn() -> FPN:
    """One channel, every 1x1 conv the identity, every 3x3 conv the identity: P shows the raw sums."""
    fpn = FPN([1, 1, 1, 1], out_channels=1)
    with torch.no_grad():
        for conv in fpn.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.zero_()
                conv.weight[0, 0, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] = 1.0
    return fpn


def test_known_answer_top_down_sum():
    c = OrderedDict(
        [
            ("c2", torch.full((1, 1, 8, 8), 1000.0)),
            ("c3", torch.full((1, 1, 4, 4), 100.0)),
            ("c4", torch.full((1, 1, 2, 2), 10.0)),
            ("c5", torch.tensor([[[[1.0]]]])),
        ]
    )
    p = identity_fpn()(c)
    # P_k = C_k + upsampled P_{k+1}: 1, 11, 111, 1111 everywhere; P6 = P5 subsampled by 2
    assert [v.unique().tolist() for v in p.values()] == [[1111.0], [111.0], [11.0], [1.0], [1.0]]
    assert [tuple(v.shape[-2:]) for v in p.values()] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    bottom_up_only = identity_fpn()
    bottom_up_only.top_down = False  # same weights, row (d) wiring
    assert [v.unique().tolist() for v in bottom_up_only(c).values()] == [[1000.0], [100.0], [10.0], [1.0], [1.0]]


@pytest.mark.parametrize("size", [(64, 64), (100, 75), (33, 47), (224, 320)])
def test_equals_torchvision_feature_pyramid_network(size):
    theirs = FeaturePyramidNetwork(IN_CHANNELS, 16, extra_blocks=LastLevelMaxPool())
    randomise(theirs, seed=1)  # non-zero biases too
    ours = load_torchvision_fpn(FPN(IN_CHANNELS, 16), theirs)
    c = bottom_up(*size)
    expected = theirs(OrderedDict((str(i), x) for i, x in enumerate(c.values())))  # keys 0..3, pool
    got = ours(c)
    assert list(got) == ["p2", "p3", "p4", "p5", "p6"]
    for a, b in zip(got.values(), expected.values()):
        assert torch.equal(a, b)


def test_shapes_strides_and_channels():
    fpn = FPN(IN_CHANNELS)
    p = fpn(bottom_up(128, 96))
    assert fpn.out_channels == 256
    assert fpn.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    for name, x in p.items():  # sizes round up: P5 is 3 wide, so P6 is 2
        assert x.shape == (2, 256, -(-128 // fpn.strides[name]), -(-96 // fpn.strides[name]))


def changed(fpn: FPN, level: str) -> list[str]:
    """Which outputs change when input ``level`` changes."""
    c = bottom_up(64, 64)
    before = fpn(c)
    c[level] = c[level] + 1.0
    after = fpn(c)
    return [name for name in before if not torch.equal(before[name], after[name])]


def test_information_flow_of_each_variant():
    torch.manual_seed(0)
    assert changed(FPN(IN_CHANNELS), "c2") == ["p2"]  # row (c): C2 only reaches P2
    assert changed(FPN(IN_CHANNELS), "c5") == ["p2", "p3", "p4", "p5", "p6"]  # C5 reaches everything
    assert changed(FPN(IN_CHANNELS, top_down=False), "c5") == ["p5", "p6"]  # row (d): no top-down
    assert changed(FPN(IN_CHANNELS, top_down=False), "c3") == ["p3"]
    assert changed(FPN(IN_CHANNELS, lateral=False), "c3") == []  # row (e): only C5 is used
    assert changed(FPN(IN_CHANNELS, lateral=False), "c5") == ["p2", "p3", "p4", "p5", "p6"]


def test_top_down_only_is_upsampled_c5():
    fpn = FPN(IN_CHANNELS, 16, lateral=False)
    assert sorted(fpn.lateral) == ["3"]  # one 1x1 conv, on C5
    c = bottom_up(64, 64)
    m5 = fpn.lateral["3"](c["c5"])  # (2, 16, 2, 2)
    expected_p2 = fpn.smooth["0"](F.interpolate(m5, scale_factor=8, mode="nearest"))
    torch.testing.assert_close(fpn(c)["p2"], expected_p2, rtol=0, atol=1e-6)


def test_out_levels_subset_equals_full_pyramid_and_builds_only_what_it_needs():
    full = FPN(IN_CHANNELS, 16)
    p2_only = FPN(IN_CHANNELS, 16, out_levels=("p2",))  # row (f)
    assert sorted(p2_only.smooth) == ["0"] and sorted(p2_only.lateral) == ["0", "1", "2", "3"]
    missing, unexpected = p2_only.load_state_dict(full.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == [f"smooth.{i}.{p}" for i in (1, 2, 3) for p in ("bias", "weight")]
    c = bottom_up(96, 64)
    out = p2_only(c)
    assert list(out) == ["p2"] and p2_only.strides == {"p2": 4}
    assert torch.equal(out["p2"], full(c)["p2"])
    p6_only = FPN(IN_CHANNELS, 16, top_down=False, out_levels=("p6",))
    assert sorted(p6_only.lateral) == ["3"] and sorted(p6_only.smooth) == ["3"]
    # top-down P3 and P4 need M3..M5 (not C2's lateral); bottom-up P3 needs C3's lateral alone
    middle = FPN(IN_CHANNELS, 16, out_levels=("p3", "p4"))
    assert sorted(middle.lateral) == ["1", "2", "3"] and sorted(middle.smooth) == ["1", "2"]
    p3_bottom_up = FPN(IN_CHANNELS, 16, top_down=False, out_levels=("p3",))
    assert sorted(p3_bottom_up.lateral) == ["1"] and sorted(p3_bottom_up.smooth) == ["1"]


def test_convs_start_like_torchvisions_fpn():
    """kaiming_uniform_(a=1): weights uniform in +-sqrt(3 / fan_in), biases zero."""
    torch.manual_seed(0)
    for neck in (FPN([64, 64, 64, 64], 64), SingleScaleNeck(64, "c4", out_channels=64)):
        for conv in neck.modules():
            if isinstance(conv, torch.nn.Conv2d):
                fan_in = conv.weight[0].numel()
                bound = (3 / fan_in) ** 0.5
                assert 0.95 * bound < conv.weight.abs().max() <= bound
                assert torch.count_nonzero(conv.bias) == 0


def test_single_scale_neck():
    c = bottom_up(64, 96)
    for source, stride in (("c4", 16), ("c5", 32)):
        neck = SingleScaleNeck({"c2": 8, "c3": 16, "c4": 24, "c5": 32}, source=source)
        out = neck(c)
        assert list(out) == [source] and neck.strides == {source: stride} and neck.out_channels == 256
        assert out[source].shape == (2, 256, -(-64 // stride), -(-96 // stride))
        assert torch.allclose(out[source], neck.reduce(c[source]))
    assert SingleScaleNeck(24, "c4").reduce.in_channels == 24
    assert SingleScaleNeck({"c4": 24, "c5": 32}).source == "c4"  # the C4 baseline by default


def test_torchvision_key_mapping():
    state = {"inner_blocks.2.0.weight": 1, "layer_blocks.0.0.bias": 2, "other.weight": 3}
    assert torchvision_fpn_state(state) == {"lateral.2.weight": 1, "smooth.0.bias": 2}
    prefixed = {"backbone.fpn.inner_blocks.2.0.weight": 1, "backbone.fpn.layer_blocks.0.0.bias": 2, "rpn.x": 3}
    assert torchvision_fpn_state(prefixed, prefix="backbone.fpn.") == {"lateral.2.weight": 1, "smooth.0.bias": 2}


def test_bad_configuration():
    with pytest.raises(FpnlabError, match="out_levels"):
        FPN(IN_CHANNELS, out_levels=("p7",))
    with pytest.raises(FpnlabError, match="out_levels"):
        FPN(IN_CHANNELS, out_levels=())
    with pytest.raises(FpnlabError, match="in_channels"):
        FPN(IN_CHANNELS[1:])
    with pytest.raises(FpnlabError, match="^FPN needs top_down=True or lateral=True: without both"):
        FPN(IN_CHANNELS, top_down=False, lateral=False)
    with pytest.raises(FpnlabError, match="source"):
        SingleScaleNeck(24, source="c3")
