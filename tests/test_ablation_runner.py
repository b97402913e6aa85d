"""The ablation runner's bookkeeping without training: every run is a stand-in that takes 10 s on a fake
clock, so the time budget, resuming, the record and the printed lines are checked in milliseconds
(tests/test_ablation.py trains real tiny runs end to end)."""

from __future__ import annotations

import csv
import json

import pytest

import fpnlab.ablation.runner as ablation
from fpnlab.ablation.report import ablation_figure, anchor_size_table, format_ablation
from fpnlab.ablation.runner import RunTask, execute, run_ablation, schedule_of, variant_changes
from fpnlab.ablation.variants import STAGES, VARIANTS, check_names, result_name
from fpnlab.engine.batches import load_datasets
from fpnlab.engine.checkpoint import load_model
from fpnlab.engine.evaluate import anchor_size_statistics
from fpnlab.env import device_name
from fpnlab.errors import FpnlabError
from fpnlab.model.config import DetectorConfig

RUN_S = 10.0


@pytest.fixture()
def fake_runs(monkeypatch):
    """run_task replaced by a stand-in that advances a fake clock by RUN_S; returns the tasks it was given."""
    clock, tasks = [0.0], []

    def run_task(task: RunTask) -> dict:
        tasks.append(task)
        clock[0] += RUN_S
        value = 0.1 * (1 + STAGES[task.stage].variants.index(task.variant)) + 0.01 * task.seed  # its row
        return {
            "variant": task.variant,
            "seed": task.seed,
            "command": task.command,
            "wall_s": RUN_S,
            "metrics": {m: value for m in STAGES[task.stage].metrics},
        }

    monkeypatch.setattr(ablation, "run_task", run_task)
    monkeypatch.setattr(ablation.time, "perf_counter", lambda: clock[0])
    return tasks


def tasks_for(variants: list[str]) -> list[RunTask]:
    base = ablation.base_config("rpn", "test", {})
    return [RunTask("rpn", v, 0, ablation.variant_config(base, v, 0), None, None, "cmd") for v in variants]


@pytest.mark.parametrize("budget, runs", [(None, 3), (0, 1), (19.9, 1), (29.9, 2), (30, 3)])
def test_no_run_starts_that_would_end_past_the_budget(fake_runs, budget, runs):
    """The first run always starts; the next only if time so far + the longest run so far <= budget."""
    done = list(execute(tasks_for(["fpn", "no_top_down", "no_lateral"]), jobs=1, time_budget_s=budget))
    assert [run["variant"] for run in done] == ["fpn", "no_top_down", "no_lateral"][:runs]


def test_record_orders_runs_as_the_paper_and_lists_what_is_pending(fake_runs, tmp_path, capsys):
    record = run_ablation(
        "rpn",
        ["no_lateral", "fpn"],
        seeds=(1, 0),
        preset="test",
        out=tmp_path,
        time_budget_s=25,
        progress=False,
        command="fpnlab ablate --test",
    )
    assert [(r["variant"], r["seed"]) for r in record["runs"]] == [("no_lateral", 0), ("no_lateral", 1)]
    assert record["pending"] == [{"variant": "fpn", "seed": 1}, {"variant": "fpn", "seed": 0}]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "no_lateral seed 1: AR@100 0.510, AR_s@100 0.510, AR@1000 0.510, AR_s@1000 0.510, "
        "AR_m@1000 0.510, AR_l@1000 0.510 (10 s)"
    )
    stored = json.loads((tmp_path / "ablation_rpn_test.json").read_text())
    assert stored["command"] == "fpnlab ablate --test" and stored["runs"] == record["runs"]
    assert list(stored["variants"]) == ["no_lateral"] and stored["stage"] == "rpn" and stored["preset"] == "test"

    record = run_ablation("rpn", ["no_lateral", "fpn"], seeds=(1, 0), preset="test", out=tmp_path, progress=None)
    assert [(r["variant"], r["seed"]) for r in record["runs"]] == [
        ("fpn", 0),
        ("fpn", 1),
        ("no_lateral", 0),
        ("no_lateral", 1),
    ]  # paper order, then seed
    assert [(t.variant, t.seed) for t in fake_runs[2:]] == [("fpn", 1), ("fpn", 0)]  # only what was missing
    assert record["pending"] == [] and list(record["variants"]) == ["fpn", "no_lateral"]
    assert record["comparisons"]["fpn vs no_lateral"]["AR@100"]["delta"] == pytest.approx(0.305 - 0.505)
    assert record["rule"] == (
        "a difference not larger than the spread (the larger sample std over seeds) is no difference"
    )
    assert (record["paper"], record["paper_source"]) == (STAGES["rpn"].paper, STAGES["rpn"].paper_source)


