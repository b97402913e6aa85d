"""Training loop: SGD with warm-up, checkpoints that resume exactly, one GPU or many (FPN paper, Sec. 5.1).

    result = train(get_preset("cpu"), "runs/cpu")          # Python / notebooks
    fpnlab train --preset cpu --run-dir runs/cpu          # command line
    torchrun --nproc_per_node=4 -m fpnlab train --preset gpu --run-dir runs/gpu    # DDP

One iteration: a batch -> the detector's four losses (RPN objectness and box regression, Fast R-CNN
classification and box regression) -> their sum -> backward -> clip -> SGD step -> lr schedule step.

Exact resume: everything random is a pure function of the seed and the iteration. The data order of
epoch e is a permutation seeded by (seed, e), each image's augmentation is drawn from a seed of its own
(seed, e, index), and the checkpoint stores the model, optimizer, scheduler, scaler, every random
generator and the iteration. A run interrupted and resumed thus ends with the weights of one that ran
straight through, whatever `num_workers` is.

Under DDP (torchrun) every process trains on its own share of each epoch (`batch_size` images per
process and step), gradients are averaged, and rank 0 alone logs and writes checkpoints. BatchNorm
layers become SyncBatchNorm on GPUs, so their statistics cover the global batch; on CPUs (gloo) each
process keeps its own and rank 0's are saved. GroupNorm (`--set model.norm=gn`) needs neither.

The run folder holds `checkpoint.pt` (rewritten atomically every `checkpoint_every` iterations, at the
end and on Ctrl-C), `metrics.csv` (one row per `log_every` iterations), `config.json`, and
`metrics.json` (COCO metrics on val when `eval_at_end`).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from fpnlab.checkpoint import load_checkpoint, load_weights, rng_state, save_checkpoint, set_rng_state
from fpnlab.config import PRESETS, TrainConfig, get_preset, parse_set
from fpnlab.errors import FpnlabError

CHECKPOINT = "checkpoint.pt"


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

    def curves(self) -> dict[str, list[float]]:
        """`history` as columns {"iteration": [...], "loss": [...], ...}, as fpnlab.plots.loss_curves takes it."""
        return {name: [row[name] for row in self.history] for name in (self.history[0] if self.history else {})}


# --- deterministic data -------------------------------------------------------------------------

def mix_seed(*values: int) -> int:
    """One 32-bit seed from several integers, well mixed (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0])


class SeededBatches(Sampler):
    """Endless batches of (image index, augmentation seed), a pure function of the iteration.

    Epoch e visits the images in a permutation seeded by (seed, e); process `rank` of `world_size`
    takes every world_size-th image of it (DistributedSampler's sharding); the incomplete last batch
    of an epoch is dropped. Batch i of the run is therefore known without replaying batches 0..i-1,
    which is what lets a resumed run start at `start_iteration`.
    """

    def __init__(self, num_images: int, batch_size: int, seed: int, start_iteration: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.start_iteration, self.rank, self.world_size = start_iteration, rank, world_size
        self.batches_per_epoch = num_images // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise FpnlabError(f"the training set has {num_images} images, fewer than one batch "
                              f"({batch_size} per process x {world_size} processes).")

    def position(self, iteration: int) -> dict[str, int]:
        """Where batch `iteration` lies: {"epoch": e, "batch": b} (b-th batch of epoch e)."""
        epoch, batch = divmod(iteration, self.batches_per_epoch)
        return {"epoch": epoch, "batch": batch}

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's images of epoch `epoch`, in visiting order."""
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.num_images, generator=generator).tolist()
        return order[self.rank::self.world_size][: self.batches_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration, epoch, order = self.start_iteration, -1, []
        while True:
            position = self.position(iteration)
            if position["epoch"] != epoch:
                epoch, order = position["epoch"], self.epoch_order(position["epoch"])
            start = position["batch"] * self.batch_size
            yield [(i, mix_seed(self.seed, epoch, i)) for i in order[start:start + self.batch_size]]
            iteration += 1


@contextlib.contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Seed torch, numpy and Python's random inside the block; restore their states afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class SeededAugmentation(Dataset):
    """dataset[(index, seed)] -> dataset[index], its random augmentation drawn from `seed` alone."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with seeded_random(seed):
            return self.dataset[index]


def train_loader(dataset: Dataset, cfg: TrainConfig, start_iteration: int, rank: int,
                 world_size: int) -> DataLoader:
    """Batches from `start_iteration` on, the same for any num_workers (see SeededBatches)."""
    from fpnlab.data import collate_fn

    num_images = min(len(dataset), cfg.max_train_images or len(dataset))
    batches = SeededBatches(num_images, cfg.batch_size, cfg.seed, start_iteration, rank, world_size)
    return DataLoader(SeededAugmentation(dataset), batch_sampler=batches, collate_fn=collate_fn,
                      num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(cfg.seed))  # not the global generator


def load_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """(train split with random horizontal flips, val split) of cfg.dataset."""
    from fpnlab.data import load_split
    from fpnlab.data.transforms import RandomHorizontalFlip

    return (load_split(cfg.dataset, "train", transforms=RandomHorizontalFlip(cfg.hflip_prob)),
            load_split(cfg.dataset, "val"))


# --- model, optimizer, schedule -----------------------------------------------------------------

def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The detector of cfg.model, initialised from cfg.seed."""
    from fpnlab.detector import DetectorConfig, build_detector

    try:
        config = DetectorConfig(num_classes=num_classes, **cfg.model)
    except TypeError as err:
        raise FpnlabError(f"TrainConfig.model has a setting DetectorConfig does not know ({err}).") from None
    torch.manual_seed(cfg.seed)
    return build_detector(config)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; weight decay on weights only, not on norm layers' scales or any bias."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """lr multiplier at `iteration`: linear warm-up from warmup_factor to 1, then step or cosine decay."""
    if iteration < cfg.warmup_iterations:
        alpha = iteration / cfg.warmup_iterations
        return cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "cosine":
        done = (iteration - cfg.warmup_iterations) / max(1, cfg.iterations - cfg.warmup_iterations)
        return 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
    return cfg.gamma ** sum(iteration >= step * cfg.iterations for step in cfg.lr_steps)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA only: bf16 where the GPU has it (no scaler needed), else fp16."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --- processes and devices ----------------------------------------------------------------------

def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        from fpnlab.env import default_device

        device = default_device()
        return torch.device("cuda", local_rank) if device.type == "cuda" else device
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FpnlabError(f"TrainConfig.device {name!r} is not a device name (try 'auto', 'cpu' or 'cuda').") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FpnlabError(f"TrainConfig.device is {name!r} but no CUDA GPU is visible.")
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size): from torchrun's environment variables, (0, 1) when run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size


