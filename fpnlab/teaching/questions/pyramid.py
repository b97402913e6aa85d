"""The questions of notebooks 00-03: the data and the lab's scale, the bottom-up pathway, the top-down pathway
and lateral connections, anchors."""

from __future__ import annotations

import math

from fpnlab.model.backbone import ResNetBody
from fpnlab.model.levels import continuous_level
from fpnlab.teaching import facts
from fpnlab.teaching.questions.question import LEVELS, Question, input_size, iou_of
from fpnlab.teaching.receptive import receptive_fields, with_3x3_convs

QUESTIONS: dict[str, Question] = {
    # --- 00: data and scale -----------------------------------------------------------------------------
    "00.small_at_input": Question(
        "A COCO 'small' object is under 32 px on a side. The lab feeds shapes-mini's 160 px images at its "
        "input size. How many pixels wide is the largest small object at the input?",
        lambda: 32 * input_size() / 160,
        "{answer:g} px: the images are resized from 160 to 320 px, x2.",
        "the settings print the detector's input size (min_size).",
        kind="warm-up",
    ),
    "00.busiest_bucket": Question(
        "Which COCO size bucket holds the most training objects of shapes-mini: small, medium or large?",
        facts.busiest_bucket,
        "{answer}: as in COCO itself, small objects are the most common.",
        "look at the images above: count the shapes under 32 px (a fifth of the 160 px side) in one of them.",
        choices=("small", "medium", "large"),
        revealed_by="size_bucket_shares(annotations)",
    ),
    "00.level_100x400": Question(
        "Eq. 1 with the paper's canonical size 224: which level k pools a 100 x 400 ROI?",
        lambda: math.floor(continuous_level(100.0, 400.0)),
        "sqrt(100 x 400) = 200, k = floor(4 + log2(200 / 224)) = floor(3.84) = {answer}: Eq. 1 uses the area, "
        "so a long thin ROI goes where a square of the same area would.",
        "Eq. 1 takes sqrt(w h), the side of the square with the ROI's area.",
        kind="reasoning",
    ),
    "00.empty_level_224": Question(
        "Keep the paper's canonical size 224 at the lab's 320 px input: one of P2..P5 would pool no training "
        "box at all. Which?",
        lambda: facts.empty_level(224.0),
        "{answer}: only a ROI wider than 2 x 224 = 448 px reaches P5, more than the whole 320 px input.",
        "which ROI side puts Eq. 1 at k = 5 with 224? Is any box that large?",
        choices=LEVELS,
        revealed_by="paper_levels = assign_levels(boxes, canonical_size=224)",
    ),
    "00.halved_canonical": Question(
        "Halve the canonical size: does every box move to a finer level, to a coarser level, or stay?",
        lambda: "coarser",
        "{answer}: log2(sqrt(wh) / (c / 2)) = log2(sqrt(wh) / c) + 1, one level up for all "
        "(except those already clamped at P5).",
        "halving c adds exactly 1 to k before the floor.",
        choices=("finer", "coarser", "stay"),
        revealed_by="canonical_size=model_settings.canonical_size() / 2",
    ),
    # --- 01: bottom-up pathway --------------------------------------------------------------------------
    "01.c3_rows": Question(
        "The demo detector's input is 320 x 320. How many rows does its C3 map have?",
        lambda: input_size() // 8,
        "320 / 8 = {answer}: C3 has stride 8.",
        "C3's stride is 2^3.",
        kind="warm-up",
    ),
    "01.rf_c2": Question(
        "From the layers printed above: how many input pixels wide is the receptive field of one C2 cell?",
        lambda: receptive_fields(ResNetBody("resnet_tiny", "bn"))["c2"],
        "{answer}: 7 (conv1) + 2 x 2 (the 3x3 max pool, after a stride of 2) + 2 x 4 + 2 x 4 (two 3x3 convs at "
        "stride 4).",
        "each layer of kernel k adds (k - 1) x the stride reached before it.",
        kind="reasoning",
    ),
    "01.strongest_place": Question(
        "Where is C5's mean |activation| strongest: on the objects, on the background, or along the border of the map?",
        lambda: facts.strongest_place("c5"),
        "{answer}: C5's cells near the border see the zero padding, a strong signal the network learned to "
        "notice. Mean |activation| measures energy, not meaning.",
        "think of what a C5 cell near the edge sees: its 195 px window hangs over the image's edge.",
        choices=("objects", "background", "border"),
        revealed_by="facts.mean_energy(",
    ),
    "01.probe_c5_vs_c2": Question(
        "A linear probe tells, from one cell's features, whether the cell lies on an object. Will it read C5 "
        "better or worse than C2?",
        lambda: "better" if facts.better_of("c5", "c2", facts.probe_accuracy()) == "c5" else "worse",
        "{answer}: a C5 cell sees 195 px, the whole object and its surroundings; a C2 cell 27 px, a patch of texture.",
        "compare the receptive fields printed above with the objects' sizes.",
        choices=("better", "worse"),
        revealed_by="facts.probe_accuracy(",
    ),
    "01.strongest_c2": Question(
        "And C2's mean |activation|: strongest on the objects, on the background, or along the border?",
        lambda: facts.strongest_place("c2"),
        "{answer}: a C2 cell sees 27 px, about an edge or a corner of a "
        "shape; most of its window is inside the image, so the border counts for less than in C5.",
        "C2's window is 27 px wide: how much of it hangs over the edge?",
        choices=("objects", "background", "border"),
        revealed_by="facts.mean_energy(",
    ),
    # --- 02: top-down pathway and lateral connections ---------------------------------------------------
    "02.stride_p6": Question(
        "P6 is P5 subsampled by 2. What is its stride?",
        lambda: 64.0,
        "{answer:g}: P5 has stride 32, and P6 takes every other cell of it.",
        "P5's stride is 32.",
        kind="warm-up",
        same_number_above="the 64 printed above is the number of channels d, not a stride",
    ),
    "02.p2_rf_bottom_up": Question(
        "Without the top-down pathway, P2 = 3x3(1x1(C2)), then the RPN adds its own 3x3 conv. How many input "
        "pixels does one RPN cell on P2 see?",
        lambda: with_3x3_convs(receptive_fields(ResNetBody("resnet_tiny", "bn"))["c2"], 4, 2),
        "{answer}: C2's 27, plus 2 x 4 for each 3x3 conv at stride 4.",
        "a 3x3 conv on a stride-4 map adds 2 x 4 pixels.",
        kind="reasoning",
    ),
    "02.weaker_ablation": Question(
        "In the paper's Table 1, which ablation loses more small-object recall (AR_s@1k): no top-down (d) or "
        "no lateral (e)?",
        lambda: "no lateral",
        "{answer}: 26.5 against 30.5 (FPN: 44.9). Without laterals, P2 is C5 blown up 8 times: the exact "
        "locations small objects need were lost on the way up.",
        "which one throws away the fine levels' own information?",
        choices=("no top-down", "no lateral"),
        revealed_by="PAPER_TABLE1[variant]",
    ),
    "02.probe_p2_vs_c2": Question(
        "Will the probe of notebook 01 read FPN's P2 better or worse than C2?",
        lambda: "better" if facts.better_of("p2", "c2", facts.probe_accuracy()) == "p2" else "worse",
        "{answer}: P2 = 3x3(1x1(C2) + upsampled M3): what the coarser levels know reaches the fine map.",
        "what does the top-down pathway add to 1x1(C2)?",
        choices=("better", "worse"),
        revealed_by="facts.probe_accuracy(",
    ),
    "02.probe_bottom_up": Question(
        "The bottom-up P2 (no top-down, FPN's trained convs) sees only C2. Will the probe read it better or "
        "worse than FPN's P2?",
        lambda: "worse" if facts.better_of("p2", "p2 no top-down", facts.probe_accuracy()) == "p2" else "better",
        "{answer}: without the top-down sum, P2 is a function of C2 alone.",
        "compare with C2's accuracy in notebook 01.",
        choices=("better", "worse"),
        revealed_by="facts.probe_accuracy(",
    ),
    # --- 03: anchors -----------------------------------------------------------------------------------
    "03.p2_anchors": Question(
        "How many anchors does P2 hold for a 320 x 320 input (3 per location)?",
        lambda: (320 // 4) ** 2 * 3.0,
        "{answer:g}: 80 x 80 cells x 3 anchors.",
        "P2's stride is 4.",
        kind="warm-up",
    ),
    "03.iou_24_in_32": Question(
        "A 24 x 24 object sits exactly in the middle of a 32 x 32 anchor. What is their IoU?",
        lambda: iou_of([4.0, 4.0, 28.0, 28.0], [0.0, 0.0, 32.0, 32.0]),
        "{answer:.4g}: the object lies inside the anchor, so IoU = 24^2 / 32^2: below 0.7.",
        "the intersection is the whole object; the union the whole anchor.",
        kind="reasoning",
        tolerance=0.02,
    ),
    "03.small_best_level": Question(
        "For objects under 32 px at the network's input, which level most often has the best-fitting anchor?",
        lambda: facts.best_level("small"),
        "{answer}: its 32 px anchors, 4 px apart, are the only ones near their size and position.",
        "which level's anchors are closest in size to a 20-30 px object?",
        choices=LEVELS,
        revealed_by="best_level_counts(boxes, best, levels)",
    ),
    "03.large_best_level": Question(
        "And for objects larger than 96 px at the input, which level most often has the best-fitting anchor?",
        lambda: facts.best_level("large"),
        "{answer}: the largest anchors (256 px, P5) and the next (128 px, "
        "P4) share them; which one wins depends on where the objects' sizes fall between 128 and 256 px.",
        "the large objects here are 96 to 280 px wide at the input: which anchor sizes are nearest?",
        choices=LEVELS,
        revealed_by="best_level_counts(boxes, best, levels)",
    ),
    "03.small_without_p2": Question(
        "Without P2, what share of those small objects would still have an anchor with IoU >= 0.5: most, "
        "about half, or almost none?",
        lambda: facts.small_without_p2(),
        "{answer}: P3's 64 px anchors are four times a 32 px object's area: IoU 0.25 at best.",
        "the best IoU of a 32 x 32 object inside a 64 x 64 anchor is (32/64)^2.",
        choices=("most", "about half", "almost none"),
        revealed_by="without P2",
    ),
    "03.anchor_label": Question(
        "In the widget: a 64 x 64 anchor (P3) centred on a 32 x 32 object, no other object near. Is the anchor "
        "positive, ignored or negative for the RPN (IoU >= 0.7 positive, < 0.3 negative)?",
        lambda: "negative",
        "{answer}: IoU = 32^2 / 64^2 = 0.25 < 0.3 (unless it is the object's best anchor "
        "of all, which the low-quality rule makes positive).",
        "work out the IoU first.",
        kind="reasoning",
        choices=("positive", "ignored", "negative"),
        revealed_by=".widget(",
    ),
}
