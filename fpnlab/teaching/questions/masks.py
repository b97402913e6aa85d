"""Notebook 09's predict-then-check questions: masks through an M x M grid, the shipped Mask R-CNN, segment
proposals. Round trips are measured on shapes-mini val (fpnlab.teaching.mask_lessons), the rest read from the
stored records (demo_mask_checkpoint, segment_proposals_cpu)."""

from __future__ import annotations

from fpnlab.ablation.report import compare_rows
from fpnlab.teaching import facts
from fpnlab.teaching.mask_lessons import mask_minus_box, val_round_trip
from fpnlab.teaching.questions.question import DIRECTIONS, Question

BUCKETS = ("small", "medium", "large")


def weakest_bucket() -> str:
    """The size bucket whose masks keep the least IoU through 28 x 28 and back (torchvision's sampling)."""
    buckets = val_round_trip(False)["all"]
    return min(buckets, key=buckets.get)


def aligned_on_small() -> str:
    """Aligned sampling minus torchvision's, on small objects' round trips: "higher", "lower" or "no difference"
    (within 0.005 IoU)."""
    gain = val_round_trip(True)["all"]["small"] - val_round_trip(False)["all"]["small"]
    return "no difference" if abs(gain) < 0.005 else ("higher" if gain > 0 else "lower")


def larger_gap() -> str:
    """Where the shipped Mask R-CNN's mask AP falls further below its box AP: on small or on large objects."""
    record = facts.stored("demo_mask_checkpoint")
    return "small" if mask_minus_box(record, "AP_s") < mask_minus_box(record, "AP_l") else "large"


QUESTIONS: dict[str, Question] = {
    "09.roundtrip_bucket": Question(
        "Send every true mask of shapes-mini val through its box at 28 x 28 and paste it back: which size bucket "
        "keeps the least IoU with the original, small, medium or large?",
        weakest_bucket,
        "{answer}: a fixed 28 x 28 grid costs the same half pixel and the same rounding at every size, and a "
        "pixel is a larger part of a small object.",
        "how many pixels wide is the border of a 10 px object, compared with its area?",
        choices=BUCKETS,
        revealed_by="round_trip_iou(val_masks, 28)",
    ),
    "09.aligned": Question(
        "torchvision's RoIAlign for mask targets samples half a pixel off the grid that pasting uses. Sample "
        "aligned instead: is the round trip's IoU on small objects higher, lower or no different?",
        aligned_on_small,
        "{answer}: the half-pixel shift moves every target against the paste; on a small object that shift is a "
        "large share of its width.",
        "what does a shift of half a pixel do to a 6 px wide ring?",
        choices=DIRECTIONS,
        revealed_by="aligned=True",
    ),
    "09.mask_gap": Question(
        "The shipped Mask R-CNN is scored by box AP and by mask AP. Where does mask AP fall further below box AP: "
        "on small or on large objects?",
        larger_gap,
        "{answer}: a mask must also be right inside the box, pixel by pixel, and a few pixels of a small object "
        "are a large share of it.",
        "a box 2 px off on a 16 px object: how much of a mask 2 px off overlaps?",
        choices=("small", "large"),
        revealed_by='read_result("demo_mask_checkpoint")',
    ),
    "09.segment_small": Question(
        "Segment proposals: one 5 x 5 MLP on every level P2..P5, each level its own mask scale, against the same "
        "head on P4 alone predicting all four scales there. FPN minus the single level on small objects "
        "(AR_s@1000): higher, lower or no difference?",
        lambda: compare_rows(facts.stored("segment_proposals_cpu")["runs"], "fpn", "single", "AR_s@1000")["verdict"],
        "{answer}: on P4 (stride 16) a small object is a fraction of one cell; on P2 it spans several.",
        "how many P4 cells does a 24 px object cover?",
        choices=DIRECTIONS,
        revealed_by='read_result("segment_proposals_cpu")',
    ),
}
