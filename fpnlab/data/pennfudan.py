"""Penn-Fudan pedestrians (Wang, Shi, Song, Shen; ACCV 2007) as a COCO dataset: a small real-data check.

170 street photos with 345 people, each person a mask instance. `download_pennfudan(out)`:

0. claims OUT like `make-data` does: a new or empty folder gets the marker download.json; a folder holding
   files the download did not make is refused with the list of what is there (nothing is touched);
1. downloads the archive to OUT/PennFudanPed.zip.part, resuming an interrupted download (continued with an
   HTTP Range request);
2. verifies its SHA-256 when one is given (by default it only reports it: see PENNFUDAN_SHA256) before
   anything is moved into place: a mismatch deletes only the .part it downloaded; a complete archive
   becomes OUT/PennFudanPed.zip, and one already there that does not match is left as it is;
3. converts it: each PNGImages/<name>.png is copied to OUT/train/ or OUT/val/ (the last 30% of names, in
   sorted order, form val), and each instance of PedMasks/<name>_mask.png (pixel value k = person k)
   becomes one COCO annotation with an RLE mask, its box and its area (pycocotools.mask), category
   1 = "person". The result has the shapes-mini layout, so `load_split(OUT)` reads it.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from fpnlab.data.catalog import DatasetPaths, cache_dir
from fpnlab.data.coco import write_coco_json
from fpnlab.errors import DataError, FpnlabError
from fpnlab.outputs import (
    always,
    folder_entries,
    is_regular,
    listing,
    make_folder,
    make_subfolder,
    move_into_place,
    open_append,
    remove_lab_file,
    write_atomic,
    write_new,
)
from fpnlab.sources import check_regular_file

PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
# The archive's SHA-256 is not recorded here: it could not be fetched when this module was written, and a
# made-up value would fail every real download. None means "report the checksum, do not verify it";
# pass `sha256=` (or --sha256) to verify.
PENNFUDAN_SHA256: str | None = None
VAL_FRACTION = 0.3
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"}]
CHUNK_BYTES = 1 << 20
MARKER = "download.json"  # written first into OUT: the folder is the download's


# --- download -----------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    check_regular_file(path, "archive")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, part: Path, progress: bool) -> None:
    """Append the rest of `url` to `part`, from its current size on (restarting if the server can't resume)."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # range not satisfiable: the .part file already holds every byte
            return
        raise DataError(f"downloading {url} failed: HTTP {err.code} {err.reason}.") from err
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f"downloading {url} failed ({getattr(err, 'reason', err)}).") from err
    with response:
        resumed = start > 0 and getattr(response, "status", None) == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            raise DataError(f"downloading {url} failed: the server sent a different byte range than asked for.")
        start = start if resumed else 0  # a plain 200 answer (or a file:// URL) sends everything again
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else None
        with (
            open_append(part, "partial download", binary=True, truncate=not resumed) as f,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.name, disable=not progress) as bar,
        ):
            try:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise DataError(f"downloading {url} was interrupted ({err}); run again to resume from {part}.") from err
    if total is not None and part.stat().st_size != total:
        raise DataError(
            f"downloading {url} stopped after {part.stat().st_size} of {total} bytes; run again to resume from {part}."
        )


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True) -> str:
    """Download `url` to `dest` (resuming `dest`.part), check `sha256` if given before the archive is moved
    into place; return the archive's SHA-256. `dest`'s folder must be the download's own (download_pennfudan
    claims it)."""
    dest = Path(dest)
    make_folder(dest.parent, "download folder")
    if is_regular(dest):
        digest = file_sha256(dest)
        if sha256 is not None and digest != sha256.lower():
            raise DataError(
                f"{dest} has SHA-256 {digest}, expected {sha256}; it was left as it is: delete it to download "
                "the archive afresh."
            )
        return digest
    part = dest.with_name(dest.name + ".part")
    _fetch(url, part, progress)
    digest = file_sha256(part)
    if sha256 is not None and digest != sha256.lower():
        remove_lab_file(part, "partial download")  # what this download wrote, nothing else
        raise DataError(
            f"{dest} downloaded from {url} has SHA-256 {digest}, expected {sha256}; the download was "
            "deleted (nothing was moved into place), run again to download it afresh."
        )
    move_into_place(part, dest, "archive")
    return digest