def average_across_processes(values: dict[str, Tensor]) -> dict[str, float]:
    """Loss terms averaged over all processes (every process gets the same numbers)."""
    stacked = torch.stack([v.detach().float() for v in values.values()])
    if dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(values, stacked.tolist()))


class StopOnCtrlC:
    """Ctrl-C asks the loop to stop after the current iteration (so the checkpoint is consistent).

    A second Ctrl-C interrupts at once. Under DDP every process stops at the same iteration.
    """

    def __enter__(self) -> StopOnCtrlC:
        self.requested = False
        self.previous = None
        with contextlib.suppress(ValueError):  # signal handlers can only be set from the main thread
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: stopping after this iteration and saving a checkpoint (press again to quit now).")

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def should_stop(self, device: torch.device) -> bool:
        if not dist.is_initialized():
            return self.requested
        flag = torch.tensor([float(self.requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # one process pressed: all stop
        return bool(flag.item())


# --- logging ------------------------------------------------------------------------------------

class LogWindow:
    """Loss terms and images/s averaged over the iterations since the last metrics.csv row."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.images, self.start = 0, time.perf_counter()

    def add(self, losses: dict[str, float], images: int) -> None:
        self.losses.append(losses)
        self.images += images

    def images_per_s(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def row(self) -> dict[str, float]:
        """{"loss": total, "loss_objectness": ..., ..., "images_per_s": ...}, means over the window."""
        means = {k: sum(losses[k] for losses in self.losses) / len(self.losses) for k in self.losses[0]}
        return {"loss": sum(means.values()), **means, "images_per_s": self.images_per_s()}


class MetricsLog:
    """metrics.csv in the run folder (and TensorBoard's event files when tensorboard is installed).

    On resume, rows past the checkpoint's iteration (logged after the last save) are dropped.
    """

    def __init__(self, run_dir: Path, start_iteration: int) -> None:
        self.path = run_dir / "metrics.csv"
        self.rows = self._read(start_iteration)
        self._write_all()
        self.tensorboard = None
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_iteration + 1)

    def _read(self, start_iteration: int) -> list[dict[str, float]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            rows = [{k: int(v) if k == "iteration" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        return [row for row in rows if row["iteration"] <= start_iteration]

    def _write_all(self) -> None:
        with self.path.open("w", newline="") as f:
            if self.rows:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)

    def log(self, row: dict[str, float]) -> None:
        first = not self.rows
        self.rows.append(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if first:
                writer.writeheader()
            writer.writerow(row)
        if self.tensorboard is not None:
            for name, value in row.items():
                if name != "iteration":
                    self.tensorboard.add_scalar(name, value, int(row["iteration"]))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


# --- the loop -----------------------------------------------------------------------------------

def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = True, progress: bool = True) -> TrainResult:
    """Train cfg's detector in `run_dir`, continuing the checkpoint there when `resume` is True."""
    cfg.check()
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank, world_size = init_distributed(device)
    main_process = rank == 0
    checkpoint_path = run_dir / CHECKPOINT
    if checkpoint_path.exists() and not resume:
        raise FpnlabError(f"{checkpoint_path} already exists; resume it, or delete it or pick another run folder "
                          "to start over.")

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fastest convolution algorithms for the (fixed) input sizes
    train_set, val_set = load_datasets(cfg)
    model = build_model(cfg, train_set.num_classes).to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
    amp_dtype = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    start = 0
    if checkpoint_path.exists():
        start = restore(checkpoint_path, model, optimizer, scheduler, scaler, cfg, main_process)
    if world_size > 1:
        if cfg.model.get("norm") == "bn" and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics over the global batch
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    log = MetricsLog(run_dir, start) if main_process else None
    loader = train_loader(train_set, cfg, start, rank, world_size)
    sampler: SeededBatches = loader.batch_sampler

    def save(iteration: int) -> None:
        if main_process:
            save_checkpoint(checkpoint_path, training_state(
                model, optimizer, scheduler, scaler, cfg, train_set, iteration, sampler.position(iteration)))
        if dist.is_initialized():
            dist.barrier()  # nobody runs ahead while rank 0 writes

    model.train()
    bar = tqdm(total=cfg.iterations, initial=start, desc="train", unit="it", disable=not (progress and main_process))
    window, t0, images_seen, iteration = LogWindow(), time.perf_counter(), 0, start
    try:
        with StopOnCtrlC() as ctrl_c:
            for images, targets in iter_batches(loader, device, start, cfg.iterations):
                losses = train_step(model, images, targets, optimizer, scheduler, scaler, cfg, amp_dtype,
                                    iteration, checkpoint_path)
                iteration += 1
                images_seen += len(images) * world_size
                window.add(losses, len(images) * world_size)
                bar.update()
                bar.set_postfix({"loss": f"{sum(losses.values()):.3f}", "img/s": f"{window.images_per_s():.1f}",
                                 **{k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items()}})
                if log is not None and (iteration % cfg.log_every == 0 or iteration == cfg.iterations):
                    log.log({"iteration": iteration, "lr": optimizer.param_groups[0]["lr"], **window.row()})
                    window = LogWindow()
                if ctrl_c.should_stop(device):
                    save(iteration)
                    tqdm.write(f"Stopped at iteration {iteration}; {checkpoint_path} saved. "
                               "Run the same command again to resume.")
                    raise KeyboardInterrupt
                if iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations:
                    save(iteration)
    finally:
        bar.close()
        if log is not None:
            log.close()
    wall_s = time.perf_counter() - t0

    metrics = {}
    if cfg.eval_at_end:
        from fpnlab.evaluate import coco_metrics

        if world_size > 1:  # every process evaluates the saved model: rank 0's BatchNorm statistics
            for buffer in unwrap(model).buffers():
                dist.broadcast(buffer, src=0)
        metrics = coco_metrics(unwrap(model), val_set, max_images=cfg.max_val_images, progress=progress)
        if main_process:
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return TrainResult(run_dir=run_dir, checkpoint=checkpoint_path, iteration=iteration,
                       history=log.rows if log is not None else [], device=device, wall_s=wall_s,
                       images_per_s=images_seen / max(wall_s, 1e-9), metrics=metrics)


def train_step(model: nn.Module, images: list[Tensor], targets: list[dict[str, Tensor]],
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
               cfg: TrainConfig, amp_dtype: torch.dtype | None, iteration: int,
               checkpoint_path: Path) -> dict[str, float]:
    """One SGD step on the sum of the detector's losses; returns the loss terms (averaged over processes)."""
    with autocast(images[0].device, amp_dtype):
        losses = model(images, targets)  # loss_objectness, loss_rpn_box_reg, loss_classifier, loss_box_reg
    values = average_across_processes(losses)
    check_finite(values, iteration + 1, checkpoint_path)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(sum(losses.values())).backward()
    if cfg.clip_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
    scaler.step(optimizer)  # skipped by the scaler when fp16 gradients overflowed
    scaler.update()
    scheduler.step()
    return values


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass when `dtype` is set (see autocast_dtype)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def iter_batches(loader: DataLoader, device: torch.device, start: int,
                 end: int) -> Iterator[tuple[list[Tensor], list[dict[str, Tensor]]]]:
    """Batches for iterations start..end-1, moved to `device`."""
    batches = iter(loader)
    for _ in range(start, end):
        images, targets = next(batches)
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in t.items()}
                   for t in targets]
        yield images, targets


def check_finite(losses: dict[str, float], iteration: int, checkpoint_path: Path) -> None:
    """Stop the run at the first NaN or infinite loss term, before it reaches the weights."""
    for name, value in losses.items():
        if not math.isfinite(value):
            kept = f"the last good checkpoint {checkpoint_path} is kept" if checkpoint_path.exists() else \
                "no checkpoint had been saved yet"
            raise FpnlabError(f"training diverged at iteration {iteration}: {name} is {value}; {kept} "
                              "(try a lower lr or a longer warm-up).")


def unwrap(model: nn.Module) -> nn.Module:
    """The detector inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                   scaler: torch.amp.GradScaler, cfg: TrainConfig, train_set: Any, iteration: int,
                   data_position: dict[str, int]) -> dict[str, Any]:
    """Everything a resumed run needs, as tensors and plain values (see fpnlab.checkpoint)."""
    detector = unwrap(model)
    return {
        "model": detector.state_dict(),
        "model_config": dataclasses.asdict(detector.config),
        "categories": list(train_set.categories),
        "label_to_cat_id": dict(train_set.label_to_cat_id),
        "train_config": cfg.to_dict(),
        "iteration": iteration,
        "data_position": data_position,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_state(),
    }


def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: torch.amp.GradScaler, cfg: TrainConfig, main_process: bool) -> int:
    """Load a run's checkpoint into the fresh training objects; return the iteration to continue from."""
    checkpoint = load_checkpoint(path)
    load_weights(model, checkpoint["model"], path)
    if "optimizer" not in checkpoint:
        raise FpnlabError(f"{path} holds weights only (an exported model), no training state to resume.")
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    set_rng_state(checkpoint["rng"])
    changed = [k for k, v in TrainConfig.from_dict(checkpoint["train_config"]).to_dict().items()
               if v != cfg.to_dict()[k]]
    if main_process:
        note = f" with changed settings: {', '.join(changed)}" if changed else ""
        tqdm.write(f"Resuming {path} at iteration {checkpoint['iteration']}{note}.")
    return checkpoint["iteration"]


# --- command line -------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value, e.g. --set lr=0.01 --set model.norm=gn (repeatable)")
    parser.add_argument("--run-dir", type=Path, default=None, help="run folder (default runs/<preset>)")
    parser.add_argument("--no-resume", action="store_true",
                        help="refuse to continue a checkpoint already in the run folder")
    parser.add_argument("--export", type=Path, default=None, metavar="PATH",
                        help="also write the trained model, float16 and without training state, to PATH")
    parser.add_argument("--result", default=None, metavar="NAME",
                        help="record loss curve, wall time and val metrics in results/NAME.json")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from fpnlab.checkpoint import export_model

    cfg = get_preset(args.preset, **parse_set(args.overrides))
    run_dir = args.run_dir or Path("runs") / args.preset
    try:
        result = train(cfg, run_dir, resume=not args.no_resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.metrics:
        from fpnlab.evaluate import format_table

        print(format_table(result.metrics, title=f"COCO metrics, {cfg.dataset} val"))
    if args.export:
        print(f"exported {export_model(result.checkpoint, args.export)}")
    if args.result:
        from fpnlab.results import write_result

        record = summary(args.preset, cfg, result, args.export)
        print(f"wrote {write_result(args.result, record, device=result.device, command=args.command_line)}")
    return 0


def summary(preset: str, cfg: TrainConfig, result: TrainResult, export: Path | None) -> dict[str, Any]:
    """The figures of a run for results/*.json: config, loss curve, time and speed of this call, val metrics."""
    history = result.history
    tenth = max(1, len(history) // 10)
    first, last = history[:tenth], history[-tenth:]
    terms = [k for k in history[0] if k.startswith("loss")] if history else []
    record = {
        "preset": preset,
        "config": cfg.to_dict(),
        "iterations": result.iteration,
        "wall_minutes": round(result.wall_s / 60, 2),
        "images_per_s": round(result.images_per_s, 2),
        "loss_first_tenth": {k: round(sum(r[k] for r in first) / len(first), 4) for k in terms},
        "loss_last_tenth": {k: round(sum(r[k] for r in last) / len(last), 4) for k in terms},
        "loss_curve": [[int(r["iteration"]), round(r["loss"], 4)] for r in history[::max(1, len(history) // 20)]],
        "val_metrics": result.metrics,
        "cpu_threads": torch.get_num_threads(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # > cores: the CPU was shared
    }
    if export is not None:
        record["checkpoint"] = str(export)
        record["checkpoint_mb"] = round(export.stat().st_size / 2**20, 2)
    return record
