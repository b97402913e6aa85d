"""The ablation runner (FPN paper, Sec. 5, Tables 1-3): same data, schedule and seed; one switch changed.

    record = run_ablation("rpn", variants=["fpn", "no_top_down"], seeds=(0, 1, 2), preset="cpu", jobs=2)
    fpnlab ablate --stage rpn --variants all --seeds 0,1,2 --preset cpu --jobs 2

The variants and stages are fpnlab.ablation.variants; the statistics, the table and the figure are
fpnlab.ablation.report. Several seeds give every number a mean and a spread, and the lab's rule
reports a difference not larger than the spread as no difference.

A record is written after every finished run (results/ablation_<stage>.json for the gpu preset,
results/ablation_<stage>_<preset>.json otherwise), so a call cut short keeps what it finished; running
the same command again skips the runs the file holds (same schedule) and adds the rest. `jobs`
trains that many runs at once in separate processes, each on its share of the CPU threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import torch

from fpnlab.ablation.report import comparisons, summarize
from fpnlab.ablation.variants import STAGES, VARIANTS, check_names, result_name
from fpnlab.engine.batches import load_datasets
from fpnlab.engine.checkpoint import load_model
from fpnlab.engine.distributed import resolve_device
from fpnlab.engine.evaluate import anchor_size_statistics, coco_metrics, proposal_recall
from fpnlab.engine.loop import train
from fpnlab.engine.presets import TrainConfig, get_preset
from fpnlab.env import device_name
from fpnlab.errors import FpnlabError
from fpnlab.outputs import temporary_folder
from fpnlab.overrides import update
from fpnlab.results import process_command, read_result, write_result

# Schedules of the ablation runs, on top of the training preset of the same name (the record stores
# the full schedule and each run's measured time).
# gpu: R50, 512 px, batch 16, bf16: 500 iterations (8000 images, 2 epochs of data/shapes) and 150 val
#      images per variant, about 55 s of training and 30 s of scoring per variant (planned from
#      torchvision's ~49 img/s at 800x1216 on an H100, scaled to 512 px).
# colab: the gpu schedule's model and data on Colab's T4, batch 8: 250 iterations (2000 images, a quarter of the gpu
#      schedule's) and 150 val images per variant, about 5 minutes of training per variant (an estimate, as for
#      the colab preset: 2000 / 6000 of its ~15 minutes), so that notebook 08's three main rows take ~15 minutes.
# cpu: ResNet-tiny at the CPU preset's scale, batch 2: 300 iterations (600 images, 3 epochs of shapes-mini).
ABLATION_SCHEDULES: dict[str, dict[str, Any]] = {
    "gpu": dict(iterations=500, warmup_iterations=100, max_val_images=150, checkpoint_every=500, log_every=20),
    "colab": dict(iterations=250, warmup_iterations=50, max_val_images=150, checkpoint_every=250, log_every=10),
    "cpu": dict(iterations=300, warmup_iterations=30, checkpoint_every=300),
}
# A stage's own schedule, on top of the one above. cpu detector (Table 3): 300 iterations leave every
# detector's AP@0.5 near zero; the cpu preset's own 1200 (12 epochs of shapes-mini) is where notebook 07's FPN
# detects (results/notebook07_default.json). Row (a)'s conv5 head costs ~45x the 2fc head's FLOPs per ROI
# (results/head_speed_lab_cpu.json), so every row samples 64 ROIs per image instead of the preset's 128: row (a)
# then trains in ~16 min on one core (results/ablation_detector_cpu.json) instead of the ~32 that 128 ROIs
# took per 1200 iterations, and the 3-seed record of rows (a)-(c) takes ~40 min with two jobs.
STAGE_SCHEDULES: dict[tuple[str, str], dict[str, Any]] = {
    ("detector", "cpu"): dict(
        iterations=1200, warmup_iterations=100, checkpoint_every=1200, model={"box": {"batch_size_per_image": 64}}
    ),
}
EVALUATORS = {"rpn": proposal_recall, "detector": coco_metrics}


# --- configurations -------------------------------------------------------------------------------


def base_config(stage: str, preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """The TrainConfig every variant of `stage` shares: preset, ablation schedule, stage model, overrides."""
    schedule = {**ABLATION_SCHEDULES.get(preset, {}), **STAGE_SCHEDULES.get((stage, preset), {})}
    cfg = get_preset(preset, **schedule, eval_at_end=False)
    cfg = update(dataclasses.replace(cfg, model=STAGES[stage].model(cfg.model)), overrides)
    if cfg.model.rpn_only != (stage == "rpn"):
        raise FpnlabError(
            f"model.rpn_only={cfg.model.rpn_only} does not fit --stage {stage}: the stage sets it "
            "(rpn: the RPN alone, detector: the whole detector); leave it unset."
        )
    return cfg


def variant_config(base: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """`base` with the variant's switches and the seed."""
    return dataclasses.replace(base, model=VARIANTS[variant].apply(base.model), seed=seed)


