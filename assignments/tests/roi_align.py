"""Unit 'roi_align': RoIAlign's bilinear samples (Mask R-CNN Sec. 3), fpnlab/poolers.py `_sample_weights`:
where the samples of each bin sit along one axis and how much each of their two neighbouring pixels
weighs. `roi_align_reference` (given) gathers the pixels with these weights.

Expected values: a crop worked out by hand, and torchvision.ops.roi_align.
"""

import torch
import torchvision
from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.model import poolers

OK_FORMAT = False
name = "roi_align"
points = 4
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def random_problem(shape, n_rois, seed, dtype=torch.float32, spread=1.0):
    """Random features (B, C, H, W) and rois (K, 5) in image pixels at stride 2, some reaching off the map."""
    gen = torch.Generator().manual_seed(seed)
    batch, _, height, width = shape
    features = torch.randn(*shape, generator=gen, dtype=torch.float64)
    image = torch.randint(batch, (n_rois, 1), generator=gen).double()
    xy = (torch.rand(n_rois, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2) * torch.tensor([width, height]) * 2
    wh = torch.rand(n_rois, 2, generator=gen, dtype=torch.float64) * torch.tensor([width, height]) * spread + 0.3
    rois = torch.cat([image, xy, xy + wh], 1)
    return features.to(dtype=dtype, device=units.DEVICE), rois.to(dtype=dtype, device=units.DEVICE)


def align(features, rois, output_size, scale, sampling_ratio, aligned):
    args = (features, rois, output_size, scale, sampling_ratio, aligned)
    return units.run("roi_align", poolers.roi_align_reference, *args)


def torchvision_align(features, rois, output_size, scale, sampling_ratio, aligned):
    return torchvision.ops.roi_align(features, rois, output_size, scale, sampling_ratio, aligned)


@test_case(name="by hand: one sample at the centre of a 4 x 4 map valued x + 4y reads 7.5; weights sum to 1 a bin")
def by_hand():
    features = torch.arange(16.0, device=units.DEVICE).reshape(1, 1, 4, 4)  # value x + 4 * y
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]], device=units.DEVICE)
    got = align(features, rois, 1, 1.0, 1, False)
    units.expect_close(got, torch.tensor([[[[7.5]]]]), "a 1 x 1 crop of [0, 0, 3, 3]")
    answer = units.run("roi_align", poolers._sample_weights, torch.tensor([0.5]), torch.tensor([3.0]), 3, 2, 4)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise AssertionError(f"_sample_weights must return (weights, pixels), got {units.shown(answer)}.")
    weights, pixels = answer
    if not isinstance(pixels, torch.Tensor) or tuple(pixels.shape) != (1, 3, 2, 2):
        raise AssertionError(f"the pixels: got {units.shown(pixels)}, expected shape (K, bins, G, 2) = (1, 3, 2, 2).")
    units.expect_close(weights.sum(dim=(2, 3)), torch.ones(1, 3), "sum of the weights of each of 3 bins")


@test_case(name="7 rois on a (2, 3, 9, 13) map, a 3 x 3 crop, stride 2, 2 samples a side, against torchvision")
def against_torchvision():
    features, rois = random_problem((2, 3, 9, 13), 7, seed=0)
    args = (3, 0.5, 2, False)
    units.expect_close(align(features, rois, *args), torchvision_align(features, rois, *args), "3 x 3 crops")


@test_case(name="aligned=True with adaptive sampling (sampling_ratio -1), a 2 x 5 crop, float64", hidden=True)
def aligned_adaptive_float64():
    features, rois = random_problem((1, 4, 11, 6), 9, seed=SEED + 1, dtype=torch.float64)
    args = ((2, 5), 0.5, -1, True)
    units.expect_close(align(features, rois, *args), torchvision_align(features, rois, *args), "aligned 2 x 5 crops")


@test_case(name="rois far off the map and rois smaller than a pixel", hidden=True)
def off_the_map_and_tiny():
    features, rois = random_problem((2, 2, 7, 7), 12, seed=SEED + 2, spread=0.05)
    rois[:4, 1:] -= 20.0  # entirely to the top-left of the map
    rois[4:6, 1:] += 20.0  # past its bottom-right corner
    for args in ((4, 0.5, 2, False), (4, 0.5, 3, True)):
        units.expect_close(
            align(features, rois, *args),
            torchvision_align(features, rois, *args),
            f"crops of off-map and tiny rois, aligned={args[3]}",
        )


@test_case(name="no rois: a (0, C, 7, 7) result", hidden=True)
def empty():
    features = torch.randn(1, 3, 5, 5, device=units.DEVICE)
    units.expect_close(
        align(features, torch.zeros(0, 5, device=units.DEVICE), 7, 1.0, 2, False),
        torch.zeros(0, 3, 7, 7),
        "crops of no rois",
    )
