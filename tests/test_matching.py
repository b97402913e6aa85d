"""Matcher (0.7 / 0.3, low-quality matches) and the balanced positive / negative sampler."""

import doctest
import math

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils

from fpnlab.errors import FpnlabError
from fpnlab.model import matching
from fpnlab.model.boxes import BoxCoder
from fpnlab.model.matching import (
    BalancedPositiveNegativeSampler,
    Match,
    Matcher,
    _random_subset,
    sample_targets,
)

# 2 gt boxes (rows) x 5 predictions (columns)
IOU = torch.tensor([[0.90, 0.50, 0.10, 0.00, 0.20], [0.10, 0.60, 0.20, 0.25, 0.20]])
POS, BG, IGN = 1, 0, -1


def as_lists(match: Match) -> tuple[list[int], list[int]]:
    return match.matches.tolist(), match.labels.tolist()


def torchvision_packed(match: Match) -> torch.Tensor:
    """torchvision's one-tensor convention, written out: the gt index of a positive, -1 background, -2 ignored."""
    return torch.where(match.labels == POS, match.matches, torch.where(match.labels == BG, -1, -2))


def test_thresholds_worked_by_hand():
    # best IoU per prediction: 0.9 (gt 0) positive, 0.6 (gt 1) between -> ignored, 0.2 / 0.25 / 0.2 background
    assert as_lists(Matcher(0.7, 0.3)(IOU)) == ([0, 1, 1, 1, 0], [POS, IGN, BG, BG, BG])
    # Fast R-CNN's 0.5 / 0.5: no "between" band
    assert as_lists(Matcher(0.5, 0.5)(IOU)) == ([0, 1, 1, 1, 0], [POS, POS, BG, BG, BG])


def test_the_docstrings_worked_example_holds():
    assert doctest.testmod(matching, raise_on_error=True).attempted >= 1


def test_low_quality_matches_keep_each_gts_best_prediction():
    # gt 1 reaches at most 0.6 (prediction 1): that prediction becomes its positive
    assert as_lists(Matcher(0.7, 0.3, allow_low_quality_matches=True)(IOU)) == ([0, 1, 1, 1, 0], [POS, POS, BG, BG, BG])
    # ties: both predictions reaching gt 0's best IoU (0.4) are kept; prediction 2 is gt 1's best (0.2)
    # but overlaps gt 0 more (0.3), so, as in torchvision, it is matched to gt 0
    iou = torch.tensor([[0.40, 0.40, 0.30], [0.00, 0.10, 0.20]])
    assert as_lists(Matcher(0.7, 0.3)(iou)) == ([0, 0, 0], [IGN] * 3)
    assert as_lists(Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)) == ([0, 0, 0], [POS] * 3)


def test_no_gt_means_all_background_and_a_gt_overlapping_nothing_adds_no_match():
    assert as_lists(Matcher(0.7, 0.3, True)(torch.zeros(0, 6))) == ([0] * 6, [BG] * 6)
    iou = torch.tensor([[0.8, 0.0, 0.0], [0.0, 0.0, 0.0]])  # gt 1 overlaps no prediction
    assert as_lists(Matcher(0.7, 0.3, True)(iou)) == ([0, 0, 0], [POS, BG, BG])


@pytest.mark.parametrize("low_quality", [False, True])
def test_equals_torchvision_matcher_on_random_iou(low_quality):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        iou = torch.rand(4, 300, generator=gen) ** 3  # many low values, some high
        iou[:, :5] = 0.45  # ties
        expected = tv_utils.Matcher(0.7, 0.3, low_quality)(iou.clone())
        match = Matcher(0.7, 0.3, low_quality)(iou)
        assert torch.equal(torchvision_packed(match), expected)
        assert torch.equal(match.matches, iou.argmax(dim=0))  # the best gt, whatever the label


def test_thresholds_are_inclusive_where_the_paper_says():
    # IoU exactly at the low threshold is "between" (ignored), exactly at the high threshold positive
    iou = torch.tensor([[0.3, 0.7, 0.2999, 0.6999]])
    assert Matcher(0.7, 0.3)(iou).labels.tolist() == [IGN, POS, BG, IGN]


def test_matcher_rejects_bad_thresholds_and_accepts_the_ends():
    for high, low in [(0.3, 0.7), (1.5, 0.3), (0.7, -0.1)]:
        with pytest.raises(FpnlabError, match=r"Matcher needs 0 <= low_threshold <= high_threshold <= 1, got"):
            Matcher(high, low)
    assert Matcher(1.0, 0.0)(torch.tensor([[0.0, 1.0]])).labels.tolist() == [IGN, POS]


def test_sampler_rejects_bad_settings_and_accepts_the_ends():
    for size, fraction in [(0, 0.5), (4, 1.5), (4, -0.1), (0, 2.0)]:
        with pytest.raises(FpnlabError, match=rf"batch_size_per_image >= 1 .* got {size} and {fraction}"):
            BalancedPositiveNegativeSampler(size, fraction)
    labels = torch.tensor([1, 1, 0, 0])
    assert [len(t) for t in BalancedPositiveNegativeSampler(1, 1.0)(labels)] == [1, 0]
    assert [len(t) for t in BalancedPositiveNegativeSampler(4, 0.0)(labels)] == [0, 2]