def variant_changes(base: TrainConfig, variant: str) -> dict[str, Any]:
    """The detector settings `variant` changes, as plain values (what the record stores)."""
    before, after = dataclasses.asdict(base.model), dataclasses.asdict(VARIANTS[variant].apply(base.model))
    return json.loads(json.dumps({k: v for k, v in after.items() if before[k] != v or k in ("neck", "levels")}))


def schedule_of(base: TrainConfig) -> dict[str, Any]:
    """The shared settings as plain JSON values (tuples become lists), to store and compare."""
    values = base.to_dict()
    values.pop("seed")
    return json.loads(json.dumps(values))


# --- one run ----------------------------------------------------------------------------------------


class RunTask(NamedTuple):
    """One (variant, seed) to train and score; plain values, so it can go to another process."""

    stage: str
    variant: str
    seed: int
    cfg: TrainConfig
    run_dir: Path | None  # kept folder (an interrupted run resumes there), else a temporary one
    progress: bool | None
    command: str


def run_task(task: RunTask) -> dict[str, Any]:
    """Train the task's model, then score it on the val split: one entry of record["runs"]."""
    with contextlib.ExitStack() as stack:
        run_dir = task.run_dir or stack.enter_context(temporary_folder("fpnlab-ablate-"))
        result = train(task.cfg, run_dir, progress=task.progress)
        start = time.perf_counter()
        device = resolve_device(task.cfg.device)
        model, val = load_model(result.checkpoint, device), load_datasets(task.cfg)[1]
        options = dict(max_images=task.cfg.max_val_images, progress=task.progress)
        metrics = EVALUATORS[task.stage](model, val, **options)
        diagnosis = anchor_size_statistics(model, val, **options) if task.stage == "rpn" else None
    eval_s = time.perf_counter() - start
    history = result.history
    return {
        "variant": task.variant,
        "seed": task.seed,
        "command": task.command,
        "metrics": {name: metrics[name] for name in STAGES[task.stage].metrics},
        **({"anchor_sizes": diagnosis} if diagnosis else {}),
        "final_loss": round(history[-1]["loss"], 4) if history else None,
        "train_s": round(result.wall_s, 1),
        "eval_s": round(eval_s, 1),
        "wall_s": round(result.wall_s + eval_s, 1),
        "images_per_s": round(result.images_per_s, 1),
        "device": device_name(device),
    }


def set_threads(threads: int) -> None:
    """A worker process's share of the CPU threads."""
    torch.set_num_threads(threads)


def execute(tasks: list[RunTask], jobs: int, time_budget_s: float | None) -> Iterator[dict[str, Any]]:
    """The runs of `tasks` as they finish, `jobs` at a time; no run starts that would likely end past the
    budget (judged by the longest run so far)."""
    started, longest = time.perf_counter(), 0.0

    def fits() -> bool:
        return time_budget_s is None or not longest or time.perf_counter() - started + longest <= time_budget_s

    if jobs == 1:
        for task in tasks:
            if not fits():
                return
            run = run_task(task)
            longest = max(longest, run["wall_s"])
            yield run
        return
    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(
        jobs, mp_context=get_context("spawn"), initializer=set_threads, initargs=(threads,)
    ) as pool:
        waiting, running = list(tasks), set()
        while True:
            while waiting and len(running) < jobs and fits():
                running.add(pool.submit(run_task, waiting.pop(0)))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                run = future.result()
                longest = max(longest, run["wall_s"])
                yield run


# --- the runner -----------------------------------------------------------------------------------------


