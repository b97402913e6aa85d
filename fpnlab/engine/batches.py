"""The training data, deterministic: batch i of a run is a pure function of (seed, i).

The data order of epoch e is a permutation seeded by (seed, e), each image's augmentation is drawn
from a seed of its own (seed, e, index), and neither depends on the number of loader processes. A
resumed run therefore reads exactly the batches an uninterrupted one would have read, from any
iteration on, without replaying the ones before.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from fpnlab.data import CocoDetection, collate_fn, load_split
from fpnlab.data.transforms import RandomHorizontalFlip
from fpnlab.engine.presets import TrainConfig
from fpnlab.errors import FpnlabError


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

    def __init__(
        self, num_images: int, batch_size: int, seed: int, start_iteration: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.start_iteration, self.rank, self.world_size = start_iteration, rank, world_size
        self.batches_per_epoch = num_images // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise FpnlabError(
                f"the training set has {num_images} images, fewer than one batch "
                f"({batch_size} per process x {world_size} processes)."
            )

    def position(self, iteration: int) -> dict[str, int]:
        """Where batch `iteration` lies: {"epoch": e, "batch": b} (b-th batch of epoch e)."""
        epoch, batch = divmod(iteration, self.batches_per_epoch)
        return {"epoch": epoch, "batch": batch}

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's images of epoch `epoch`, in visiting order."""
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.num_images, generator=generator).tolist()
        return order[self.rank :: self.world_size][: self.batches_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration, epoch, order = self.start_iteration, -1, []
        while True:
            position = self.position(iteration)
            if position["epoch"] != epoch:
                epoch, order = position["epoch"], self.epoch_order(position["epoch"])
            start = position["batch"] * self.batch_size
            yield [(i, mix_seed(self.seed, epoch, i)) for i in order[start : start + self.batch_size]]
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


def train_loader(dataset: Dataset, cfg: TrainConfig, start_iteration: int, rank: int, world_size: int) -> DataLoader:
    """Batches from `start_iteration` on, the same for any num_workers (see SeededBatches)."""
    num_images = len(dataset) if cfg.max_train_images is None else min(len(dataset), cfg.max_train_images)
    batches = SeededBatches(num_images, cfg.batch_size, cfg.seed, start_iteration, rank, world_size)
    return DataLoader(
        SeededAugmentation(dataset),
        batch_sampler=batches,
        collate_fn=collate_fn,
        num_workers=cfg.num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(cfg.seed),
    )  # not the global generator


def load_datasets(cfg: TrainConfig) -> tuple[CocoDetection, CocoDetection]:
    """(train split with random horizontal flips, val split) of cfg.dataset; a mask head's train targets hold masks."""
    return (
        load_split(cfg.dataset, "train", RandomHorizontalFlip(cfg.hflip_prob), masks=cfg.model.mask.enabled),
        load_split(cfg.dataset, "val"),
    )


def iter_batches(
    loader: DataLoader, device: torch.device, start: int, end: int
) -> Iterator[tuple[list[Tensor], list[dict[str, Tensor]]]]:
    """Batches for iterations start..end-1, moved to `device`."""
    batches = iter(loader)
    for _ in range(start, end):
        images, targets = next(batches)
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [
            {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in t.items()} for t in targets
        ]
        yield images, targets
