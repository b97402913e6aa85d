"""Training targets (stages 4 and 6): which ground-truth box each anchor or proposal stands for, and which to learn
from.

Both heads learn the same way (Faster R-CNN paper, Sec. 3.1.2):

    Matcher                            IoU with the best ground-truth box -> that box's index and a label:
                                       positive (IoU >= high), background (< low), ignored (in between).
                                       RPN: 0.7 / 0.3 plus low-quality matches; Fast R-CNN: 0.5 / 0.5.
    BalancedPositiveNegativeSampler    a random mini-batch of positives and negatives per image:
                                       RPN 256 anchors, half positive; Fast R-CNN 512 ROIs, a quarter.
    sample_targets                     both, then the regression targets (Eq. 2) of the positives:
                                       what each head's loss compares its outputs with.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import BoxCoder, box_iou

POSITIVE, BACKGROUND, IGNORED = 1, 0, -1  # Match.labels: a good match, a clear miss, neither (never trained on)


class Match(NamedTuple):
    """What the Matcher says about N predictions (anchors or proposals), as two tensors (as detectron2's does).

    matches: (N,) int64, the index of the gt box each prediction overlaps most (0 when there is no gt box);
             it means something only where labels is POSITIVE.
    labels:  (N,) int64, POSITIVE (1), BACKGROUND (0) or IGNORED (-1).
    """

    matches: Tensor
    labels: Tensor


class Matcher:
    """Match each prediction (anchor or proposal) to the ground-truth box it overlaps most.

    ``__call__(iou)`` takes the (M gt, N predictions) IoU matrix and returns a ``Match``: each prediction's
    best gt box, labelled POSITIVE for IoU >= ``high_threshold``, BACKGROUND for IoU < ``low_threshold``
    and IGNORED in between.

        >>> Matcher(0.7, 0.3)(torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.6, 0.0]]))
        Match(matches=tensor([0, 1, 0]), labels=tensor([ 1, -1,  0]))

    ``allow_low_quality_matches`` (the RPN's rule (i), Faster R-CNN Sec. 3.1.2): a gt box whose best IoU
    is below ``high_threshold`` would get no positive at all, so the prediction(s) reaching that best
    IoU (ties included) become positives too, each matched to its own best gt, as in torchvision. One
    intentional difference: a gt box that overlaps no prediction at all (best IoU 0) is skipped, whereas
    torchvision would turn every prediction with IoU 0 into a positive (this cannot happen with the
    dense FPN anchors and valid boxes, so results are the same).
    With no gt boxes (M = 0) every prediction is background.
    """

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if not 0.0 <= low_threshold <= high_threshold <= 1.0:
            raise FpnlabError(
                f"Matcher needs 0 <= low_threshold <= high_threshold <= 1, got {low_threshold} and {high_threshold}."
            )
        self.high_threshold, self.low_threshold = high_threshold, low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Match:
        """(M, N) IoU of gt boxes x predictions -> Match: (N,) best gt index, (N,) label 1 / 0 / -1."""
        # BEGIN UNIT matcher
        num_predictions = iou.shape[1]
        if iou.shape[0] == 0 or num_predictions == 0:  # no objects: all background; no predictions: nothing
            nothing = torch.zeros(num_predictions, dtype=torch.int64, device=iou.device)
            return Match(nothing, nothing.clone())
        best_iou, best_gt = iou.max(dim=0)  # (N,) each: the best gt of every prediction
        labels = torch.full_like(best_gt, IGNORED)
        labels[best_iou < self.low_threshold] = BACKGROUND
        labels[best_iou >= self.high_threshold] = POSITIVE
        if self.allow_low_quality_matches:
            best_for_gt = iou.max(dim=1).values  # (M,) the best IoU each gt reaches
            is_best = (iou == best_for_gt[:, None]) & (best_for_gt[:, None] > 0)  # (M, N), ties included
            labels[is_best.any(dim=0)] = POSITIVE
        return Match(best_gt, labels)
        # END UNIT matcher


class BalancedPositiveNegativeSampler:
    """Sample ``batch_size_per_image`` examples of one image, at most ``positive_fraction`` of them positive.

    ``__call__(labels)`` takes (N,) labels (>= 1 positive, 0 negative, -1 ignored) and returns the
    indices of the sampled positives and negatives, chosen uniformly at random without replacement.
    With too few positives the batch is filled with negatives (the total may still be smaller).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if batch_size_per_image < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise FpnlabError(
                f"BalancedPositiveNegativeSampler needs batch_size_per_image >= 1 and a positive "
                f"fraction in [0, 1], got {batch_size_per_image} and {positive_fraction}."
            )
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def __call__(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(N,) labels -> (indices of sampled positives (P,), indices of sampled negatives (Q,))."""
        # BEGIN UNIT sampler
        positive = torch.where(labels >= 1)[0]
        negative = torch.where(labels == 0)[0]
        num_pos = min(int(self.batch_size_per_image * self.positive_fraction), len(positive))
        num_neg = min(self.batch_size_per_image - num_pos, len(negative))
        return _random_subset(positive, num_pos), _random_subset(negative, num_neg)
        # END UNIT sampler


def _random_subset(indices: Tensor, k: int) -> Tensor:
    """k of ``indices`` picked uniformly at random, without replacement."""
    return indices[torch.randperm(len(indices), device=indices.device)[:k]]


class SampledTargets(NamedTuple):
    """The training targets of one image's sampled anchors or ROIs."""

    positive: Tensor  # (P,) indices of the sampled positives
    negative: Tensor  # (Q,) indices of the sampled negatives
    labels: Tensor  # (P + Q,) int64 label of each sampled one, positives first: the gt class, 0 background
    box_targets: Tensor  # (P, 4) the deltas that move each positive onto its gt box (BoxCoder.encode)
    all_labels: Tensor  # (N,) the label of every candidate, sampled or not; -1 ignored
    matched: Tensor  # (P,) int64 the gt box of each sampled positive (an index into gt_boxes): masks need it


def sample_targets(
    matcher: Matcher,
    sampler: BalancedPositiveNegativeSampler,
    box_coder: BoxCoder,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    candidates: Tensor,
) -> SampledTargets:
    """Match candidates (N, 4) to gt boxes (M, 4), label them, sample a mini-batch, encode the positives.

    The label of a positive is its gt box's label (the RPN passes ones: "object"), background is 0, and
    ignored candidates (-1) are never sampled.
    """
    match = matcher(box_iou(gt_boxes, candidates))  # (N,) best gt index, (N,) 1 / 0 / -1
    positives = match.labels == POSITIVE
    labels = torch.zeros_like(match.labels)  # (N,)
    labels[match.labels == IGNORED] = -1
    labels[positives] = gt_labels[match.matches[positives]].to(labels.dtype)
    positive, negative = sampler(labels)
    matched = match.matches[positive]  # (P,)
    box_targets = box_coder.encode(gt_boxes[matched], candidates[positive])  # (P, 4)
    sampled_labels = labels[torch.cat([positive, negative])]
    return SampledTargets(positive, negative, sampled_labels, box_targets, labels, matched)
