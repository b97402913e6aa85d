"""Stage 5: RoIAlign / RoIPool reference vs torchvision kernels, and multi-scale pooling vs MultiScaleRoIAlign."""

from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.ops import MultiScaleRoIAlign

from fpnlab.errors import FpnlabError
from fpnlab.model.poolers import (
    MultiScaleRoIPooler,
    as_rois,
    roi_align,
    roi_align_reference,
    roi_pool,
    roi_pool_reference,
)
from fpnlab.switch import use_reference_ops


def random_rois(n: int, batch: int, extent: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """(n, 5) rois, some reaching up to 20 px outside the image."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor(extent) - 20
    wh = torch.rand(n, 2, generator=gen) * 0.6 * torch.tensor(extent)
    index = torch.randint(0, batch, (n, 1), generator=gen).float()
    return torch.cat([index, xy, xy + wh], dim=1)


def test_roi_align_known_answer():
    # A linear ramp f(y, x) = x: bilinear sampling is exact, so a bin's average is its centre's x.
    features = torch.arange(8.0).repeat(8, 1)[None, None]  # (1, 1, 8, 8)
    rois = torch.tensor([[0.0, 1.0, 1.0, 5.0, 3.0]])  # x from 1 to 5: two bins centred at x = 2 and 4
    for fn in (roi_align, roi_align_reference):
        out = fn(features, rois, (1, 2), spatial_scale=1.0, sampling_ratio=2, aligned=False)
        assert out.flatten().tolist() == [2.0, 4.0]
        out = fn(features, rois, (1, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
        assert out.flatten().tolist() == [1.5, 3.5]  # aligned shifts the box by half a pixel


def test_roi_pool_known_answer():
    features = torch.arange(16.0).view(1, 1, 4, 4)  # row r holds 4r .. 4r + 3
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]])  # the whole 4 x 4 map, 2 x 2 bins of 2 x 2 pixels
    for fn in (roi_pool, roi_pool_reference):
        assert fn(features, rois, 2).flatten().tolist() == [5.0, 7.0, 13.0, 15.0]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_roi_align_reference_equals_torchvision(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(sampling_ratio + 10 * aligned)
    features = torch.randn(2, 6, 23, 31, generator=gen)  # odd sizes
    rois = random_rois(60, 2, (31 * 4.0, 23 * 4.0), gen)
    for scale in (0.25, 0.5, 1.0):
        expected = torchvision.ops.roi_align(features, rois, (7, 5), scale, sampling_ratio, aligned)
        ours = roi_align_reference(features, rois, (7, 5), scale, sampling_ratio, aligned)
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_float64_and_the_defaults_match_torchvision():
    """In float64 every sample position is computed in float64 too (no float32 step), and the defaults are
    torchvision's: spatial_scale 1, adaptive sampling, aligned False."""
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(1, 3, 17, 13, generator=gen, dtype=torch.float64)
    rois = random_rois(40, 1, (13.0, 17.0), gen).double()
    rois[:, 1:] = rois[:, 1:] / 3 + 1 / 3  # thirds of a pixel: not exact in float32
    expected = torchvision.ops.roi_align(features, rois, (4, 3), 1.0, -1, False)
    for fn in (roi_align, roi_align_reference):
        torch.testing.assert_close(fn(features, rois, (4, 3)), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        roi_align_reference(features, rois, (4, 3), sampling_ratio=2),
        torchvision.ops.roi_align(features, rois, (4, 3), 1.0, 2, False),
        rtol=0,
        atol=1e-12,
    )
    with use_reference_ops():
        assert torch.equal(roi_pool(features, rois, 3, 0.5), torchvision.ops.roi_pool(features, rois, 3, 0.5))
        torch.testing.assert_close(
            roi_align(features, rois, 2, 0.5, 2, True),
            torchvision.ops.roi_align(features, rois, 2, 0.5, 2, True),
            rtol=0,
            atol=1e-12,
        )


def test_roi_pool_reference_equals_torchvision():
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(2, 6, 23, 31, generator=gen)
    rois = random_rois(60, 2, (31 * 4.0, 23 * 4.0), gen)
    for scale in (0.25, 0.3, 1.0):
        expected = torchvision.ops.roi_pool(features, rois, (7, 5), scale)
        assert torch.equal(roi_pool_reference(features, rois, (7, 5), scale), expected)


def test_switch_selects_reference(monkeypatch):
    def broken(*args, **kwargs):
        raise AssertionError("kernel called")

    monkeypatch.setattr(torchvision.ops, "roi_align", broken)
    monkeypatch.setattr(torchvision.ops, "roi_pool", broken)
    features, rois = torch.randn(1, 2, 8, 8), torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]])
    with use_reference_ops():
        assert roi_align(features, rois, 2).shape == (1, 2, 2, 2)
        assert roi_pool(features, rois, 2).shape == (1, 2, 2, 2)
    with pytest.raises(AssertionError, match="kernel called"):
        roi_align(features, rois, 2)


def test_rois_from_list_and_bad_rois():
    boxes = [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4), torch.tensor([[5.0, 6.0, 7.0, 8.0]] * 2)]
    assert as_rois(boxes)[:, 0].tolist() == [0.0, 2.0, 2.0]
    with pytest.raises(FpnlabError, match=r"^boxes of image 1 has 1 box\(es\) with x2 < x1"):
        as_rois([torch.zeros(0, 4), torch.tensor([[5.0, 0.0, 1.0, 4.0]])])
    with pytest.raises(FpnlabError, match=r"^rois has 1 box\(es\) with x2 < x1"):
        as_rois(torch.tensor([[0.0, 5.0, 0.0, 1.0, 4.0]]))
    assert as_rois([torch.ones(1, 4, dtype=torch.float64)]).dtype == torch.float64
    with pytest.raises(FpnlabError, match=r"\(K, 5\)"):
        roi_align(torch.randn(1, 1, 4, 4), torch.zeros(3, 4), 2)