def claim_folder(out: Path) -> None:
    """Make OUT the download's folder: new or empty (then marked), or already marked; refused otherwise."""
    if out.exists() and not out.is_dir():
        raise FpnlabError(f"--out {out} is a file; give a folder for the dataset.")
    if is_regular(out / MARKER):
        return
    present = folder_entries(out) if out.exists() else []
    if present:
        raise FpnlabError(
            f"--out {out} holds files `fpnlab download` did not make ({listing(present, out)}); pick an empty or "
            "new folder (nothing in it was changed)."
        )
    make_folder(out, "--out")
    write_new(out / MARKER, json.dumps({"made_by": "fpnlab download pennfudan"}), "download marker")


# --- conversion ---------------------------------------------------------------------------------


def mask_annotations(mask: np.ndarray) -> list[dict[str, Any]]:
    """One COCO annotation (without ids) per instance of a (H, W) mask whose pixel value k > 0 is instance k."""
    annotations = []
    for instance in np.unique(mask[mask > 0]):
        rle = mask_utils.encode(np.asfortranarray(mask == instance, dtype=np.uint8))
        annotations.append(
            {
                "category_id": 1,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],  # [x, y, w, h] of the mask's pixels
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            }
        )
    return annotations


def _read_mask(zf: zipfile.ZipFile, archive: Path, image_member: str) -> np.ndarray:
    """The instance mask of PNGImages/<name>.png, read from PedMasks/<name>_mask.png: (H, W) instance ids."""
    path = PurePosixPath(image_member)
    mask_member = str(path.parent.parent / "PedMasks" / f"{path.stem}_mask.png")
    try:
        return np.array(Image.open(io.BytesIO(zf.read(mask_member))))
    except KeyError as err:
        raise DataError(f"{archive} has {image_member} but no mask {mask_member}.") from err


def convert(archive: str | Path, out: str | Path, val_fraction: float = VAL_FRACTION) -> DatasetPaths:
    """Turn the Penn-Fudan zip into OUT/{train,val}/*.png and OUT/{train,val}.json (COCO, RLE masks)."""
    archive, paths = Path(archive), DatasetPaths.at(out)
    claim_folder(paths.root)
    check_regular_file(archive, "archive")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{archive} is not a readable zip archive ({err}).") from err
    with zf:
        members = sorted(n for n in zf.namelist() if PurePosixPath(n).parent.name == "PNGImages" and n.endswith(".png"))
        if not members:
            raise DataError(f"{archive} holds no PNGImages/*.png: it is not the Penn-Fudan archive.")
        n_train = len(members) - round(len(members) * val_fraction)
        for split, chosen in (("train", members[:n_train]), ("val", members[n_train:])):
            folder, ann_file = paths.split(split)
            make_subfolder(folder, "dataset folder")
            images, annotations = [], []
            for member in chosen:
                image_id = members.index(member) + 1  # unique across both splits
                mask = _read_mask(zf, archive, member)  # (H, W)
                write_atomic(folder / PurePosixPath(member).name, zf.read(member), "image", may_replace=always)
                images.append(
                    {
                        "id": image_id,
                        "file_name": PurePosixPath(member).name,
                        "width": mask.shape[1],
                        "height": mask.shape[0],
                    }
                )
                for ann in mask_annotations(mask):
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
            write_coco_json(
                ann_file,
                {
                    "info": {"description": "Penn-Fudan pedestrians", "split": split},
                    "images": images,
                    "annotations": annotations,
                    "categories": CATEGORIES,
                },
                may_replace=always,
            )
    return paths


def download_pennfudan(
    out: str | Path | None = None,
    url: str = PENNFUDAN_URL,
    sha256: str | None = PENNFUDAN_SHA256,
    progress: bool = True,
) -> tuple[DatasetPaths, str]:
    """Download (or resume), check and convert Penn-Fudan into OUT (default: the data cache's pennfudan/).

    Returns the dataset paths and the archive's SHA-256.
    """
    out = Path(out) if out is not None else cache_dir() / "pennfudan"
    claim_folder(out)
    digest = download(url, out / "PennFudanPed.zip", sha256=sha256, progress=progress)
    return convert(out / "PennFudanPed.zip", out), digest
