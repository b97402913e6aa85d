"""Stage 3: anchors, by hand and against torchvision's AnchorGenerator."""

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from fpnlab.errors import FpnlabError
from fpnlab.model.anchors import CACHE_SIZE, AnchorGenerator


def torchvision_anchors(sizes, ratios, image_size, feature_sizes, dtype=torch.float32):
    images = ImageList(torch.zeros(1, 3, *image_size, dtype=dtype), [image_size])
    features = [torch.zeros(1, 1, h, w, dtype=dtype) for h, w in feature_sizes]
    return TvAnchorGenerator(sizes, ratios)(images, features)[0]


def fpn_feature_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """P2..P6 sizes of a padded (multiple of 32) image, as the FPN produces them (P6 = ceil(P5 / 2))."""
    sizes = [(height // 2**k, width // 2**k) for k in range(2, 6)]
    return sizes + [((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2)]


def test_known_answer_cell_anchors_and_first_locations():
    generator = AnchorGenerator()
    # P2, size 32: ratio 1:1 -> 32 x 32; ratio 0.5 (h/w) -> w = 32 / sqrt(.5) = 45.25, h = 22.63, halves rounded
    assert generator.cell_anchors(0).tolist() == [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]]
    anchors = generator.grid_anchors((64, 96), fpn_feature_sizes(64, 96))
    assert [len(a) for a in anchors] == [16 * 24 * 3, 8 * 12 * 3, 4 * 6 * 3, 2 * 3 * 3, 1 * 2 * 3]
    # P3, size 64: halves (45.25, 22.63) round to (45, 23); the second location is 8 px (the stride) right
    assert anchors[1][3:6].tolist() == [
        [-37.0, -23.0, 53.0, 23.0],
        [-24.0, -32.0, 40.0, 32.0],
        [-15.0, -45.0, 31.0, 45.0],
    ]


@pytest.mark.parametrize("image_size", [(64, 64), (128, 96), (800, 1216), (96, 160)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_torchvision_fpn_anchors(image_size, dtype):
    sizes, ratios = ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5
    feature_sizes = fpn_feature_sizes(*image_size)
    ours = AnchorGenerator(sizes, (0.5, 1.0, 2.0)).grid_anchors(image_size, feature_sizes, "cpu", dtype)
    expected = torchvision_anchors(sizes, ratios, image_size, feature_sizes, dtype)
    assert ours[0].dtype == dtype
    assert torch.equal(torch.cat(ours), expected)


def test_equals_torchvision_single_level_with_all_sizes():
    sizes, ratios = ((32, 64, 128, 256, 512),), ((0.5, 1.0, 2.0),)  # paper Table 1 (a)-(c), (f)
    generator = AnchorGenerator(sizes, (0.5, 1.0, 2.0))
    assert generator.num_anchors_per_location() == [15]
    for image_size in [(224, 320), (100, 148)]:
        feature_sizes = [(image_size[0] // 16, image_size[1] // 16)]
        expected = torchvision_anchors(sizes, ratios, image_size, feature_sizes)
        assert torch.equal(generator.grid_anchors(image_size, feature_sizes)[0], expected)


def test_counts_levels_and_cache():
    generator = AnchorGenerator()
    feature_sizes = fpn_feature_sizes(64, 96)
    counts = generator.num_anchors_per_level(feature_sizes)
    assert counts == [1152, 288, 72, 18, 6]
    levels = generator.anchor_levels(feature_sizes)
    assert levels.tolist() == [0] * 1152 + [1] * 288 + [2] * 72 + [3] * 18 + [4] * 6
    first = generator.grid_anchors((64, 96), feature_sizes)
    assert generator.grid_anchors((64, 96), feature_sizes) is first  # cached
    assert generator.grid_anchors((64, 96), feature_sizes, dtype=torch.float64) is not first


def test_cache_keeps_the_16_most_recently_used_grids():
    generator = AnchorGenerator()
    sizes = [(h, 96) for h in range(32, 32 * 21, 32)]  # 20 image sizes
    grids = {size: generator.grid_anchors(size, fpn_feature_sizes(*size)) for size in sizes}
    assert len(generator._cache) == CACHE_SIZE == 16
    # the first four were dropped (made anew), the 16 latest are still cached (the same objects)
    assert generator.grid_anchors(sizes[-1], fpn_feature_sizes(*sizes[-1])) is grids[sizes[-1]]
    assert generator.grid_anchors(sizes[4], fpn_feature_sizes(*sizes[4])) is grids[sizes[4]]
    assert generator.grid_anchors(sizes[0], fpn_feature_sizes(*sizes[0])) is not grids[sizes[0]]


def test_anchors_are_made_on_the_requested_device():
    # the "meta" device holds no data, but every op must keep it; a tensor made on the CPU would not
    generator, feature_sizes = AnchorGenerator(), fpn_feature_sizes(64, 96)
    assert {a.device.type for a in generator.grid_anchors((64, 96), feature_sizes, device="meta")} == {"meta"}


def test_one_size_per_level_may_be_given_as_a_number():
    generator = AnchorGenerator(sizes=(32, 64), aspect_ratios=(1.0,))
    assert generator.sizes == ((32,), (64,)) and generator.num_anchors_per_location() == [1, 1]


def test_bad_configuration():
    with pytest.raises(FpnlabError, match="aspect ratios"):
        AnchorGenerator(((32,), (64,)), ((0.5,), (1.0,), (2.0,)))
    with pytest.raises(FpnlabError, match="5 levels"):
        AnchorGenerator().grid_anchors((64, 64), [(16, 16)])
