"""The FPN paper's ablation numbers (Lin et al., CVPR 2017), in percent, as the lab compares with them.

ResNet-50, COCO minival, trained on trainval35k; read from the paper's Tables 1-3. Rows are the
variants of fpnlab.ablation.variants (c4, c5, fpn, no_top_down, no_lateral, p2_only; c4_res5, the C4 model
with the paper's conv5 head, in Table 3 only); keys match fpnlab.engine.evaluate's metric names. AR_s@100 is
not in the paper, so no row has it.
"""

from __future__ import annotations

PAPER_TABLE1: dict[str, dict[str, float]] = {  # RPN proposals (Table 1)
    "c4": {"AR@100": 36.1, "AR@1000": 48.3, "AR_s@1000": 32.0, "AR_m@1000": 58.7, "AR_l@1000": 62.2},
    "c5": {"AR@100": 36.3, "AR@1000": 44.9, "AR_s@1000": 25.3, "AR_m@1000": 55.5, "AR_l@1000": 64.2},
    "fpn": {"AR@100": 44.0, "AR@1000": 56.3, "AR_s@1000": 44.9, "AR_m@1000": 63.4, "AR_l@1000": 66.2},
    "no_top_down": {"AR@100": 37.4, "AR@1000": 49.5, "AR_s@1000": 30.5, "AR_m@1000": 59.9, "AR_l@1000": 68.0},
    "no_lateral": {"AR@100": 34.5, "AR@1000": 46.1, "AR_s@1000": 26.5, "AR_m@1000": 57.4, "AR_l@1000": 64.7},
    "p2_only": {"AR@100": 38.4, "AR@1000": 51.3, "AR_s@1000": 35.1, "AR_m@1000": 59.7, "AR_l@1000": 67.6},
}
PAPER_TABLE2: dict[str, dict[str, float]] = {  # Fast R-CNN on the fixed proposals of Table 1(c) (Table 2)
    "c4": {"AP50": 54.7, "AP": 31.9, "AP_s": 15.7, "AP_m": 36.5, "AP_l": 45.5},  # conv5 head on C4
    "c5": {"AP50": 52.9, "AP": 28.8, "AP_s": 11.9, "AP_m": 32.4, "AP_l": 43.4},
    "fpn": {"AP50": 56.9, "AP": 33.9, "AP_s": 17.8, "AP_m": 37.7, "AP_l": 45.8},
    "no_top_down": {"AP50": 44.9, "AP": 24.9, "AP_s": 10.9, "AP_m": 24.4, "AP_l": 38.5},
    "no_lateral": {"AP50": 54.0, "AP": 31.3, "AP_s": 13.3, "AP_m": 35.2, "AP_l": 45.3},
    "p2_only": {"AP50": 56.3, "AP": 33.4, "AP_s": 17.3, "AP_m": 37.3, "AP_l": 45.6},
}
# Row (a) of Table 3: the C4 baseline with the ResNet's conv5 stage as its ROI head (the lab's c4_res5). The
# lab's c4 row (C4 with the 2fc head) has no row of its own in the paper, so it is shown beside row (a).
_C4_CONV5 = {"AP50": 53.1, "AP": 31.6, "AP_s": 13.2, "AP_m": 35.6, "AP_l": 47.1}
PAPER_TABLE3: dict[str, dict[str, float]] = {  # Faster R-CNN, RPN and detector on one backbone (Table 3)
    "c4": _C4_CONV5,
    "c4_res5": _C4_CONV5,
    "c5": {"AP50": 51.7, "AP": 28.0, "AP_s": 9.6, "AP_m": 31.9, "AP_l": 43.1},
    "fpn": {"AP50": 56.9, "AP": 33.9, "AP_s": 17.8, "AP_m": 37.7, "AP_l": 45.8},
}

# Segment proposals (Sec. 6): segment AR with 1000 proposals per image, from the paper's Table 6 (COCO, ResNet-50 for
# FPN). Only the figures the lab quotes are kept (the issue that asked for them names these); the table's other columns
# are not copied. "fpn" is the single 5x5 MLP on every pyramid level (what fpnlab.model.segment_proposals builds);
# "fpn_5x5_7x7" adds a second, 7x7 MLP for half octaves. The lab's "single" variant (one level) has no row there.
PAPER_TABLE6: dict[str, dict[str, float]] = {
    "deepmask": {"AR@1000": 37.1, "AR_s@1000": 15.8},
    "sharpmask": {"AR@1000": 39.8},
    "fpn": {"AR@1000": 43.4, "AR_s@1000": 32.5},
    "fpn_5x5_7x7": {"AR@1000": 45.7},
}
