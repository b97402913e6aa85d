"""`make_dataset`: the synthetic shapes rendered into a dataset folder, in COCO format, never over a user's files.

    make_dataset("data/shapes", n_train=4000, n_val=500, size=512)   # fpnlab make-data --out data/shapes ...

The folder gets train/*.jpg, val/*.jpg, train.json and val.json (COCO), and make-data.json, a marker
written first that lists what is being made. A folder holding anything else (a link included: links
are listed, never followed) is refused; a dataset made here before is replaced only with
`overwrite=True`, and then only the files make-data made are deleted. Every file is written through
fpnlab.outputs (train/ and val/ must be real folders, never links). The bytes do not depend on the
number of worker processes (synthetic.render_image is a pure function).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

from PIL import Image

from fpnlab.data.coco import write_coco_json
from fpnlab.data.synthetic import CATEGORIES, JPEG_QUALITY, MAX_SIDE_FRACTION, SPLITS, coco_annotation, render_image
from fpnlab.errors import FpnlabError
from fpnlab.outputs import folder_entries, is_regular, listing, make_folder, make_subfolder, remove_lab_file, write_new
from fpnlab.progress import phase

CATEGORY_RECORDS = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]
DESCRIPTION = "fpnlab synthetic multi-scale shapes"  # info.description of the COCO files make-data writes
MARKER = "make-data.json"  # written first: which files make-data is making here
MAX_SIZE = 4096  # pixels: the detector resizes to at most 4096 anyway (DetectorConfig.max_size)
MAX_IMAGES = 1_000_000  # per split
MAX_SEED = 2**32 - 1


def _render_job(job: tuple[Path, str, int, int, int, float]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Worker: render one image, save it as JPEG, return its COCO image entry and annotations."""
    folder, split, index, size, seed, max_side = job
    pixels, objects = render_image(seed, split, index, size, max_side)
    file_name = image_name(index)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    write_new(folder / file_name, buffer.getvalue(), "dataset image")
    image = {"id": index + 1, "file_name": file_name, "width": size, "height": size}
    return image, [coco_annotation(obj) for obj in objects]


def image_name(index: int) -> str:
    return f"{index:06d}.jpg"


def _check_arguments(n_train: int, n_val: int, size: int, workers: int, max_side: float, seed: int) -> None:
    """Every number in its range before anything is made (a 60000 px side would not fit in memory)."""
    if not (0 <= n_train <= MAX_IMAGES and 0 <= n_val <= MAX_IMAGES):
        raise FpnlabError(f"--train and --val must be in 0..{MAX_IMAGES:,}, got {n_train} and {n_val}.")
    if not 64 <= size <= MAX_SIZE:
        raise FpnlabError(f"--size must be in 64..{MAX_SIZE} pixels, got {size}.")
    if not 1 <= workers <= 1024:
        raise FpnlabError(f"--workers must be in 1..1024, got {workers}.")
    if not 0.1 <= max_side <= 1.0:  # False for NaN too
        raise FpnlabError(f"--max-side is a fraction of the image side in [0.1, 1], got {max_side}.")
    if not 0 <= seed <= MAX_SEED:
        raise FpnlabError(f"--seed must be in 0..{MAX_SEED}, got {seed}.")


def files_made_here(out: Path) -> set[Path] | None:
    """The files an earlier make-data wrote into `out` (from its marker, else its COCO files), or None when
    `out` holds no make-data output."""
    marker = out / MARKER
    if is_regular(marker):
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError, OSError):
            counts = {split: int(json.loads(marker.read_bytes())["images"][split]) for split in SPLITS}
            if all(0 <= n <= MAX_IMAGES for n in counts.values()):
                return {
                    marker,
                    *(out / f"{split}.json" for split in SPLITS),
                    *(out / split / image_name(i) for split in SPLITS for i in range(counts[split])),
                }
    made = set()
    for split in SPLITS:
        path = out / f"{split}.json"
        if not is_regular(path):
            continue
        try:
            data = json.loads(path.read_bytes())
            if data["info"]["description"] != DESCRIPTION:
                return None
            made |= {path, *(out / split / str(image["file_name"]) for image in data["images"])}
        except (ValueError, KeyError, TypeError, OSError, RecursionError):
            return None
    return made or None


def prepare_target(out: Path, overwrite: bool) -> None:
    """Refuse a target holding anything make-data did not make; with `overwrite`, delete what it made."""
    if os.path.lexists(out) and not out.is_dir():
        raise FpnlabError(f"--out {out} is a file; give a folder for the dataset.")
    present = folder_entries(out) if out.exists() else []
    if not present:
        return
    made = files_made_here(out)
    if made is None:
        raise FpnlabError(
            f"--out {out} is not empty and holds no dataset made by `fpnlab make-data` ({listing(present, out)}); "
            "pick an empty or new folder (nothing in it was changed)."
        )
    if not overwrite:
        raise FpnlabError(
            f"--out {out} already holds a dataset made by `fpnlab make-data`; pass --overwrite to replace it."
        )
    foreign = [path for path in present if path not in made or not is_regular(path)]
    if foreign:
        raise FpnlabError(
            f"--out {out} also holds {len(foreign)} file(s) make-data did not make (e.g. "
            f"{foreign[0]}); move them elsewhere first (nothing was deleted)."
        )
    for path in present:
        remove_lab_file(path, "dataset file")


def make_dataset(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    size: int = 512,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    max_side: float = MAX_SIDE_FRACTION,
) -> Path:
    """Write `DIR/{train,val}/*.jpg` and `DIR/{train,val}.json` (COCO); return DIR.

    `workers` processes render images in parallel (default: every core); the bytes written do not
    depend on it. DIR must be new or empty; a dataset make-data made there before is replaced only with
    `overwrite=True`, and a folder holding anything else is refused. `max_side` caps a box's side as a
    fraction of the image side.
    """
    out = Path(out_dir)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    _check_arguments(n_train, n_val, size, workers, max_side, seed)
    prepare_target(out, overwrite)
    make_folder(out, "--out")
    marker = {"made_by": "fpnlab make-data", "images": {"train": n_train, "val": n_val}}
    write_new(out / MARKER, json.dumps(marker), "make-data marker")
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        for split, count in zip(SPLITS, (n_train, n_val)):
            jobs = [(out / split, split, index, size, seed, max_side) for index in range(count)]
            make_subfolder(out / split, "dataset folder")
            results = pool.imap(_render_job, jobs, chunksize=4) if pool else map(_render_job, jobs)
            images, annotations = [], []
            with phase(f"make-data {split}", count, "images", progress) as bar:
                for image, anns in results:
                    images.append(image)
                    first = len(annotations) + 1
                    annotations += [{"id": first + i, "image_id": image["id"], **ann} for i, ann in enumerate(anns)]
                    bar.update()
            info = {"description": DESCRIPTION, "split": split, "seed": seed, "image_size": size, "max_side": max_side}
            write_coco_json(
                out / f"{split}.json",
                {"info": info, "images": images, "annotations": annotations, "categories": CATEGORY_RECORDS},
            )
    finally:
        if pool is not None:
            pool.terminate()
    return out
