"""Where datasets live: the shipped shapes-mini sample, the data cache, and `load_split`.

Every dataset folder has the same layout, so one loader reads them all:

    ROOT/train/   images        ROOT/train.json   COCO annotations
    ROOT/val/     images        ROOT/val.json

`shapes_mini()` looks for the sample in the repository checkout (data/shapes-mini, next to the package),
then in the data cache ($FPNLAB_DATA, default ~/.cache/fpnlab), and otherwise regenerates it there with
the same command that made the shipped copy (SHAPES_MINI_COMMAND).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fpnlab.data.coco import CocoDetection, Transform
from fpnlab.data.generate import make_dataset
from fpnlab.data.synthetic import SPLITS
from fpnlab.env import REPO
from fpnlab.errors import DataError
from fpnlab.outputs import rename_folder, unused_name

REPO_DATA = REPO / "data"
# seed: the FPN paper's year. Objects up to 90% of the side, so that COCO's large bucket (>= 96 px) exists.
SHAPES_MINI = {"n_train": 200, "n_val": 120, "size": 160, "seed": 2017, "max_side": 0.9}
SHAPES_MINI_COMMAND = (
    "fpnlab make-data --out data/shapes-mini --train 200 --val 120 --size 160 --max-side 0.9 --seed 2017"
)


@dataclass(frozen=True)
class DatasetPaths:
    """The five paths of a dataset folder."""

    root: Path
    train_images: Path
    train_json: Path
    val_images: Path
    val_json: Path

    @classmethod
    def at(cls, root: str | Path) -> DatasetPaths:
        root = Path(root)
        return cls(root, root / "train", root / "train.json", root / "val", root / "val.json")

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.train_json, self.val_json)) and all(
            p.is_dir() for p in (self.train_images, self.val_images)
        )

    def split(self, split: str) -> tuple[Path, Path]:
        """(image folder, annotation file) of "train" or "val"."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
        return (self.train_images, self.train_json) if split == "train" else (self.val_images, self.val_json)


def cache_dir() -> Path:
    """Folder for generated and downloaded datasets: $FPNLAB_DATA, else ~/.cache/fpnlab."""
    return Path(os.environ.get("FPNLAB_DATA") or Path.home() / ".cache" / "fpnlab")


def shapes_mini(progress: bool = True) -> DatasetPaths:
    """The shapes-mini sample: shipped copy, else cached copy, else made now into the cache."""
    for root in (REPO_DATA / "shapes-mini", cache_dir() / "shapes-mini"):
        if DatasetPaths.at(root).complete():
            return DatasetPaths.at(root)
    target = cache_dir() / "shapes-mini"
    print(f"shapes-mini not found; generating it into {target} ({SHAPES_MINI_COMMAND})", file=sys.stderr)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")  # never mistaken for a finished copy
    make_dataset(partial, progress=progress, overwrite=True, **SHAPES_MINI)
    if os.path.lexists(target):  # an unfinished folder left by an interrupted run: set aside, not deleted
        rename_folder(target, unused_name(target.with_name(f"{target.name}.incomplete")), "shapes-mini folder")
    rename_folder(partial, target, "shapes-mini folder")
    return DatasetPaths.at(target)


def load_split(
    dataset: str | Path = "shapes-mini", split: str = "train", transforms: Transform | None = None, masks: bool = False
) -> CocoDetection:
    """A split of "shapes-mini", of "pennfudan" (after `fpnlab download pennfudan`) or of a dataset folder;
    `masks=True`: each target also holds its objects' masks (N, H, W)."""
    if dataset == "shapes-mini":
        paths = shapes_mini()
    elif dataset == "pennfudan":
        paths = DatasetPaths.at(cache_dir() / "pennfudan")
        if not paths.complete():
            raise DataError(f"Penn-Fudan is not in {paths.root}; run `fpnlab download pennfudan` first.")
    elif Path(dataset).is_dir():
        paths = DatasetPaths.at(dataset)
    else:
        raise DataError(
            f"dataset {str(dataset)!r} is neither 'shapes-mini', 'pennfudan' nor a folder "
            "holding train/, train.json, val/ and val.json (a synthetic one is made by "
            f"`fpnlab make-data --out {dataset}`)."
        )
    return CocoDetection(*paths.split(split), transforms=transforms, masks=masks)
