"""The synthetic shapes generator: deterministic bytes, balanced size buckets, valid COCO, a working CLI."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from fpnlab.cli import main
from fpnlab.data import CATEGORIES, make_dataset, size_bucket_shares
from fpnlab.data.synthetic import OBJECTS_PER_IMAGE, polygon_area, unit_polygon
from fpnlab.errors import FpnlabError


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """40 + 8 images at 320 px, enough objects (~500) for stable bucket shares."""
    return make_dataset(tmp_path_factory.mktemp("shapes"), 40, 8, size=320, seed=5, workers=2, progress=False)


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    one = make_dataset(tmp_path / "one", 6, 3, size=160, seed=11, workers=1, progress=False)
    two = make_dataset(tmp_path / "two", 6, 3, size=160, seed=11, workers=2, progress=False)
    other = make_dataset(tmp_path / "other", 6, 3, size=160, seed=12, workers=2, progress=False)
    files = _all_bytes(one)
    assert len(files) == 6 + 3 + 2 + 1  # images, COCO files, the make-data.json marker
    assert files == _all_bytes(two)
    differing = [name for name, data in _all_bytes(other).items() if files[name] != data]
    assert len(differing) == len(files) - 1  # another seed changes every image and both JSONs (not the marker)


def test_each_size_bucket_holds_a_quarter_of_the_boxes(generated):
    annotations = json.loads((generated / "train.json").read_text())["annotations"]
    shares = size_bucket_shares(annotations)
    assert len(annotations) > 300
    assert min(shares.values()) >= 0.25, shares
    assert sum(shares.values()) == pytest.approx(1.0)


def test_objects_per_image_classes_and_box_extent(generated):
    coco = _quiet_coco(generated / "train.json")
    counts = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert OBJECTS_PER_IMAGE[0] <= min(counts) and max(counts) <= OBJECTS_PER_IMAGE[1]
    assert max(counts) - min(counts) >= 8  # the count really varies
    assert {a["category_id"] for a in coco.dataset["annotations"]} == set(range(1, len(CATEGORIES) + 1))
    assert [c["name"] for c in coco.dataset["categories"]] == list(CATEGORIES)
    boxes = np.array([a["bbox"] for a in coco.dataset["annotations"]])  # (N, 4) xywh
    assert boxes[:, :2].min() >= 0 and (boxes[:, :2] + boxes[:, 2:]).max() <= 320
    assert boxes[:, 2:].max() <= 0.6 * 320 + 0.1
    assert np.sqrt(boxes[:, 2] * boxes[:, 3]).min() >= 8


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 warning
def test_pycocotools_masks_agree_with_area_and_bbox(generated):
    coco = _quiet_coco(generated / "val.json")
    assert len(coco.getImgIds()) == 8
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)  # (H, W) uint8, rasterised by pycocotools from the polygon
        assert mask.sum() == pytest.approx(ann["area"], rel=0.12, abs=6)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h
        assert ann["iscrowd"] == 0


def test_ring_polygon_has_a_hole():
    ring, circle = unit_polygon("ring"), unit_polygon("circle")
    assert polygon_area(ring) == pytest.approx(polygon_area(circle) * (1 - 0.55**2), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(n_train=-1, n_val=0), "--train"),
        (dict(n_train=1, n_val=0, size=32), "--size"),
        (dict(n_train=1, n_val=0, workers=0), "--workers"),
    ],
)
def test_bad_arguments_raise_one_clear_error(tmp_path, kwargs, fragment):
    with pytest.raises(FpnlabError, match=fragment):
        make_dataset(tmp_path, progress=False, **kwargs)


def test_existing_dataset_is_kept_unless_overwrite(tmp_path):
    make_dataset(tmp_path, 3, 1, size=96, seed=0, workers=1, progress=False)
    before = _all_bytes(tmp_path)
    with pytest.raises(FpnlabError, match="already holds a dataset made by `fpnlab make-data`"):
        make_dataset(tmp_path, 2, 1, size=96, seed=1, workers=1, progress=False)
    assert _all_bytes(tmp_path) == before
    make_dataset(tmp_path, 2, 1, size=96, seed=1, workers=1, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000000.jpg", "000001.jpg"]


def test_make_data_command_line(tmp_path):
    out = tmp_path / "cli"
    command = [
        sys.executable,
        "-m",
        "fpnlab",
        "make-data",
        "--out",
        str(out),
        "--train",
        "4",
        "--val",
        "2",
        "--size",
        "128",
        "--seed",
        "3",
        "--workers",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "make-data train" in result.stderr  # the progress bar
    assert len(_quiet_coco(out / "train.json").getImgIds()) == 4
    assert len(list((out / "val").glob("*.jpg"))) == 2
    assert f"{out / 'train'}: " in result.stdout


def test_make_data_command_line_error_is_one_line(tmp_path, capsys):
    make_dataset(tmp_path, 1, 1, size=96, workers=1, progress=False)
    assert main(["make-data", "--out", str(tmp_path), "--train", "1", "--val", "1", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--out {tmp_path} already holds a dataset" in error