def pyramid(batch: int, height: int, width: int, gen: torch.Generator) -> OrderedDict:
    """Random P2..P6 for a (height, width) padded batch (multiples of 32)."""
    return OrderedDict(
        (f"p{k}", torch.randn(batch, 4, height // 2**k, width // 2**k, generator=gen)) for k in range(2, 7)
    )


def random_proposals(n: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * 0.9
    wh = torch.rand(n, 2, generator=gen) ** 2 * torch.tensor([width, height]) + 1  # many small boxes
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("image_sizes", [[(224, 320)], [(448, 320), (417, 301)], [(800, 1216)]])
@pytest.mark.parametrize("reference", [False, True])
def test_multiscale_pooler_equals_torchvision(image_sizes, reference):
    gen = torch.Generator().manual_seed(len(image_sizes))
    height = max(h for h, _ in image_sizes) // 32 * 32 + 32 * bool(max(h for h, _ in image_sizes) % 32)
    width = max(w for _, w in image_sizes) // 32 * 32 + 32 * bool(max(w for _, w in image_sizes) % 32)
    features = pyramid(len(image_sizes), height, width, gen)
    proposals = [random_proposals(50, h, w, gen) for h, w in image_sizes]
    theirs = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)(features, proposals, image_sizes)
    with use_reference_ops(reference):
        ours = MultiScaleRoIPooler()(features, proposals, (height, width))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert ours.shape == (100 if len(image_sizes) == 2 else 50, 4, 7, 7)


def test_multiscale_pooler_levels_and_single_level():
    gen = torch.Generator().manual_seed(0)
    features = pyramid(1, 256, 256, gen)
    boxes = [torch.tensor([[0.0, 0.0, 224.0, 224.0], [10.0, 10.0, 122.0, 122.0], [0.0, 0.0, 10.0, 10.0]])]
    pooler = MultiScaleRoIPooler()
    assert [k.tolist() for k in pooler.levels_of(boxes)] == [[4, 3, 2]]
    out = pooler(features, boxes, (256, 256))
    # the 224 box comes from P4 (scale 1/16) exactly as a direct RoIAlign on P4 would give
    direct = torchvision.ops.roi_align(features["p4"], [boxes[0][:1]], 7, 1 / 16, 2, False)
    assert torch.equal(out[:1], direct)
    single = MultiScaleRoIPooler(levels=("p2",))
    assert [k.tolist() for k in single.levels_of(boxes)] == [[2, 2, 2]]
    direct = torchvision.ops.roi_align(features["p2"], boxes, 7, 1 / 4, 2, False)
    assert torch.equal(single(features, boxes, (256, 256)), direct)


def test_multiscale_roipool_mode():
    gen = torch.Generator().manual_seed(1)
    features = pyramid(1, 256, 256, gen)
    boxes = [random_proposals(30, 256, 256, gen)]
    ours = MultiScaleRoIPooler(mode="pool")(features, boxes, (256, 256))
    levels = MultiScaleRoIPooler().levels_of(boxes)[0]
    for k in (2, 3, 4, 5):
        index = torch.where(levels == k)[0]
        expected = torchvision.ops.roi_pool(features[f"p{k}"], [boxes[0][index]], 7, 1 / 2**k)
        assert torch.equal(ours[index], expected)


def test_multiscale_pooler_bad_configuration():
    with pytest.raises(FpnlabError, match="mode"):
        MultiScaleRoIPooler(mode="max")
    with pytest.raises(FpnlabError, match="consecutive"):
        MultiScaleRoIPooler(levels=("p2", "p4"))
    with pytest.raises(FpnlabError, match="level number"):
        MultiScaleRoIPooler(levels=("0", "1"))
    features = pyramid(1, 256, 256, torch.Generator().manual_seed(0))
    with pytest.raises(FpnlabError) as err:
        MultiScaleRoIPooler()(features, [torch.tensor([[0.0, 0.0, 5.0, 5.0]])], (1024, 768))
    assert str(err.value) == (
        "feature 'p2' is 64 rows high for an image 1024 rows high, which is not stride 4; "
        "pass the padded batch size as image_size."
    )


@pytest.mark.parametrize("reference", [False, True])
def test_multiscale_pooler_images_without_proposals(reference):
    features = pyramid(2, 64, 64, torch.Generator().manual_seed(2))
    boxes = [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 30.0, 20.0]])]
    with use_reference_ops(reference):
        out = MultiScaleRoIPooler()(features, boxes, (64, 64))
        empty = MultiScaleRoIPooler()(features, [torch.zeros(0, 4)] * 2, (64, 64))
    expected = torchvision.ops.roi_align(features["p2"], boxes, 7, 1 / 4, 2, False)  # a small box: P2
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert empty.shape == (0, 4, 7, 7)


def test_no_images_or_no_proposals_give_an_empty_result():
    pooler = MultiScaleRoIPooler()
    features = {f"p{k}": torch.rand(0, 4, 64 // 2**k, 64 // 2**k) for k in range(2, 6)}
    assert tuple(pooler(features, [], (64, 64)).shape) == (0, 4, 7, 7)
    features = {f"p{k}": torch.rand(1, 4, 64 // 2**k, 64 // 2**k) for k in range(2, 6)}
    assert tuple(pooler(features, [torch.zeros(0, 4)], (64, 64)).shape) == (0, 4, 7, 7)
