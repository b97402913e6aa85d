"""What a student types is read as the number they meant (fpnlab.typed_answer.as_number), or not at all."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch

from fpnlab.typed_answer import as_number


@pytest.mark.parametrize(
    "typed, number",
    [
        (19200, 19200.0),
        (0.5625, 0.5625),
        (np.int64(19200), 19200.0),
        (np.float32(0.5), 0.5),
        (np.array(3), 3.0),
        (np.array([4.0]), 4.0),
        (torch.tensor(64), 64.0),
        (torch.tensor([0.25]), 0.25),
        (torch.tensor([[2]], dtype=torch.int32), 2.0),
        (Fraction(9, 16), 0.5625),
        (Decimal("0.125"), 0.125),
        ("19200", 19200.0),
        (" 0.56 ", 0.56),
        ("19,200", 19200.0),
        ("19_200", 19200.0),
        ("1e3", 1000.0),
        ("9/16", 0.5625),
        ("-3", -3.0),
        ("P4", 4.0),
        ("p3", 3.0),
        ("c5", 5.0),
        ("inf", float("inf")),
    ],
)
def test_a_number_typed_any_way_is_read_as_that_number(typed, number):
    assert as_number(typed) == number


@pytest.mark.parametrize(
    "typed",
    [True, np.bool_(True), torch.tensor(True), [1, 2], (3,), np.array([1, 2]), torch.zeros(2), "four", "", "1/0"]
    + ["nan", "P", "1,2,3,4", None, {"a": 1}, 2 + 3j],
)
def test_anything_else_is_not_a_number(typed):
    assert as_number(typed) is None
