"""What a student types as a prediction, read as a number or as one of a question's choices.

    read_prediction("1/2", ())                       0.5     (numbers: fpnlab.typed_answer.as_number)
    read_prediction(torch.tensor([64]), ())          64.0
    read_prediction(4, ("P2", "P3", "P4", "P5"))     "P4"
    read_prediction(" No-Difference ", ("higher", "lower", "no difference"))    "no difference"

Anything else (a list, a word for a number, a number for a word question) is one FpnlabError that says
what the question takes.
"""

from __future__ import annotations

import math
from typing import Any

from fpnlab.errors import FpnlabError
from fpnlab.typed_answer import as_number


def read_prediction(value: Any, choices: tuple[str, ...]) -> float | str | None:
    """`value` as a float (a number question: no choices) or as one of `choices` (None stays None)."""
    if value is None:
        return None
    if choices:
        return _choice(value, choices)
    number = as_number(value)
    if number is None or not math.isfinite(number):
        raise FpnlabError(f"this question takes a number, such as 64, 0.5 or '1/2'; got {value!r}")
    return number


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    """One of `choices`, in any case, with hyphens or spaces; a level ("P4") also as its number (4)."""
    levels = all(c[:1] in "Pp" and c[1:].isdigit() for c in choices)
    if not isinstance(value, str):
        number = as_number(value)
        value = f"P{int(number)}" if levels and number is not None and float(number).is_integer() else value
    if isinstance(value, str):
        typed = " ".join(value.strip().lower().replace("-", " ").replace("_", " ").split())
        for choice in choices:
            if typed == choice.lower():
                return choice
    raise FpnlabError(f"this question takes one of {', '.join(repr(c) for c in choices)}; got {value!r}")