def test_fresh_start_and_kept_run_folders(fake_runs, tmp_path):
    run_ablation("rpn", ["fpn"], preset="test", out=tmp_path, progress=None)
    run_ablation(
        "rpn",
        ["fpn"],
        preset="test",
        out=tmp_path,
        resume=False,
        runs_dir=tmp_path / "runs",
        progress=None,
        name="again",
    )
    assert len(fake_runs) == 2 and fake_runs[1].run_dir == tmp_path / "runs" / "rpn-fpn-seed0"
    assert fake_runs[0].run_dir is None and fake_runs[1].progress is None
    assert (tmp_path / "again.json").is_file()


def test_a_record_made_before_a_setting_existed_holds_that_settings_default():
    base = ablation.base_config("rpn", "cpu", {})
    old = json.loads(json.dumps(schedule_of(base)))
    del old["model"]["box"]["head"]  # records made before the conv5 head ran the only head there was: 2fc
    assert ablation.same_schedule(old, base)
    conv5 = ablation.base_config("rpn", "cpu", {"model": {"neck": "c4", "box": {"head": "res5"}}})
    assert not ablation.same_schedule(old, conv5)  # a missing setting stands for its default, nothing else
    del old["lr"]  # the cpu preset's lr 0.03 is not TrainConfig's default, so a record without it is another
    assert not ablation.same_schedule(old, base)
    assert not ablation.same_schedule(None, base) and not ablation.same_schedule([], base)


def test_runner_refuses_bad_jobs_and_another_schedule(fake_runs, tmp_path):
    with pytest.raises(FpnlabError, match=r"^jobs must be >= 1, got 0\.$"):
        run_ablation("rpn", ["fpn"], preset="test", jobs=0, progress=None)
    run_ablation("rpn", ["fpn"], preset="test", out=tmp_path, progress=None)
    with pytest.raises(FpnlabError) as err:
        run_ablation("rpn", ["fpn"], preset="test", out=tmp_path, progress=None, iterations=4)
    assert str(err.value) == (
        f"{tmp_path / 'ablation_rpn_test.json'} holds runs of another schedule; pass --fresh "
        "to replace it, or --name to write a new record."
    )


def test_a_record_names_what_each_variant_changes_and_the_shared_schedule():
    base = ablation.base_config("rpn", "test", {"iterations": 7})
    assert variant_changes(base, "no_top_down") == {
        "neck": "fpn",
        "top_down": False,
        "levels": ["p2", "p3", "p4", "p5"],
    }
    c4 = variant_changes(base, "c4")
    assert c4["neck"] == "c4" and c4["rpn"]["test"]["pre_nms_top_n"] == 4000
    cpu = ablation.base_config("rpn", "cpu", {})  # the CPU ablation schedule on top of the cpu preset
    assert (cpu.iterations, cpu.warmup_iterations, cpu.eval_at_end, cpu.model.rpn_only) == (300, 30, False, True)
    assert cpu.model.box.batch_size_per_image == 128  # the cpu preset's
    table3 = ablation.base_config("detector", "cpu", {})  # the detector stage's own: Table 3's schedule
    assert (table3.iterations, table3.warmup_iterations, table3.eval_at_end, table3.model.rpn_only) == (
        1200,
        100,
        False,
        False,
    )
    assert (table3.model.box.batch_size_per_image, table3.model.box.positive_fraction, table3.lr) == (64, 0.25, 0.03)
    shorter = ablation.base_config("detector", "cpu", {"iterations": 600, "model": {"box": {"fg_iou_thresh": 0.6}}})
    assert (shorter.iterations, shorter.model.box.batch_size_per_image, shorter.model.box.fg_iou_thresh) == (
        600,
        64,
        0.6,
    )  # overrides go on top of the stage's schedule, which keeps the rest
    colab = ablation.base_config("rpn", "colab", {})  # Colab's T4: a quarter of the gpu schedule's 500 x 16 images
    assert (colab.iterations * colab.batch_size, colab.max_val_images, colab.model.backbone) == (2000, 150, "resnet50")
    schedule = schedule_of(base)
    assert "seed" not in schedule and schedule["iterations"] == 7 and schedule["eval_at_end"] is False
    assert schedule["lr_steps"] == list(base.lr_steps) and json.loads(json.dumps(schedule)) == schedule


