"""The training loop: SGD on the detector's four losses, checkpoints that resume exactly (FPN paper, Sec. 5.1).

    result = train(get_preset("cpu"), "runs/cpu")          # Python / notebooks
    fpnlab train --preset cpu --run-dir runs/cpu          # command line
    torchrun --nproc_per_node=4 -m fpnlab train --preset gpu --run-dir runs/gpu    # several GPUs (DDP)

One iteration (`train_step`): a batch -> the four losses (RPN objectness and box regression, Fast
R-CNN classification and box regression) -> their sum -> backward -> clip -> SGD step -> lr step.

Every `checkpoint_every` iterations, at the end, on Ctrl-C and on SIGTERM the whole TrainState is
saved (fpnlab.engine.state, fpnlab.engine.checkpoint); running the same command again resumes it and ends with the
weights of a run that never stopped (fpnlab.engine.batches makes the data a function of the iteration).
A NaN or infinite loss stops the run before it reaches the weights, and weights that are no longer
finite are never saved. The run folder is locked while a run trains in it (fpnlab.engine.run_folder).

Under DDP every process trains on its own share of each batch, gradients are averaged, and rank 0
alone logs and writes files. BatchNorm becomes SyncBatchNorm on GPUs; on CPUs (gloo) each process
keeps its own statistics and rank 0's are saved. GroupNorm (`--set model.norm=gn`) needs neither.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from fpnlab.data import CocoDetection
from fpnlab.engine.batches import iter_batches, load_datasets, train_loader
from fpnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from fpnlab.engine.distributed import (
    average_across_processes,
    barrier,
    broadcast_buffers,
    init_distributed,
    is_main_process,
    resolve_device,
    wrap,
)
from fpnlab.engine.evaluate import check_categories, coco_metrics
from fpnlab.engine.presets import TrainConfig
from fpnlab.engine.run_folder import RunFolder
from fpnlab.engine.runlog import LogWindow, MetricsLog
from fpnlab.engine.state import TrainState, precision_note
from fpnlab.engine.stopping import Diverged, StopRequests, check_finite, check_finite_weights
from fpnlab.errors import FpnlabError
from fpnlab.progress import phase


@dataclass
class TrainResult:
    """What train() returns (the same figures are in the run folder)."""

    run_dir: Path
    checkpoint: Path
    iteration: int  # iterations done (== cfg.iterations for a finished run)
    history: list[dict[str, float]]  # metrics.csv rows: iteration, lr, loss, loss_*, images_per_s (window means)
    device: torch.device
    wall_s: float  # seconds spent training in this call (not counting earlier, resumed parts)
    images_per_s: float  # training images per second in this call, all processes together
    metrics: dict[str, float] = field(default_factory=dict)  # COCO metrics on val (eval_at_end)
    config: TrainConfig | None = None  # the settings that ran (model.num_classes from the data), as in config.json

    def curves(self) -> dict[str, list[float]]:
        """`history` as columns {"iteration": [...], "loss": [...], ...}, as fpnlab.plots.loss_curves takes it."""
        return {name: [row[name] for row in self.history] for name in (self.history[0] if self.history else {})}


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = True, progress: bool | None = True) -> TrainResult:
    """Train cfg's detector in `run_dir`, continuing the checkpoint there when `resume` is True.

    progress: True shows progress bars, False one line per phase (and where the checkpoint went), None nothing.
    """
    device = resolve_device(cfg.device)
    rank, world_size = init_distributed(device)
    folder, main = RunFolder(Path(run_dir)), rank == 0
    if main:
        folder.check()  # before the data and the model are built: a bad --run-dir fails at once
    if folder.checkpoint.exists() and not resume:
        raise FpnlabError(
            f"{folder.checkpoint} already exists; resume it, or delete it or pick another run folder to start over."
        )
    train_set, val_set = load_datasets(cfg)
    if cfg.eval_at_end:  # the check `fpnlab eval` makes, before any training rather than after it
        check_categories(train_set.categories, val_set, f"the model trained on {cfg.dataset}", "its val split")
    with folder.locked() if main else contextlib.nullcontext():
        state = start(cfg, train_set, folder, device, main)
        log = MetricsLog(folder.metrics_csv, state.iteration) if main else None
        if log is not None and log.repaired:
            tqdm.write(log.repaired)
        started, images = time.perf_counter(), 0
        progress = progress if main else None
        try:
            images = loop(state, train_set, folder, log, progress, (rank, world_size))
        except Diverged as err:
            raise FpnlabError(divergence_message(err, folder, log)) from None
        finally:
            if log is not None:
                log.close()
        wall_s = time.perf_counter() - started
        if progress is not None:
            print(f"checkpoint: {folder.checkpoint} (iteration {state.iteration})", flush=True)
        metrics = evaluate_at_end(state, val_set, folder, progress) if cfg.eval_at_end else {}
    return TrainResult(
        folder.path,
        folder.checkpoint,
        state.iteration,
        log.rows if log is not None else [],
        device,
        wall_s,
        images / max(wall_s, 1e-9),
        metrics,
        state.cfg,
    )


def start(
    cfg: TrainConfig, train_set: CocoDetection, folder: RunFolder, device: torch.device, main: bool
) -> TrainState:
    """A fresh TrainState, or the run folder's checkpoint restored into one; wrapped for DDP when needed."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fastest convolution algorithms for the (fixed) input sizes
    state = TrainState.create(cfg, train_set, device)
    if folder.checkpoint.exists():
        checkpoint = load_checkpoint(folder.checkpoint)
        state.restore(checkpoint, folder.checkpoint)
        changed = state.changed_settings(checkpoint)
        if main:
            note = f" with changed settings: {', '.join(changed)} (in effect from here on)" if changed else ""
            tqdm.write(f"Resuming {folder.checkpoint} at iteration {state.iteration}{note}.")
    state.model = wrap(state.model, device, sync_batchnorm=cfg.model.norm == "bn")
    if main:
        folder.write_json("config.json", state.cfg.to_dict())
        if device.type == "cuda":
            tqdm.write(precision_note(state.amp_dtype, device))
    return state


