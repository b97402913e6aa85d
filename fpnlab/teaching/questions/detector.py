"""The questions of notebooks 04-08: the RPN, ROI-to-level assignment, the Fast R-CNN head, training, the
ablations."""

from __future__ import annotations

import math

from fpnlab.ablation import speed
from fpnlab.model.levels import continuous_level
from fpnlab.teaching import facts
from fpnlab.teaching.questions.question import (
    DIRECTIONS,
    LEVELS,
    Question,
    direction,
    encode_one,
    more_or_fewer,
    roi_pool_start,
)

QUESTIONS: dict[str, Question] = {
    # --- 04: the RPN -----------------------------------------------------------------------------------
    "04.tx": Question(
        "An anchor (0, 0, 32, 32) and a gt box (4, 0, 36, 32): what is the RPN's regression target tx?",
        lambda: encode_one([4.0, 0.0, 36.0, 32.0], [0.0, 0.0, 32.0, 32.0], (1.0, 1.0, 1.0, 1.0))[0],
        "{answer:g}: the centres are 4 px apart and tx = (x_gt - x_a) / w_a = 4 / 32.",
        "tx divides the centre shift by the anchor's width.",
        kind="warm-up",
        tolerance=0.01,
    ),
    "04.level_fires": Question(
        "Which level's objectness fires highest on this image's smallest object?",
        lambda: facts.firing_level(3, "smallest"),
        "{answer}: the level whose anchors fit it; the head is shared, but each level's anchors have one size.",
        "how large is the smallest object at the input?",
        choices=LEVELS,
        revealed_by="analysis.objectness_inside(",
    ),
    "04.refined_more": Question(
        "Over 20 val images, does the RPN's refinement raise the IoU of each object's best anchor for more or "
        "fewer than half of the objects?",
        lambda: more_or_fewer(facts.refinement_gains()),
        "{answer}: refinement helps most objects, but not all: a box that was already close can be moved past "
        "its object.",
        "the head was trained to move anchors onto objects, on these images' siblings.",
        choices=("more", "fewer"),
        revealed_by="facts.refinement_gains(",
    ),
    "04.recall_topk": Question(
        "Recall at IoU 0.5 of every raw anchor vs of the top-k decoded boxes per level: higher, lower or no "
        "difference after top-k?",
        lambda: direction(facts.recall_steps()["top-k per level"], facts.recall_steps()["all anchors"]),
        "{answer}: the top-k boxes are anchors *moved* by the RPN's deltas; a moved box can reach IoU 0.5 "
        "with an object that no raw anchor reached.",
        "are the top-k boxes anchors, or something else?",
        choices=DIRECTIONS,
        revealed_by="analysis.recall_after_steps(",
    ),
    "04.nms_top10": Question(
        "Which NMS threshold keeps more objects among the 10 best proposals per image: 0.5 or 0.9?",
        lambda: "0.5" if facts.recall_steps(0.5)["top 10"] > facts.recall_steps(0.9)["top 10"] else "0.9",
        "{answer}: a strict NMS removes the near-copies of the best boxes, so the top 10 reach more objects.",
        "with NMS at 0.9, what are boxes 2..10 most likely to be?",
        choices=("0.5", "0.9"),
        revealed_by="rpn.settings(nms_thresh=threshold)",
    ),
    # --- 05: ROI-to-level assignment -------------------------------------------------------------------
    "05.cells_on_p5": Question(
        "A 96 x 96 ROI is pooled from P5 (stride 32). How many P5 cells does it cover along one side?",
        lambda: 96 / 32,
        "{answer:g}: its 7 x 7 crop interpolates between those few cells.",
        "96 / 32.",
        kind="warm-up",
    ),
    "05.level_64_lab": Question(
        "The lab scales Eq. 1's canonical size to its 320 px input (224 x 320 / 800 = 89.6). Which level k "
        "pools a 64 x 64 ROI there?",
        lambda: math.floor(continuous_level(64.0, 64.0, canonical_size=224 * 320 / 800)),
        "floor(4 + log2(64 / 89.6)) = floor(3.51) = {answer}: P3.",
        "log2(64 / 89.6) is about -0.49.",
        kind="reasoning",
    ),
    "05.raise_k0": Question(
        "With the slider, raise k0 from 4 to 5: does a 64 x 64 ROI move to a finer or a coarser level?",
        lambda: "coarser",
        "{answer}: k0 adds to every k before the floor.",
        "k = k0 + log2(sqrt(wh) / 224).",
        choices=("finer", "coarser"),
        revealed_by="canonical_level=k0",
    ),
    "05.wrong_level_spread": Question(
        "Pooled from the level farthest from its own, will the smallest object's 7 x 7 crop vary more or less "
        "across its 49 bins than pooled from its own level?",
        lambda: facts.wrong_level_spread(),
        "{answer}: on a coarse level the object covers less than one cell, and every bin interpolates between "
        "the same few numbers.",
        "how many P5 cells does a 20 px object cover?",
        choices=("more", "less"),
        revealed_by="state.crops",
    ),
    "05.proposals_finer": Question(
        "On average, do the proposals of 5 val images pool from finer or from coarser levels than their "
        "ground-truth boxes?",
        lambda: facts.proposals_vs_gt_levels(),
        "{answer}: the RPN keeps many boxes on parts of objects and on small clutter.",
        "are most proposals as large as whole objects?",
        choices=("finer", "coarser"),
        revealed_by="roi_levels.float().mean()",
    ),
    "05.roi_pool_offset": Question(
        "RoI pooling (the paper's) rounds a ROI's edges to the feature grid; RoIAlign does not. A ROI starts at "
        "x = 13.6 px on P2 (stride 4): by how many pixels does RoI pooling move that edge?",
        lambda: abs(roi_pool_start(13.6, 4) - 13.6),
        "{answer:.2g} px: 13.6 / 4 = 3.4 cells, rounded to 3, so the edge moves to 12 px.",
        "divide by the stride, round, multiply back.",
        kind="reasoning",
        tolerance=0.01,
        revealed_by="analysis.roi_pool_box(",
    ),
    # --- 06: the Fast R-CNN head -----------------------------------------------------------------------
    "06.box_outputs": Question(
        "How many box-delta outputs does the predictor give per ROI for shapes-mini (6 classes + background)?",
        lambda: 4 * 7.0,
        "{answer:g}: 4 deltas for each of the 7 classes, background included.",
        "the boxes are class-specific.",
        kind="warm-up",
    ),
    "06.dx_weighted": Question(
        "A proposal 50 px wide is 5 px to the left of its gt box (same size). The head's targets are scaled by "
        "the weights (10, 10, 5, 5). What is its target dx?",
        lambda: encode_one([5.0, 0.0, 55.0, 40.0], [0.0, 0.0, 50.0, 40.0], (10.0, 10.0, 5.0, 5.0))[0],
        "{answer:g}: 10 x 5 / 50.",
        "dx = 10 x (shift / width).",
        kind="reasoning",
        tolerance=0.01,
    ),
    "06.accuracy_positives": Question(
        "Will the head's accuracy be higher on all sampled ROIs or on the positive ROIs alone?",
        lambda: facts.accuracy_where_higher(),
        "{answer}: three quarters of the sample is background, which "
        "the head gets right easily; telling six shapes apart is harder.",
        "what share of the sample is background?",
        choices=("all", "positives"),
        revealed_by="accuracy on the positives",
    ),
    "06.cross_class_survivors": Question(
        "After per-class NMS at 0.5, can two detections of different classes that overlap with IoU > 0.5 both be kept?",
        lambda: "yes" if facts.cross_class_pairs() > 0 else "no",
        "{answer}: NMS runs within each class, so a 'circle' box never suppresses a 'ring' box on the same object.",
        "which boxes does per-class NMS compare?",
        choices=("yes", "no"),
        revealed_by="cross_class_pairs(",
    ),
    "06.count_without_nms": Question(
        "With NMS and the top-100 cap switched off, will this image have under 100, 100 to 1000, or over "
        "1000 detections scoring above 0.05?",
        lambda: facts.detections_without_nms(3),
        "{answer}: every proposal gives one box per class, and many classes pass 0.05.",
        "how many proposals and classes are there?",
        choices=("under 100", "100 to 1000", "over 1000"),
        revealed_by="detections before NMS",
    ),
    # --- 07: training -----------------------------------------------------------------------------------
    "07.iterations_per_epoch": Question(
        "shapes-mini has 200 training images and the CPU preset uses batches of 2. How many iterations make one epoch?",
        lambda: 100.0,
        "{answer:g}: 200 / 2.",
        "one epoch shows every image once.",
        kind="warm-up",
    ),
    "07.rising_loss": Question(
        "Which loss term grows during the first tenth of the default run before it falls: objectness, RPN "
        "box regression, classifier or box regression?",
        lambda: facts.rising_loss(),
        "{answer}: it is averaged over all sampled ROIs, and only positives have a box to regress; as the RPN "
        "learns, more sampled ROIs are positive.",
        "which terms count only the positives?",
        choices=("objectness", "rpn box regression", "classifier", "box regression"),
        revealed_by="first_rise(",
    ),
    "07.rpn_or_head": Question(
        "After the default run, which is higher: the RPN's recall after NMS, or the detector's recall at score >= 0.5?",
        lambda: facts.rpn_or_head(),
        "{answer}: the RPN's targets are simple (object or not at fixed "
        "anchors); the head's need good proposals first and six classes to tell apart.",
        "which stage has the harder job?",
        choices=("rpn", "detector"),
        revealed_by="RPN recall",
    ),
    "07.weakest_bucket": Question(
        "Which size bucket does the demo model find least often (a detection scoring >= 0.5 at IoU 0.5): "
        "small, medium or large?",
        lambda: facts.weakest_bucket(),
        "{answer}: not small, as on COCO: here medium objects are found (a box at IoU 0.5) as often as small "
        "ones, but scored below 0.5 more often.",
        "small objects are the hard case on COCO; is it so here?",
        choices=("small", "medium", "large"),
        revealed_by="recall_by_size(demo_detections",
    ),
    # --- 08: ablations ----------------------------------------------------------------------------------
    "08.p2_only_anchors": Question(
        "Row (f) puts all four anchor sizes (x 3 ratios) on P2. How many anchors is that for a 320 x 320 input?",
        lambda: 80 * 80 * 12.0,
        "{answer:g}: 80 x 80 cells x 12 anchors, four times FPN's P2 alone.",
        "12 anchors per P2 cell.",
        kind="warm-up",
    ),
    "08.top_down_2x": Question(
        "In the lab's Table 1 at 2x, FPN minus no top-down on AR_s@1k: higher, lower or no difference?",
        lambda: facts.record_verdict("ablation_rpn_cpu", "no_top_down", "AR_s@1000"),
        "{answer}, as in the paper: at 2x, small objects are as large as the bottom-up P2's receptive field.",
        "notebook 02: what does the top-down pathway bring to P2?",
        choices=DIRECTIONS,
        revealed_by="format_ablation(record)",
    ),
    "08.top_down_1x": Question(
        "And fed at 1x (160 px input, anchors halved): higher, lower or no difference?",
        lambda: facts.record_verdict("ablation_rpn_cpu_1x", "no_top_down", "AR_s@1000"),
        "{answer}: at 1x the bottom-up P2 sees every small object whole.",
        "compare the largest small object at 1x with the receptive field above.",
        choices=DIRECTIONS,
        revealed_by='read_result("ablation_rpn_cpu_1x")',
    ),
    "08.c4_large": Question(
        "On large objects (AR_l@1k), does FPN beat the single-scale C4 baseline in the lab's table: higher, "
        "lower or no difference?",
        lambda: facts.record_verdict("ablation_rpn_cpu", "c4", "AR_l@1000"),
        "{answer}: C4 puts all four anchor sizes on one stride-16 map, 12 anchors per cell; the large "
        "objects' big anchors get a dense grid and the whole pool of candidates.",
        "how many anchors of 256 px does C4 lay, and how many does FPN's P5?",
        choices=DIRECTIONS,
        revealed_by='"AR_l@1000"',
    ),
    "08.f_longer": Question(
        "Train row (f) four times longer: does its AR_s@1k rise above 10%?",
        lambda: "yes" if facts.record_mean("ablation_rpn_cpu_f4x", "p2_only", "AR_s@1000") > 0.1 else "no",
        "{answer}: four times the iterations leave the 32 px anchors as starved of positives as before: "
        "time does not fix the imbalance.",
        "does a longer run change the share of positives each size gets?",
        choices=("yes", "no"),
        revealed_by='read_result("ablation_rpn_cpu_f4x")',
    ),
    "08.t3_small": Question(
        "In the lab's Table 3 (whole detectors), FPN minus the C5 baseline on small objects (AP_s): higher, lower "
        "or no difference?",
        lambda: facts.record_verdict("ablation_detector_cpu", "c5", "AP_s"),
        "{answer}: C5's one map has a stride of 32, coarser than the lab's small objects; FPN pools them from P2 "
        "or P3.",
        "how many C5 cells does a 16 px object cover?",
        choices=DIRECTIONS,
        revealed_by='load_ablation("detector")',
    ),
    "08.t3_c4": Question(
        "Over all sizes (AP), FPN minus the C4 baseline with the conv5 head: higher, lower or no difference?",
        lambda: facts.record_verdict("ablation_detector_cpu", "c4_res5", "AP"),
        "{answer}: the conv5 head is deep, but it sees every object on one stride-16 map.",
        "the conv5 head is far deeper than the 2fc head; what does it lack that FPN has?",
        choices=DIRECTIONS,
        revealed_by='load_ablation("detector")',
    ),
    "08.speed_stage": Question(
        "Per image at the lab's scale, where does the C4 + conv5 detector spend the most time: backbone, neck, "
        "rpn or roi_heads?",
        lambda: speed.slowest_stage(facts.stored("head_speed_lab_cpu"), "c4_res5"),
        "{answer}: conv5 runs once per ROI, on a 14 x 14 map each, hundreds of times per image.",
        "how many times per image does the conv5 head run?",
        choices=speed.STAGES,
        revealed_by="speed.format_table(",
    ),
    "08.speed_ratio": Question(
        "With ResNet-50 at 800 px on this lab's CPU, is C4 + conv5's time per image divided by FPN's larger or "
        "smaller than the paper's 0.32 s / 0.148 s = 2.2 on a GPU?",
        lambda: "larger" if speed.total_ratio(facts.stored("head_speed_r50_cpu")) > 0.32 / 0.148 else "smaller",
        "{answer}: on this CPU the conv5 head's FLOPs per image dwarf everything FPN adds; how much of that a GPU "
        "hides, the lab's GPU record will show.",
        "compare the heads' MFLOPs per ROI, times 1000 ROIs.",
        choices=("larger", "smaller"),
        revealed_by="speed.format_table(",
    ),
}
