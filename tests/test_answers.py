"""The instructors' worked answers (instructor/answers.md): every numeric one is a code block that asserts it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ANSWERS = Path(__file__).resolve().parent.parent / "instructor" / "answers.md"
BLOCKS = re.findall(r"```python\n(.*?)```", ANSWERS.read_text(), flags=re.S)


def test_there_are_worked_numeric_answers():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_numeric_answer_holds(code):
    exec(compile(code, str(ANSWERS), "exec"), {})
