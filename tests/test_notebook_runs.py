"""The stored runs of notebooks 07 and 08 (fpnlab.teaching.notebook_runs, `make notebook-runs`) are the runs the
notebooks start: the settings cells' defaults are the settings stored, and each record holds exactly those
runs, on the schedule the runner gives them today."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat

from fpnlab.ablation.runner import base_config, same_schedule
from fpnlab.teaching.notebook_runs import NOTEBOOK07, NOTEBOOK08, NOTEBOOK08_TABLE3

ROOT = Path(__file__).resolve().parents[1]


def settings_of(notebook: str, marker: str) -> dict[str, object]:
    """The plain values the notebook's settings cell (the first code cell holding `marker`) assigns
    (NAME = literal), read without running it."""
    for cell in nbformat.read(ROOT / "notebooks" / notebook, as_version=4).cells:
        if cell.cell_type == "code" and marker in cell.source:
            tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!"))))
            values = {}
            for node in tree.body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    try:
                        values[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
            return values
    raise AssertionError(f"{notebook}: no settings cell")


def record(name: str) -> dict:
    return json.loads((ROOT / "results" / f"{name}.json").read_text())


def runs_of(name: str) -> set[tuple[str, int]]:
    return {(run["variant"], run["seed"]) for run in record(name)["runs"]}


def test_notebook_08s_settings_are_the_stored_reruns():
    settings = settings_of("08_ablations.ipynb", "RERUN_SEEDS =")
    assert list(NOTEBOOK08["variants"]) == settings["RERUN_VARIANTS"]
    assert list(NOTEBOOK08_TABLE3["variants"]) == settings["TABLE3_VARIANTS"]
    assert NOTEBOOK08["seeds"] == NOTEBOOK08_TABLE3["seeds"] == settings["RERUN_SEEDS"] == (3, 4)


def test_each_stored_rerun_holds_exactly_the_notebooks_runs_on_todays_schedule():
    for name, stage, settings in (
        ("notebook08_rerun", "rpn", NOTEBOOK08),
        ("notebook08_rerun_table3", "detector", NOTEBOOK08_TABLE3),
    ):
        expected = {(v, s) for v in settings["variants"] for s in settings["seeds"]}
        assert runs_of(name) == expected, name
        assert same_schedule(record(name)["schedule"], base_config(stage, settings["preset"], {})), name
        assert record(name)["pending"] == [], name


def test_the_table3_rerun_uses_seeds_the_stored_table_never_saw():
    stored_seeds = {seed for _, seed in runs_of("ablation_detector_cpu")}
    assert stored_seeds == {0, 1, 2}
    assert not stored_seeds & set(NOTEBOOK08_TABLE3["seeds"])
    assert record("ablation_detector_cpu")["schedule"] == record("notebook08_rerun_table3")["schedule"]


def test_notebook_07_record_is_its_default_run():
    settings = settings_of("07_train_detector.ipynb", "MAX_VAL_IMAGES =")
    assert settings["MAX_VAL_IMAGES"] == NOTEBOOK07["max_val_images"]
    assert record("notebook07_default")["settings"] == NOTEBOOK07
