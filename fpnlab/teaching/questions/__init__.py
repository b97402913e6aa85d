"""Predict, then check: write a prediction, run the cell, and the lab says whether it is right.

    p2_fires = None          # your prediction: which level fires most on this image's smallest object?
    check("04.level_fires", p2_fires)

A first wrong answer gets a hint that says what to look at; the second gets the answer and why, as does
`check(name, reveal=True)` at any time. Most questions ask how the system *behaves* (a direction, an
ordering, which level): their answers are measured on the shipped demo detector and shapes-mini
(fpnlab.teaching.facts) or read from the stored records in results/, the way the notebook cell below the
question then shows it. A few are warm-ups (one multiplication) or reasoning (worked out on paper).

A prediction may be typed as the student likes: numbers as int, float, Fraction, Decimal, numpy or torch
scalars, one-element tensors or arrays, or strings ("0.5", "1/2", "19,200"); a level as "P4", "p4" or 4;
a choice in any case (answers.py, fpnlab.typed_answer). The questions themselves: pyramid.py (notebooks
00-03), detector.py (04-08), masks.py (09).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from fpnlab.errors import FpnlabError
from fpnlab.teaching.questions import detector, masks, pyramid
from fpnlab.teaching.questions.answers import read_prediction
from fpnlab.teaching.questions.question import Question

QUESTIONS: dict[str, Question] = {**pyramid.QUESTIONS, **detector.QUESTIONS, **masks.QUESTIONS}  # notebook order

_wrong: Counter[str] = Counter()  # wrong answers so far, per question, in this session


def check(name: str, prediction: Any = None, reveal: bool = False) -> None:
    """Print the verdict on a prediction for question `name` (a hint first, the answer after two misses)."""
    question = lookup(name)
    if reveal:
        print(f"the answer: {shown(question)}. {explanation(question)}")
        return
    if prediction is None:
        print(f"not answered yet: {question.prompt}\nReplace None with your prediction and run the cell again.")
        return
    try:
        value = read_prediction(prediction, question.choices)
    except FpnlabError as err:
        print(f"{err} (not counted as a try)")
        return
    if agrees(value, question.answer(), question.tolerance):
        print(f"right: you said {value!r}. {explanation(question)}")
        return
    _wrong[name] += 1
    if _wrong[name] == 1:
        print(f"not quite: you said {value!r}. Hint: {question.hint} Try again, or check({name!r}, reveal=True).")
    else:
        print(f"not quite: you said {value!r}; the answer is {shown(question)}. {explanation(question)}")


def lookup(name: str) -> Question:
    if not isinstance(name, str) or name not in QUESTIONS:
        raise FpnlabError(f"unknown question {name!r}; known: {', '.join(QUESTIONS)}.")
    return QUESTIONS[name]


def shown(question: Question) -> str:
    """The answer as the student would write it."""
    answer = question.answer()
    return f"{answer:g}" if isinstance(answer, float) else str(answer)


def explanation(question: Question) -> str:
    return question.why.format(answer=question.answer())


def is_right(name: str, prediction: Any) -> bool:
    """Whether `prediction` answers question `name` (None and unreadable predictions never do)."""
    question = lookup(name)
    try:
        value = read_prediction(prediction, question.choices)
    except FpnlabError:
        return False
    return value is not None and agrees(value, question.answer(), question.tolerance)


def agrees(prediction: Any, answer: Any, tolerance: float) -> bool:
    """Numbers within `tolerance` (relative), or the same choice."""
    if isinstance(answer, str):
        return isinstance(prediction, str) and prediction.lower() == answer.lower()
    return isinstance(prediction, float) and math.isclose(prediction, answer, rel_tol=tolerance, abs_tol=1e-9)