@pytest.mark.parametrize("stage", ["rpn", "detector"])
def test_one_real_run_is_trained_scored_and_described(tmp_path, stage, capsys):
    """A tiny real run of run_task: every field of its record, computed again here from what it saved."""
    cfg = ablation.variant_config(
        ablation.base_config(stage, "test", {"iterations": 3, "warmup_iterations": 1}), "fpn", 0
    )
    run = ablation.run_task(RunTask(stage, "fpn", 0, cfg, tmp_path / "run", False, "cmd"))
    model, val = load_model(tmp_path / "run" / "checkpoint.pt"), load_datasets(cfg)[1]
    score = ablation.EVALUATORS[stage](model, val, max_images=cfg.max_val_images, progress=None)
    assert run["metrics"] == {m: score[m] for m in STAGES[stage].metrics}
    if stage == "rpn":  # the anchor-size diagnosis of notebook 08, for RPN runs only
        assert run["anchor_sizes"] == anchor_size_statistics(model, val, max_images=cfg.max_val_images, progress=None)
    else:
        assert "anchor_sizes" not in run
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert run["final_loss"] == round(float(rows[-1]["loss"]), 4)
    assert (run["variant"], run["seed"], run["command"], run["device"]) == ("fpn", 0, "cmd", device_name("cpu"))
    assert run["wall_s"] == pytest.approx(run["train_s"] + run["eval_s"], abs=0.11) and 0 < run["eval_s"] < 600
    for key in ("train_s", "eval_s", "wall_s", "images_per_s"):  # tenths of a second, tenths of an image
        assert run[key] > 0 and run[key] == round(run[key], 1), key
    printed = capsys.readouterr().out
    assert "train: 3 it ..." in printed and f"{'proposals' if stage == 'rpn' else 'eval'}: 4 images ..." in printed


def test_parallel_jobs_run_every_task_and_respect_the_budget():
    """jobs=2: two worker processes (spawned, as on every platform). With no time left after the first
    runs finish, the third task never starts."""
    base = ablation.base_config("rpn", "test", {"iterations": 1, "warmup_iterations": 0, "max_val_images": 1})
    tasks = [
        RunTask("rpn", v, 0, ablation.variant_config(base, v, 0), None, None, "cmd")
        for v in ("fpn", "no_lateral", "no_top_down")
    ]
    done = list(execute(tasks, jobs=2, time_budget_s=0))
    assert sorted(run["variant"] for run in done) == ["fpn", "no_lateral"]
    assert all(list(run["metrics"]) == list(STAGES["rpn"].metrics) for run in done)


def test_variant_names_records_and_candidate_pools():
    assert (result_name("rpn", "gpu"), result_name("detector", "cpu")) == ("ablation_rpn", "ablation_detector_cpu")
    with pytest.raises(FpnlabError, match=r"^unknown ablation stage 'roi'; choose one of rpn, detector\.$"):
        check_names("roi", ["fpn"])
    with pytest.raises(
        FpnlabError,
        match=r"^unknown ablation variant 'p9'; choose from c4, c5, fpn, no_top_down, "
        r"no_lateral, p2_only\.$",
    ):
        check_names("rpn", ["fpn", "p9"])
    with pytest.raises(FpnlabError) as err:
        check_names("rpn", ["fpn", "c4_res5", "c5"])  # the variant that is no row of the stage is named
    assert str(err.value) == (
        "ablation variant 'c4_res5' is not a row of the rpn stage; choose from c4, c5, fpn, no_top_down, "
        "no_lateral, p2_only."
    )
    for variants, seeds, message in (
        (
            ["fpn", "c5", "fpn", "c5", "c4"],
            [0],
            "ablation variant c5, fpn is given more than once; name each variant "
            "once (a repeated variant would count one run twice).",
        ),
        (
            ["fpn"],
            [2, 0, 2, 0, 1],
            "ablation seed 0, 2 is given more than once; name each seed once (a repeated "
            "seed would count one run twice).",
        ),
        (
            ["fpn", "fpn"],
            [3, 3, 3],
            "ablation variant fpn is given more than once; name each variant once (a "
            "repeated variant would count one run twice).",
        ),
    ):
        with pytest.raises(FpnlabError) as err:
            check_names("detector", variants, seeds)
        assert str(err.value) == message
    check_names("detector", ["c4_res5", "fpn"], [0, 1])  # each once: no error
    two = DetectorConfig(levels=("p2", "p3"), anchor_sizes=(32, 64))  # P2-only ranks as many as 2 levels
    assert VARIANTS["p2_only"].apply(two).rpn.test.pre_nms_top_n == 2 * two.rpn.test.pre_nms_top_n
    one = DetectorConfig(levels=("p2",), anchor_sizes=(32,))  # already one level: nothing to make up for
    assert VARIANTS["p2_only"].apply(one).rpn == one.rpn