def run_ablation(
    stage: str = "rpn",
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    preset: str = "cpu",
    *,
    out: str | Path | None = None,
    name: str | None = None,
    runs_dir: str | Path | None = None,
    resume: bool = True,
    time_budget_s: float | None = None,
    progress: bool | None = True,
    command: str | None = None,
    jobs: int = 1,
    **overrides: Any,
) -> dict[str, Any]:
    """Train and score every (variant, seed) of `stage` on one schedule; return the record.

    overrides: TrainConfig fields on top of the preset, ABLATION_SCHEDULES and STAGE_SCHEDULES (model={...} for detector
    settings shared by all variants). With `out`, the record is written to out/<name>.json after every
    run and, when `resume`, the runs already there (same schedule) are kept, not redone. `runs_dir`
    keeps each run's folder (a run cut short resumes); `time_budget_s` starts no run that would likely
    end past the budget (runs left over are listed in record["pending"]). `command` is stored in the
    record and in each run (default: the process's command line).
    """
    variants = list(variants) if variants is not None else list(STAGES[stage].variants)
    check_names(stage, variants, list(seeds))
    if jobs < 1:
        raise FpnlabError(f"jobs must be >= 1, got {jobs}.")
    command, started = command or process_command(), time.perf_counter()
    base = base_config(stage, preset, overrides)
    name, folder = name or result_name(stage, preset), Path(out) if out is not None else None
    runs = previous_runs(read_result(name, folder) if folder is not None and resume else None, base, folder, name)
    tasks_dir = Path(runs_dir) if runs_dir else None
    todo = pending(stage, base, variants, seeds, runs, tasks_dir, progress if jobs == 1 else None, command)
    record = make_record(stage, preset, base, runs, todo)
    for run in execute(todo, jobs, time_budget_s):
        runs.append(run)
        todo = [t for t in todo if (t.variant, t.seed) != (run["variant"], run["seed"])]
        record = make_record(stage, preset, base, runs, todo)
        record["elapsed_s"] = round(time.perf_counter() - started, 1)  # this call's wall time, all jobs
        if progress is not None:
            print(run_line(run), flush=True)
        if folder is not None:
            write_result(name, record, device=resolve_device(base.device), command=command, folder=folder)
    return record


def pending(
    stage: str,
    base: TrainConfig,
    variants: Sequence[str],
    seeds: Sequence[int],
    runs: list[dict[str, Any]],
    runs_dir: Path | None,
    progress: bool | None,
    command: str,
) -> list[RunTask]:
    """The (variant, seed) runs still to do, each a RunTask (its run folder under `runs_dir`, if given)."""
    return [
        RunTask(
            stage,
            v,
            s,
            variant_config(base, v, s),
            runs_dir / f"{stage}-{v}-seed{s}" if runs_dir else None,
            progress,
            command,
        )
        for v in variants
        for s in seeds
        if not any(r["variant"] == v and r["seed"] == s for r in runs)
    ]


def run_line(run: dict[str, Any]) -> str:
    """One finished run in one line: variant, seed, every metric, seconds."""
    metrics = ", ".join(f"{m} {v:.3f}" for m, v in run["metrics"].items())
    return f"{run['variant']} seed {run['seed']}: {metrics} ({run['wall_s']:.0f} s)"


def same_schedule(stored: Any, base: TrainConfig) -> bool:
    """Whether a record's schedule is `base`'s. A setting the record lacks was added to the lab after it was
    made, and its runs ran that setting's default (the record before `model.box.head` ran the 2fc head)."""
    return isinstance(stored, dict) and with_defaults(stored, schedule_of(TrainConfig())) == schedule_of(base)


def with_defaults(stored: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`stored` with every key it lacks taken from `defaults`, nested dicts alike."""
    filled = {key: defaults[key] for key in defaults if key not in stored}
    for key, value in stored.items():
        nested = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        filled[key] = with_defaults(value, defaults[key]) if nested else value
    return filled


def previous_runs(
    record: dict[str, Any] | None, base: TrainConfig, folder: Path | None, name: str
) -> list[dict[str, Any]]:
    """The runs of an earlier record of the same schedule; FpnlabError if it holds another schedule."""
    if record is None:
        return []
    if not same_schedule(record.get("schedule"), base):
        raise FpnlabError(
            f"{folder / f'{name}.json'} holds runs of another schedule; pass --fresh to replace "
            "it, or --name to write a new record."
        )
    return list(record["runs"])


def make_record(
    stage: str, preset: str, base: TrainConfig, runs: list[dict[str, Any]], pending: list[RunTask]
) -> dict[str, Any]:
    """The result record; write_result adds command, device, versions and date."""
    spec = STAGES[stage]
    order = list(VARIANTS)
    runs = sorted(runs, key=lambda run: (order.index(run["variant"]), run["seed"]))
    present = [v for v in VARIANTS if any(run["variant"] == v for run in runs)]
    return {
        "stage": stage,
        "preset": preset,
        "schedule": schedule_of(base),
        "variants": {v: variant_changes(base, v) for v in present},
        "runs": runs,
        "summary": summarize(runs, spec.metrics),
        "comparisons": comparisons(runs, spec.metrics),
        "rule": "a difference not larger than the spread (the larger sample std over seeds) is no difference",
        "paper": spec.paper,
        "paper_source": spec.paper_source,
        "pending": [{"variant": task.variant, "seed": task.seed} for task in pending],
    }
