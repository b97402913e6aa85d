"""The ablation runner: the paper's rows, the spread rule, and a tiny end-to-end run that resumes."""

from __future__ import annotations

import json
import math

import pytest

import fpnlab.ablation.runner as ablation
from fpnlab.ablation.paper import PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3
from fpnlab.ablation.report import compare, compare_rows, load_ablation, mean_std, run_means, summarize
from fpnlab.ablation.runner import run_ablation, variant_config
from fpnlab.ablation.variants import STAGES, VARIANTS
from fpnlab.cli import main as cli
from fpnlab.errors import FpnlabError

TINY = dict(iterations=3, warmup_iterations=1)  # on top of the "test" preset: seconds per run


@pytest.mark.parametrize(
    "name, neck, top_down, lateral, levels",
    [
        ("c4", "c4", True, True, ("c4",)),
        ("c5", "c5", True, True, ("c5",)),
        ("fpn", "fpn", True, True, ("p2", "p3", "p4", "p5")),
        ("no_top_down", "fpn", False, True, ("p2", "p3", "p4", "p5")),
        ("no_lateral", "fpn", True, False, ("p2", "p3", "p4", "p5")),
        ("p2_only", "fpn", True, True, ("p2",)),
    ],
)
def test_every_variant_changes_only_its_switches(name, neck, top_down, lateral, levels):
    base = ablation.base_config("rpn", "test", {})  # the test preset's model has the CPU levels P2..P5
    model = variant_config(base, name, seed=3).model
    assert model.rpn_only and model.rpn.test.post_nms_top_n == 1000  # the rpn stage: RPN-only, AR@1k
    assert (model.neck, model.top_down, model.lateral, model.rpn_levels()) == (neck, top_down, lateral, levels)
    single = len(levels) == 1  # single-level rows rank as many candidates as FPN does over its 4 levels
    assert model.rpn.test.pre_nms_top_n == (4000 if single else 1000)
    assert model.rpn.train.pre_nms_top_n == base.model.rpn.train.pre_nms_top_n * (4 if single else 1)
    same = {k: v for k, v in vars(model).items() if k not in ("neck", "top_down", "lateral", "levels", "rpn")}
    assert same == {k: v for k, v in vars(base.model).items() if k in same}
    assert variant_config(base, name, seed=3).seed == 3


def test_paper_tables_cover_the_rows_and_match_the_gains_the_issue_quotes():
    assert set(PAPER_TABLE1) == set(PAPER_TABLE2) == set(STAGES["rpn"].variants)
    assert set(PAPER_TABLE3) == {"c4", "c4_res5", "c5", "fpn"}  # c4_res5: row (a) with its conv5 head
    assert set(PAPER_TABLE2) | set(PAPER_TABLE3) == set(STAGES["detector"].variants) == set(VARIANTS)
    for table, stage in ((PAPER_TABLE1, "rpn"), (PAPER_TABLE2, "detector"), (PAPER_TABLE3, "detector")):
        assert all(set(row) == set(STAGES[stage].metrics) - {"AR_s@100"} for row in table.values())  # not in paper
    fpn_small = PAPER_TABLE1["fpn"]["AR_s@1000"]  # FPN's +14.4 and +18.4 AR_s over rows (d) and (e)
    assert fpn_small - PAPER_TABLE1["no_top_down"]["AR_s@1000"] == pytest.approx(14.4)
    assert fpn_small - PAPER_TABLE1["no_lateral"]["AR_s@1000"] == pytest.approx(18.4)
    assert PAPER_TABLE2["fpn"] == PAPER_TABLE3["fpn"]  # the same model in both tables


def test_a_difference_within_the_spread_is_no_difference():
    close = compare([0.50, 0.52, 0.54], [0.49, 0.51, 0.53])  # delta 0.01, spread 0.02
    assert close["delta"] == pytest.approx(0.01) and close["spread"] == pytest.approx(0.02)
    assert close["verdict"] == "no difference"
    apart = compare([0.60, 0.61, 0.62], [0.50, 0.51, 0.53])  # delta 0.097 > spread 0.0153
    assert apart["spread"] == pytest.approx(0.0152753, abs=1e-6)
    assert apart["verdict"] == "higher"
    assert compare([0.50, 0.51, 0.53], [0.60, 0.61, 0.62])["verdict"] == "lower"
    assert compare([0.6], [0.5, 0.52])["verdict"] == "unknown spread"  # one seed: no spread to judge by
    assert compare([-1.0, -1.0], [0.5, 0.6])["verdict"] == "not measured"  # -1: no objects of that size


def test_two_rows_of_a_record_are_compared_and_per_run_figures_averaged():
    record = {
        "runs": [
            {"variant": v, "seed": seed, "metrics": {"AP": ap}, "final_loss": loss, "train_s": t}
            for v, seed, ap, loss, t in (
                ("c5", 0, 0.057, 1.1, 190.0),
                ("c4_res5", 0, 0.032, 1.4, 950.0),
                ("c5", 1, 0.059, 1.3, 200.0),
                ("c4_res5", 1, 0.036, 1.5, 910.0),
            )
        ]
    }
    c = compare_rows(record, "c5", "c4_res5", "AP")  # (0.057 + 0.059) / 2 - (0.032 + 0.036) / 2 = 0.024
    assert c["delta"] == pytest.approx(0.024) and c["spread"] == pytest.approx(0.004 / math.sqrt(2))
    assert c["verdict"] == "higher" and compare_rows(record, "c4_res5", "c5", "AP")["verdict"] == "lower"
    means = run_means(record, ("final_loss", "train_s"))
    assert list(means) == ["c5", "c4_res5"]  # in the order the runs came
    assert means["c5"] == {"final_loss": pytest.approx(1.2), "train_s": 195.0}
    assert means["c4_res5"] == {"final_loss": pytest.approx(1.45), "train_s": 930.0}


