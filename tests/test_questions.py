"""Predict-then-check questions: every answer the lab computes equals the one worked out by hand here."""

from __future__ import annotations

import math

import pytest

from fpnlab.errors import FpnlabError
from fpnlab.teaching.questions import QUESTIONS, agrees, check, is_right

# Worked out by hand for the lab's CPU scale (320 px input, anchors 32..256 on P2..P5, 64 FPN channels).
BY_HAND = {
    "00.small_at_input": 64,
    "00.level_224": 4,
    "00.level_100x400": 3,
    "01.stride_c4": 16,
    "01.c3_rows": 40,
    "01.rf_c2": 7 + 2 * 2 + 2 * 4 + 2 * 4,
    "02.stride_p6": 64,
    "02.p4_channels": 64,
    "02.p2_rf_bottom_up": 27 + 8 + 8,
    "03.p2_anchors": 80 * 80 * 3,
    "03.all_anchors": 3 * (80**2 + 40**2 + 20**2 + 10**2),
    "03.iou_24_in_32": 0.5625,
    "04.deltas_per_location": 12,
    "04.positives_per_image": 128,
    "04.tx": 0.125,
    "05.level_64_lab": 3,
    "05.boundary": 224,
    "05.cells_on_p5": 3,
    "06.fc6_inputs": 64 * 49,
    "06.box_outputs": 28,
    "06.dx_weighted": 1.0,
    "07.iterations_per_epoch": 100,
    "07.lr_mid_warmup": 0.03 * (0.001 * 0.5 + 0.5),
    "07.lr_at_end": 0.0,
    "08.paper_top_down_gain": 14.4,
    "08.p2_only_anchors": 80 * 80 * 12,
    "08.larger_input_rf": 32,
}


def test_every_question_has_a_hand_worked_answer():
    assert set(BY_HAND) == set(QUESTIONS)


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_answers_equal_the_hand_worked_ones(name):
    assert math.isclose(QUESTIONS[name].answer(), BY_HAND[name], rel_tol=1e-9, abs_tol=1e-12)


def test_every_notebook_asks_at_least_three():
    per_notebook = {}
    for name in QUESTIONS:
        per_notebook[name[:2]] = per_notebook.get(name[:2], 0) + 1
    assert sorted(per_notebook) == [f"{n:02d}" for n in range(9)] and min(per_notebook.values()) >= 3


def test_check_says_right_wrong_or_not_answered(capsys):
    check("03.p2_anchors", 19200)
    assert capsys.readouterr().out.startswith("right: you said 19200. 19200: 320 / 4 = 80 cells")
    check("03.p2_anchors", 6400)
    assert capsys.readouterr().out.startswith("not quite: you said 6400.")
    check("03.p2_anchors", None)
    assert capsys.readouterr().out.startswith("not answered yet: How many anchors does P2 hold")
    assert is_right("03.iou_24_in_32", 0.56) and not is_right("03.iou_24_in_32", None)  # 2% tolerance
    with pytest.raises(FpnlabError, match="unknown question '03.p7'"):
        check("03.p7", 1)


def test_agreement_rules():
    assert agrees(3.0, 3, 0.0) and not agrees(True, 1, 0.0) and agrees("3", 3, 0.0) and not agrees("three", 3, 0.0)
    assert agrees(" Fewer ", "fewer", 0.0) and not agrees("more", "fewer", 0.0)
    assert agrees(0.0151, 0.015015, 0.02) and not agrees(0.016, 0.015015, 0.02)


def test_check_takes_only_a_question_name(capsys):
    with pytest.raises(FpnlabError, match=r"unknown question \['03.p2_anchors'\]"):
        check(["03.p2_anchors"], 19200)