def test_results_stay_on_the_inputs_device():
    # the "meta" device has no data, but every op must keep it: a tensor made on the CPU would not
    iou = torch.empty(2, 5, device="meta")
    for match in (Matcher(0.7, 0.3)(iou[:0]), Matcher(0.7, 0.3)(iou[:, :0])):
        assert match.matches.device.type == "meta" and match.labels.device.type == "meta"
    assert _random_subset(torch.empty(6, dtype=torch.int64, device="meta"), 3).device.type == "meta"


def labels_with(num_pos: int, num_neg: int, num_ignored: int) -> torch.Tensor:
    labels = torch.cat(
        [torch.randint(1, 4, (num_pos,)), torch.zeros(num_neg, dtype=torch.long), torch.full((num_ignored,), -1)]
    )
    return labels[torch.randperm(len(labels))]


@pytest.mark.parametrize(
    "num_pos, num_neg, expected",
    [
        (10, 1000, (10, 246)),  # few positives: the rest of the 256 are negatives
        (500, 1000, (128, 128)),  # half positive at most
        (3, 5, (3, 5)),  # fewer than 256 in all
        (0, 1000, (0, 256)),  # an image without objects
    ],
)
def test_sampler_counts(num_pos, num_neg, expected):
    torch.manual_seed(0)
    labels = labels_with(num_pos, num_neg, 200)
    positive, negative = BalancedPositiveNegativeSampler(256, 0.5)(labels)
    assert (len(positive), len(negative)) == expected
    assert (labels[positive] >= 1).all() and (labels[negative] == 0).all()
    assert len(set(positive.tolist())) == len(positive) and len(set(negative.tolist())) == len(negative)


def test_sampler_quarter_positive_for_fast_rcnn_and_randomness():
    labels = labels_with(400, 2000, 0)
    torch.manual_seed(1)
    positive, negative = BalancedPositiveNegativeSampler(512, 0.25)(labels)
    assert (len(positive), len(negative)) == (128, 384)
    torch.manual_seed(2)
    other, _ = BalancedPositiveNegativeSampler(512, 0.25)(labels)
    assert set(other.tolist()) != set(positive.tolist())  # a random subset, not the first 128


def test_sampler_draws_like_torchvision_for_the_same_seed():
    labels = [labels_with(40, 3000, 100).float(), labels_with(300, 500, 7).float()]
    torch.manual_seed(3)
    tv_pos, tv_neg = tv_utils.BalancedPositiveNegativeSampler(256, 0.5)(labels)
    torch.manual_seed(3)
    ours = [BalancedPositiveNegativeSampler(256, 0.5)(lab) for lab in labels]
    for (pos, neg), pos_mask, neg_mask in zip(ours, tv_pos, tv_neg):
        assert torch.equal(pos.sort().values, torch.where(pos_mask)[0])
        assert torch.equal(neg.sort().values, torch.where(neg_mask)[0])


def test_ground_truth_but_no_predictions_gives_an_empty_match():
    for low_quality in (True, False):
        match = Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)(torch.zeros(3, 0))
        assert match.matches.shape == match.labels.shape == (0,) and match.matches.dtype == torch.int64


def test_sample_targets_labels_samples_and_encodes_the_positives():
    """Two gt boxes, four candidates: exact copy, near copy (IoU 0.81), ambiguous (0.5), far away (0)."""
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    candidates = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 29.0, 29.0], [0.0, 0.0, 10.0, 5.0], [50.0, 50.0, 60.0, 60.0]]
    )
    torch.manual_seed(0)
    sampled = sample_targets(
        Matcher(0.7, 0.3), BalancedPositiveNegativeSampler(8, 0.5), BoxCoder(), gt, torch.tensor([3, 5]), candidates
    )
    assert sorted(sampled.positive.tolist()) == [0, 1] and sampled.negative.tolist() == [3]  # 2: ignored
    labels = dict(zip(torch.cat([sampled.positive, sampled.negative]).tolist(), sampled.labels.tolist()))
    assert labels == {0: 3, 1: 5, 3: 0}  # each positive takes its gt box's class, the negative is background
    assert sampled.all_labels.tolist() == [3, 5, -1, 0]  # every candidate's label; candidate 2 ignored
    targets = dict(zip(sampled.positive.tolist(), sampled.box_targets.tolist()))
    assert targets[0] == pytest.approx([0, 0, 0, 0])  # already on its box
    # candidate 1: centre (24.5, 24.5), size 9 -> gt centre (25, 25), size 10: (0.5/9, 0.5/9, log(10/9), log(10/9))
    assert targets[1] == pytest.approx([0.5 / 9, 0.5 / 9, math.log(10 / 9), math.log(10 / 9)], rel=1e-5)
    matched = dict(zip(sampled.positive.tolist(), sampled.matched.tolist()))
    assert matched == {0: 0, 1: 1}  # the gt box each sampled positive stands for (a mask head's target)