def test_mean_std_ignores_missing_sizes_and_summarize_groups_by_variant():
    assert mean_std([0.2, -1.0, 0.4]) == {"mean": pytest.approx(0.3), "std": pytest.approx(math.sqrt(0.02)), "n": 2}
    assert mean_std([0.7]) == {"mean": 0.7, "n": 1} and mean_std([-1.0]) is None
    runs = [
        {"variant": v, "seed": s, "metrics": {"AR@100": value}}
        for v, s, value in (("no_lateral", 0, 0.1), ("fpn", 0, 0.4), ("fpn", 1, 0.6))
    ]
    summary = summarize(runs, ["AR@100"])
    assert list(summary) == ["fpn", "no_lateral"]  # paper order, whatever the order of the runs
    assert summary["fpn"]["AR@100"] == {"mean": pytest.approx(0.5), "std": pytest.approx(math.sqrt(0.02)), "n": 2}
    assert "std" not in summary["no_lateral"]["AR@100"]  # one seed: no spread


@pytest.fixture(scope="module")
def tiny_rpn_ablation(tmp_path_factory):
    """Two variants of the test preset, first with no time budget left after one run, then continued."""
    out = tmp_path_factory.mktemp("ablation")
    first = run_ablation(
        "rpn", ["fpn", "no_lateral"], seeds=(0,), preset="test", out=out, time_budget_s=0, progress=False, **TINY
    )
    return out, first


def test_the_runner_trains_scores_and_records_every_variant(tiny_rpn_ablation, monkeypatch):
    out, first = tiny_rpn_ablation
    assert [(r["variant"], r["seed"]) for r in first["runs"]] == [("fpn", 0)]  # the budget stopped it there
    assert first["pending"] == [{"variant": "no_lateral", "seed": 0}]
    stored = json.loads((out / "ablation_rpn_test.json").read_text())
    assert stored["runs"] == first["runs"] and "CPU" in stored["device"] and stored["preset"] == "test"
    assert stored["schedule"]["iterations"] == 3 and stored["versions"]["torch"]

    trained = []
    real = ablation.run_task
    monkeypatch.setattr(ablation, "run_task", lambda task: trained.append(task.cfg) or real(task))
    record = run_ablation(
        "rpn",
        ["fpn", "no_lateral"],
        seeds=(0,),
        preset="test",
        out=out,
        progress=False,
        command="fpnlab ablate --continued",
        **TINY,
    )
    assert [(c.model.lateral, c.seed) for c in trained] == [(False, 0)]  # fpn seed 0 was not trained again
    assert [r["command"] == "fpnlab ablate --continued" for r in record["runs"]] == [False, True]  # who made each
    assert [r["variant"] for r in record["runs"]] == ["fpn", "no_lateral"] and record["pending"] == []
    for run in record["runs"]:
        assert list(run["metrics"]) == list(STAGES["rpn"].metrics)
        assert all(v == -1 or 0 <= v <= 1 for v in run["metrics"].values())
        assert run["wall_s"] >= run["train_s"] > 0 and math.isfinite(run["final_loss"])
    fpn, no_lateral = (record["runs"][i]["metrics"]["AR@1000"] for i in (0, 1))
    comparison = record["comparisons"]["fpn vs no_lateral"]["AR@1000"]
    assert comparison["delta"] == pytest.approx(fpn - no_lateral) and comparison["verdict"] == "unknown spread"
    assert load_ablation("rpn", presets=("gpu", "test"), folder=out) == json.loads(
        (out / "ablation_rpn_test.json").read_text()
    )
    assert load_ablation("rpn", presets=("gpu",), folder=out) is None

    with pytest.raises(FpnlabError, match="another schedule"):  # a changed schedule is never mixed in
        run_ablation("rpn", ["fpn"], preset="test", out=out, progress=False, iterations=4)


def test_cli_runs_the_detector_stage_and_writes_record_and_figure(tmp_path, capsys):
    code = cli(
        [
            "ablate",
            "--stage",
            "detector",
            "--variants",
            "p2_only",
            "--preset",
            "test",
            "--set",
            "iterations=2",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "(f) P2 only" in printed and "[56.3]" in printed  # ours beside the paper's AP@0.5 of Table 2(f)
    record = json.loads((tmp_path / "ablation_detector_test.json").read_text())
    assert list(record["runs"][0]["metrics"]) == ["AP50", "AP", "AP_s", "AP_m", "AP_l"]
    assert record["runs"][0]["command"] == record["command"] and "--variants p2_only" in record["command"]
    assert (tmp_path / "ablation_detector_test.png").stat().st_size > 0


def test_cli_rejects_unknown_variants_with_one_line(tmp_path, capsys):
    assert cli(["ablate", "--variants", "fpn,p7_only", "--preset", "test", "--out", str(tmp_path)]) == 2
    assert "unknown ablation variant 'p7_only'" in capsys.readouterr().err
