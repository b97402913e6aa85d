"""Predict, then check: the notebooks' questions, whose answers the lab computes from its own code.

In a notebook the student writes a prediction first, then asks for the verdict:

    p2_anchors = None          # your prediction: how many anchors does P2 hold for a 320 x 320 input?
    check("03.p2_anchors", p2_anchors)

    right: 19200. P2 is 320 / 4 = 80 cells on a side, and every cell holds 3 anchors: 80 x 80 x 3.

Each Question computes its answer from the package (the anchor generator, Eq. 1, the config...), so an
answer stays true when the lab changes; tests/test_questions.py checks every answer against a number
worked out by hand. A prediction is right within the question's tolerance (relative, for numbers)
or when it names the same choice (for words). `None` is "not answered yet".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fpnlab.ablation.paper import PAPER_TABLE1
from fpnlab.data import CATEGORIES
from fpnlab.engine.presets import PRESETS
from fpnlab.engine.state import lr_factor
from fpnlab.errors import FpnlabError
from fpnlab.model.anchors import AnchorGenerator
from fpnlab.model.backbone import ResNetBody
from fpnlab.model.boxes import BoxCoder, box_iou
from fpnlab.model.config import PAPER_CANONICAL_SIZE
from fpnlab.model.fpn import FPN
from fpnlab.model.levels import continuous_level
from fpnlab.teaching.receptive import receptive_fields, with_3x3_convs
from fpnlab.typed_answer import as_number

CPU = PRESETS["cpu"]  # the lab's CPU scale: the demo detector's settings


@dataclass(frozen=True)
class Question:
    """One prediction to make: its answer (computed), how close counts as right, and why it is so."""

    prompt: str
    answer: Callable[[], Any]
    why: str  # shown after the verdict; "{answer}" is replaced by the answer
    tolerance: float = 0.0  # relative, for numeric answers


def _anchor_count(size: int, strides: tuple[int, ...]) -> int:
    """Anchors of the CPU model's generator over the given levels for a size x size input."""
    generator = AnchorGenerator(tuple((s,) for s in CPU.model.anchor_sizes[: len(strides)]), CPU.model.aspect_ratios)
    return sum(generator.num_anchors_per_level([(size // s, size // s) for s in strides]))


def _iou(a: list[float], b: list[float]) -> float:
    return float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0])


def _encode(gt: list[float], anchor: list[float], weights: tuple[float, ...]) -> list[float]:
    return BoxCoder(weights).encode(torch.tensor([gt]), torch.tensor([anchor]))[0].tolist()


QUESTIONS: dict[str, Question] = {
    "00.small_at_input": Question(
        "A COCO 'small' object is under 32 px on a side. The lab upsamples shapes-mini's 160 px images to the "
        "network's input size. How many pixels wide is the largest small object at the input?",
        lambda: 32 * CPU.model.min_size / 160,
        "{answer:g} px: the 160 px images are resized to {min_size} px (x{scale:g}), so a 32 px object becomes "
        "{answer:g} px, about the size the paper's small objects reach at its 800 px input.",
    ),
    "00.level_224": Question(
        "Eq. 1 with the paper's canonical size 224: which level k pools a 224 x 224 ROI?",
        lambda: math.floor(continuous_level(224.0, 224.0)),
        "k = 4 + log2(224 / 224) = {answer}: the canonical ROI goes to P4.",
    ),
    "00.level_100x400": Question(
        "And a 100 x 400 ROI, with the same 224?",
        lambda: math.floor(continuous_level(100.0, 400.0)),
        "sqrt(100 x 400) = 200, k = floor(4 + log2(200 / 224)) = floor(3.84) = {answer}: Eq. 1 uses the area, "
        "so a long thin ROI goes where a square of the same area would.",
    ),
    "01.stride_c4": Question(
        "How many input pixels apart are two neighbouring cells of C4 (its stride)?",
        lambda: ResNetBody("resnet_tiny", "bn").strides["c4"],
        "{answer}: the stem halves the image twice (conv1 and the max pool), then layer2, layer3 halve it once "
        "each: 2^4 = 16.",
    ),
    "01.c3_rows": Question(
        "The demo detector's input is 320 x 320. How many rows does its C3 map have?",
        lambda: CPU.model.min_size // 8,
        "320 / 8 = {answer}: C3 has stride 8.",
    ),
    "01.rf_c2": Question(
        "How many input pixels wide is the receptive field of one C2 cell of ResNet-tiny (stem + one block)?",
        lambda: receptive_fields(ResNetBody("resnet_tiny", "bn"))["c2"],
        "{answer}: 7 (conv1) + 2 x 2 (max pool after a stride of 2) + 2 x 4 + 2 x 4 (two 3x3 convs at stride 4).",
    ),
    "02.stride_p6": Question(
        "P6 is P5 subsampled by 2. What is its stride?",
        lambda: FPN([8, 8, 8, 8], 8).strides["p6"],
        "{answer}: P5 has stride 32, and P6 takes every other cell of it.",
    ),
    "02.p4_channels": Question(
        "How many channels does every P level of the demo detector have (d in the paper)?",
        lambda: CPU.model.fpn_channels,
        "{answer}: every lateral 1x1 conv maps C_k to the same d channels, so that the top-down sum can add them "
        "(the paper uses d = 256; the lab's CPU model uses {answer}).",
    ),
    "02.p2_rf_bottom_up": Question(
        "Without the top-down pathway, P2 = 3x3(1x1(C2)), then the RPN adds its own 3x3 conv. How many input "
        "pixels does one RPN cell on P2 see?",
        lambda: with_3x3_convs(receptive_fields(ResNetBody("resnet_tiny", "bn"))["c2"], 4, 2),
        "{answer}: C2's 27, plus 2 x 4 for each 3x3 conv at stride 4. An object larger than that cannot be "
        "seen whole by the bottom-up P2 (notebook 08).",
    ),
    "03.p2_anchors": Question(
        "How many anchors does P2 hold for a 320 x 320 input?",
        lambda: _anchor_count(320, (4,)),
        "{answer}: 320 / 4 = 80 cells on a side, 3 anchors (aspect ratios) per cell: 80 x 80 x 3.",
    ),
    "03.all_anchors": Question(
        "And all of P2..P5 together?",
        lambda: _anchor_count(320, (4, 8, 16, 32)),
        "{answer}: 3 x (80^2 + 40^2 + 20^2 + 10^2); P2 alone holds three quarters of them.",
    ),
    "03.iou_24_in_32": Question(
        "A 24 x 24 object sits exactly in the middle of a 32 x 32 anchor. What is their IoU?",
        lambda: _iou([4.0, 4.0, 28.0, 28.0], [0.0, 0.0, 32.0, 32.0]),
        "{answer:.4g}: the object lies inside the anchor, so IoU = 24^2 / 32^2. Below 0.7, so this anchor is "
        "only positive as the object's best anchor.",
        tolerance=0.02,
    ),
    "04.deltas_per_location": Question(
        "How many box-delta channels does the RPN head output per location on P3?",
        lambda: 4 * len(CPU.model.aspect_ratios),
        "{answer}: 4 deltas (tx, ty, tw, th) for each of the 3 anchors.",
    ),
    "04.positives_per_image": Question(
        "The RPN samples 256 anchors per image to train on, at most half positive. At most how many positives?",
        lambda: int(CPU.model.rpn.batch_size_per_image * CPU.model.rpn.positive_fraction),
        "{answer}: 256 x 0.5; with fewer positive anchors in the image the rest is filled with negatives.",
    ),
    "04.tx": Question(
        "An anchor (0, 0, 32, 32) and a gt box (4, 0, 36, 32): what is the RPN's regression target tx?",
        lambda: _encode([4.0, 0.0, 36.0, 32.0], [0.0, 0.0, 32.0, 32.0], (1.0, 1.0, 1.0, 1.0))[0],
        "{answer:g}: the centres are 4 px apart and tx = (x_gt - x_a) / w_a = 4 / 32.",
        tolerance=0.01,
    ),
    "05.level_64_lab": Question(
        "The lab scales Eq. 1's canonical size to its 320 px input (224 x 320 / 800 = 89.6). Which level pools a "
        "64 x 64 ROI there?",
        lambda: math.floor(continuous_level(64.0, 64.0, canonical_size=224 * CPU.model.min_size / 800)),
        "floor(4 + log2(64 / 89.6)) = floor(3.51) = {answer}: P3. With the paper's 224 it would go to P2.",
    ),
    "05.boundary": Question(
        "With the canonical size 224, which square ROI side lies exactly on the border between P3 and P4?",
        lambda: PAPER_CANONICAL_SIZE,
        "{answer}: k = 4 exactly there; anything smaller goes to P3.",
    ),
    "05.cells_on_p5": Question(
        "A 96 x 96 ROI is pooled from P5 (stride 32). How many P5 cells does it cover along one side?",
        lambda: 96 / 32,
        "{answer:g}: its 7 x 7 RoIAlign crop interpolates between just those few cells.",
    ),
    "06.fc6_inputs": Question(
        "How many numbers does the box head's first FC layer take per ROI in the demo detector?",
        lambda: CPU.model.fpn_channels * 7 * 7,
        "{answer}: the 7 x 7 RoIAlign crop of all {channels} channels, flattened.",
    ),
    "06.box_outputs": Question(
        "How many box-delta outputs does the Fast R-CNN predictor give per ROI for shapes-mini (6 classes + "
        "background)?",
        lambda: 4 * (len(CATEGORIES) + 1),
        "{answer}: 4 deltas for each of the 7 classes, background included (class-specific boxes).",
    ),
    "06.dx_weighted": Question(
        "A proposal 50 px wide is 5 px to the left of its gt box (same size). The head's targets are scaled by "
        "the weights (10, 10, 5, 5). What is its target dx?",
        lambda: _encode([5.0, 0.0, 55.0, 40.0], [0.0, 0.0, 50.0, 40.0], (10.0, 10.0, 5.0, 5.0))[0],
        "{answer:g}: 10 x 5 / 50. The weights make the small offsets of good proposals about as large as the RPN's.",
        tolerance=0.01,
    ),
    "07.iterations_per_epoch": Question(
        "shapes-mini has 200 training images and the CPU preset uses batches of 2. How many iterations make one epoch?",
        lambda: 200 // CPU.batch_size,
        "{answer}: 200 / 2.",
    ),
    "07.lr_mid_warmup": Question(
        "The CPU preset's lr is 0.03 with a linear warm-up over 100 iterations from 0.001 x lr. What is the lr "
        "at iteration 50?",
        lambda: CPU.lr * lr_factor(50, CPU),
        "{answer:.4g}: half-way from 0.00003 to 0.03.",
        tolerance=0.02,
    ),
    "07.lr_at_end": Question(
        "And at the last iteration of the cosine schedule?",
        lambda: CPU.lr * lr_factor(CPU.iterations, CPU),
        "{answer:g}: the cosine decays to zero at the end of the run.",
    ),
    "08.paper_top_down_gain": Question(
        "In the paper's Table 1, by how many points of AR_s@1k does FPN (c) beat the bottom-up pyramid (d)?",
        lambda: round(PAPER_TABLE1["fpn"]["AR_s@1000"] - PAPER_TABLE1["no_top_down"]["AR_s@1000"], 1),
        "{answer:g} points: 44.9 - 30.5.",
        tolerance=0.01,
    ),
    "08.p2_only_anchors": Question(
        "Row (f) puts all four anchor sizes (x 3 ratios) on P2. How many anchors is that for a 320 x 320 input?",
        lambda: 80 * 80 * 3 * len(CPU.model.anchor_sizes),
        "{answer}: 80 x 80 cells x 12 anchors, four times FPN's P2 alone.",
    ),
    "08.larger_input_rf": Question(
        "P2's bottom-up receptive field with the RPN's 3x3 is 43 px. Fed at 1x (160 px), how large is the largest "
        "small object at the input?",
        lambda: 32,
        "{answer} px: smaller than the receptive field, so the bottom-up P2 sees every small object whole "
        "and top-down semantics add little; at 2x it is 64 px and they matter.",
    ),
}


def check(name: str, prediction: Any) -> None:
    """Print the verdict on a prediction for question `name`, and why the answer is what it is."""
    question = lookup(name)
    if prediction is None:
        print(f"not answered yet: {question.prompt}\nReplace None with your prediction and run the cell again.")
        return
    answer = question.answer()
    why = question.why.format(
        answer=answer, min_size=CPU.model.min_size, scale=CPU.model.min_size / 160, channels=CPU.model.fpn_channels
    )
    print(f"{'right' if is_right(name, prediction) else 'not quite'}: you said {prediction!r}. {why}")


def lookup(name: str) -> Question:
    if not isinstance(name, str) or name not in QUESTIONS:
        raise FpnlabError(f"unknown question {name!r}; known: {', '.join(QUESTIONS)}.")
    return QUESTIONS[name]


def is_right(name: str, prediction: Any) -> bool:
    """Whether `prediction` answers question `name` (None never does)."""
    question = lookup(name)
    return prediction is not None and agrees(prediction, question.answer(), question.tolerance)


def agrees(prediction: Any, answer: Any, tolerance: float) -> bool:
    """Numbers within `tolerance` (relative), or the same word (case and spaces ignored). A number may be
    typed any way fpnlab.typed_answer.as_number reads (a numpy or torch scalar, "0.56", "P4", ...)."""
    if isinstance(answer, str):
        return str(prediction).strip().lower() == answer.lower()
    number = as_number(prediction)
    return number is not None and math.isclose(number, answer, rel_tol=tolerance, abs_tol=1e-9)