def loop(
    state: TrainState,
    train_set: CocoDetection,
    folder: RunFolder,
    log: MetricsLog | None,
    progress: bool | None,
    processes: tuple[int, int],
) -> int:
    """Iterations state.iteration..cfg.iterations, with logging and checkpoints; returns the images trained on.

    `processes` is (rank, world_size).
    """
    cfg, device, (rank, world_size) = state.cfg, next(state.model.parameters()).device, processes
    loader = train_loader(train_set, cfg, state.iteration, rank, world_size)
    window, images_seen, loss = LogWindow(), 0, None
    with StopRequests() as stop, phase("train", cfg.iterations, "it", progress, state.iteration) as bar:
        for images, targets in iter_batches(loader, device, state.iteration, cfg.iterations):
            losses = train_step(state, images, targets)
            images_seen += len(images) * world_size
            window.add(losses, len(images) * world_size)
            bar.update()
            bar.set_postfix({"loss": f"{sum(losses.values()):.3f}", "img/s": f"{window.images_per_s():.1f}"})
            if state.iteration % cfg.log_every == 0 or state.iteration == cfg.iterations:
                loss = window.row()["loss"]
                if log is not None:
                    log.log({"iteration": state.iteration, "lr": state.lr(), **window.row()})
                window = LogWindow()
            if stop.requested(device):
                save(state, folder, loss)
                tqdm.write(
                    f"Stopped at iteration {state.iteration}; {folder.checkpoint} saved. "
                    "Run the same command again to resume."
                )
                raise KeyboardInterrupt
            if state.iteration % cfg.checkpoint_every == 0 or state.iteration == cfg.iterations:
                save(state, folder, loss)
    return images_seen


def train_step(state: TrainState, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, float]:
    """One SGD step on the sum of the detector's losses; returns the loss terms (averaged over processes)."""
    cfg, device = state.cfg, images[0].device
    autocast = torch.autocast(device.type, dtype=state.amp_dtype) if state.amp_dtype else contextlib.nullcontext()
    with autocast:
        losses = state.model(images, targets)  # loss_objectness, loss_rpn_box_reg, loss_classifier, loss_box_reg
    values = average_across_processes(losses)
    check_finite(values, state.iteration + 1)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(sum(losses.values())).backward()
    if cfg.clip_grad_norm is not None:
        state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(state.model.parameters(), cfg.clip_grad_norm)
    state.scaler.step(state.optimizer)  # skipped by the scaler when fp16 gradients overflowed
    state.scaler.update()
    state.scheduler.step()
    state.iteration += 1
    return values


def save(state: TrainState, folder: RunFolder, loss: float | None) -> None:
    """Write the checkpoint (rank 0), unless the weights are no longer finite; every process waits for it."""
    check_finite_weights(state.detector, state.iteration)
    if is_main_process():
        save_checkpoint(folder.checkpoint, state.checkpoint(loss))
    barrier()


def divergence_message(err: Diverged, folder: RunFolder, log: MetricsLog | None) -> str:
    """What diverged, and honestly what the checkpoint on disk holds (its iteration, its loss)."""
    if not folder.checkpoint.exists():
        return f"{err}; no checkpoint had been saved yet (try a lower lr or a longer warm-up)."
    kept = load_checkpoint(folder.checkpoint)
    text = f"{err}. {folder.checkpoint} holds iteration {kept['iteration']}"
    loss, lowest = kept.get("loss"), min((row["loss"] for row in log.rows), default=None) if log else None
    if loss is not None:
        text += f" (mean loss {loss:.3g} there"
        rising = lowest is not None and loss > 2 * lowest
        text += f"; it had been as low as {lowest:.3g}, so that state may already be diverging)" if rising else ")"
    return text + "; resume it with a lower lr or a longer warm-up, or delete it to start over."


def evaluate_at_end(
    state: TrainState, val_set: CocoDetection, folder: RunFolder, progress: bool | None
) -> dict[str, float]:
    """COCO metrics of the trained model on the val split, written to metrics.json (rank 0)."""
    broadcast_buffers(state.detector)  # under DDP: every process evaluates rank 0's BatchNorm statistics
    metrics = coco_metrics(state.detector, val_set, max_images=state.cfg.max_val_images, progress=progress)
    if is_main_process():
        folder.write_json("metrics.json", metrics)
    return metrics
