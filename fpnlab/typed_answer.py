"""What a student types as a prediction, read as one number: `as_number`.

    as_number(19200)               -> 19200.0
    as_number(np.float32(0.56))    -> 0.56...        numpy and torch scalars
    as_number(torch.tensor([4]))   -> 4.0            one-element tensors and arrays
    as_number(Fraction(9, 16))     -> 0.5625         Fraction, Decimal
    as_number(" 19,200 ")          -> 19200.0        numeric strings: "0.56", "1e3", "9/16", "19_200"
    as_number("P4")                -> 4.0            a pyramid level named for its number
    as_number(True), as_number([1, 2]), as_number("four")  -> None   (not one number)

The notebooks' questions read numbers with it (fpnlab.teaching.questions.answers).
"""

from __future__ import annotations

import math
import numbers
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

LEVEL = re.compile(r"[pPcC](\d{1,2})")  # "p4", "P4", "c5": the level's number
THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")  # "19,200", "1,000.5"


def as_number(value: Any) -> float | None:
    """`value` as one finite or infinite float, or None when it is not a single number (see the module doc)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _from_text(value)
    value = _single_item(value)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _single_item(value: Any) -> Any:
    """The Python number inside a numpy or torch scalar or one-element array; anything else as it is."""
    size = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)
    if size == 1 and callable(getattr(value, "item", None)):
        return value.item()
    return value


def _from_text(text: str) -> float | None:
    text = text.strip().replace("_", "").replace(" ", "")
    level = LEVEL.fullmatch(text)
    if level:
        return float(level.group(1))
    if THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    try:
        number = Fraction(text)
    except (ValueError, ZeroDivisionError):
        try:
            number = Decimal(text)  # "inf", "nan" and the like
        except InvalidOperation:
            return None
    result = float(number)
    return None if math.isnan(result) else result
