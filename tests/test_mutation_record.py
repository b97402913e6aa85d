"""results/mutation.json (make mutate) covers every module tools/mutate.py names, under its current path,
each with a kill rate of at least 85%: a module that moved, or one added to the list, shows here until its
mutants have been run again."""

from __future__ import annotations

import json
from pathlib import Path

from tools.mutate import TESTS

RECORD = Path(__file__).resolve().parents[1] / "results" / "mutation.json"


def test_every_listed_module_has_a_line_and_no_line_is_stale():
    modules = json.loads(RECORD.read_text())["modules"]
    assert set(modules) == set(TESTS)


def test_every_module_kills_at_least_85_percent_of_its_mutants():
    modules = json.loads(RECORD.read_text())["modules"]
    rates = {name: line["kill_rate"] for name, line in modules.items()}
    assert all(rate is not None and rate >= 0.85 for rate in rates.values()), rates
    for name, line in modules.items():  # the rate is the counts' own: detected / (all - equivalent)
        detected = sum(n for status, n in line["verdicts"].items() if status not in ("survived", "no tests"))
        judged = line["mutants"] - len(line["equivalent"])
        assert line["kill_rate"] == round(detected / judged, 3), name
        assert line["tests"] == TESTS[name]