# The record of two variants x two seeds below, formatted: checked by hand (means, sample stds, the paper's
# Table 1 in brackets, FPN minus each variant with the spread rule, -1 shown as "-").
TABLE = [
    "rpn ablation, preset test: ours in %, mean ± std over seeds [paper]",
    "variant                           AR@100                AR_s@100                 AR@1000  "
    "             AR_s@1000               AR_m@1000               AR_l@1000  seeds",
    "(c) FPN                41.0 ± 1.4 [44.0]          21.0 ± 1.4 [-]       51.0 ± 1.4 [56.3]  "
    "     46.0 ± 1.4 [44.9]       50.0 ± 0.0 [63.4]       61.0 ± 1.4 [66.2]      2",
    "(e) no lateral         30.5 ± 0.7 [34.5]          11.0 ± 1.4 [-]       45.5 ± 0.7 [46.1]  "
    "              - [26.5]       51.0 ± 1.4 [57.4]       60.5 ± 0.7 [64.7]      2",
    "differences in points, fpn minus the variant (verdict: a difference not larger than the sp"
    "read (the larger sample std over seeds) is no difference)",
    "- (e) no lateral          +10.5 (higher)          +10.0 (higher)           +5.5 (higher)  "
    "      - (not measured)    -1.0 (no difference)    +0.5 (no difference)",
    "not run yet: c4 seed 0",
]
ANCHOR_TABLE = [
    "variant           pos% 32  pos% 64  logit 32  logit 64  proposals",
    "(c) FPN              31.0     69.0      1.50      3.00        995",
    "(e) no lateral        3.0     97.0     -1.00     -2.00        450",
]


def record_of_two_variants():
    metrics = STAGES["rpn"].metrics

    def run(variant, seed, values, share, logit, proposals):
        sizes = {
            "32": {"positive_share": share, "best_logit": logit},
            "64": {"positive_share": 1 - share, "best_logit": 2 * logit},
        }
        return {
            "variant": variant,
            "seed": seed,
            "metrics": dict(zip(metrics, values)),
            "anchor_sizes": {"sizes": sizes, "proposals_per_image": proposals},
        }

    runs = [
        run("fpn", 0, (0.40, 0.20, 0.50, 0.45, 0.50, 0.60), 0.30, 1.0, 1000),
        run("fpn", 1, (0.42, 0.22, 0.52, 0.47, 0.50, 0.62), 0.32, 2.0, 990),
        run("no_lateral", 0, (0.30, 0.10, 0.45, -1.0, 0.50, 0.61), 0.02, -0.5, 500),
        run("no_lateral", 1, (0.31, 0.12, 0.46, -1.0, 0.52, 0.60), 0.04, -1.5, 400),
    ]
    record = ablation.make_record("rpn", "test", ablation.base_config("rpn", "test", {}), runs, [])
    return {**record, "pending": [{"variant": "c4", "seed": 0}], "device": "x86_64 CPU (2 threads)"}


def test_the_ablation_tables_read_as_worked_out_by_hand():
    record = record_of_two_variants()
    assert format_ablation(record).splitlines() == TABLE
    assert anchor_size_table(record).splitlines() == ANCHOR_TABLE
    assert anchor_size_table(record, variants=("no_lateral",)).splitlines() == [ANCHOR_TABLE[0], ANCHOR_TABLE[-1]]
    figure = ablation_figure(record)
    assert [axes.get_title() for axes in figure.axes] == ["AR_s@1000", "AR_m@1000", "AR_l@1000"]
    assert figure._suptitle.get_text() == (
        "rpn ablation: ours (test preset, shapes-mini, x86_64 CPU (2 threads)) vs the paper (COCO)"
    )
    assert anchor_size_table({"runs": []}).splitlines() == ["variant" + " " * 11 + "proposals"]  # no RPN runs
