"""One predict-then-check question, and what the question lists share (choices, small worked computations).

kind "behaviour": how the system behaves (a direction, an ordering, which level), measured on the demo
detector (fpnlab.teaching.facts) or read from a stored record; "reasoning": worked out on paper from what
the notebook showed; "warm-up": one multiplication. `revealed_by` is code of the notebook cell that shows
the answer: tests/test_questions.py checks that it comes after the question, and that no number answer is
written or printed above its question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fpnlab.model.boxes import BoxCoder, box_iou
from fpnlab.teaching import facts

LEVELS = ("P2", "P3", "P4", "P5")
DIRECTIONS = ("higher", "lower", "no difference")


@dataclass(frozen=True)
class Question:
    """One prediction to make: its answer (computed), how close counts as right, a hint, and why it is so."""

    prompt: str
    answer: Callable[[], Any]
    why: str  # shown with the verdict; "{answer}" is replaced by the answer
    hint: str  # shown after a first wrong answer: what to look at
    kind: str = "behaviour"  # "behaviour", "reasoning" or "warm-up"
    choices: tuple[str, ...] = ()  # the words an answer may be (empty: a number)
    tolerance: float = 0.0  # relative, for numbers
    revealed_by: str = ""  # code in the notebook cell that shows the answer
    same_number_above: str = ""  # why the answer's number may appear above the question (it means something else)


def input_size() -> int:
    return facts.demo()[0].config.min_size  # the demo detector's input size: 320 px


def iou_of(a: list[float], b: list[float]) -> float:
    return float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0])


def encode_one(gt: list[float], anchor: list[float], weights: tuple[float, ...]) -> list[float]:
    return BoxCoder(weights).encode(torch.tensor([gt]), torch.tensor([anchor]))[0].tolist()


def roi_pool_start(x: float, stride: int) -> float:
    """Where RoI pooling starts a box edge at x: rounded to the nearest cell of a map with this stride."""
    return round(x / stride) * stride


def more_or_fewer(gains: torch.Tensor) -> str:
    return "more" if int((gains > 0).sum()) > len(gains) / 2 else "fewer"


def direction(after: float, before: float) -> str:
    return "higher" if after > before else "lower" if after < before else "no difference"
