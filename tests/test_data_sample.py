"""The shipped shapes-mini sample: small, balanced, recognisable, reproducible, and found by shapes_mini()."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from fpnlab.data import catalog, collate_fn, load_split, make_dataset, shapes_mini, size_bucket_shares
from fpnlab.data.synthetic import MIN_CONTRAST, MIN_VISIBLE
from fpnlab.data.transforms import Compose, RandomHorizontalFlip
from fpnlab.errors import DataError

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def sample():
    paths = shapes_mini()
    assert paths.root == catalog.REPO_DATA / "shapes-mini"  # the shipped copy, nothing regenerated
    return paths


def _quiet_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_sample_size_and_counts(sample):
    total = sum(p.stat().st_size for p in sample.root.rglob("*") if p.is_file())
    assert total <= 8 * 2**20
    for images, ann_file, count in (
        (sample.train_images, sample.train_json, catalog.SHAPES_MINI["n_train"]),
        (sample.val_images, sample.val_json, catalog.SHAPES_MINI["n_val"]),
    ):
        coco = _quiet_coco(ann_file)
        assert len(coco.getImgIds()) == count == len(list(images.glob("*.jpg")))
        assert {img["width"] for img in coco.dataset["images"]} == {catalog.SHAPES_MINI["size"]}


@pytest.mark.parametrize("split", ["train", "val"])
def test_sample_size_buckets(sample, split):
    """Every COCO size bucket is there (large too, thanks to max_side 0.9 on 160 px images), small the most."""
    shares = size_bucket_shares(json.loads(sample.split(split)[1].read_text())["annotations"])
    assert min(shares.values()) >= 0.1 and shares["small"] == max(shares.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 warning
def test_objects_stay_visible_and_contrasted(sample):
    """Each object shows >= 60% of itself; small objects differ in brightness from their surroundings."""
    coco = _quiet_coco(sample.val_json)
    visible_share, contrast = [], []
    for image in coco.dataset["images"]:
        anns = coco.imgToAnns[image["id"]]  # drawing order: back to front
        masks = [coco.annToMask(a).astype(bool) for a in anns]  # (H, W) each
        luma = np.asarray(Image.open(sample.val_images / image["file_name"]), dtype=float) / 255 @ LUMA
        for i, (ann, mask) in enumerate(zip(anns, masks)):
            in_front = np.logical_or.reduce(masks[i + 1 :]) if i + 1 < len(masks) else np.zeros_like(mask)
            visible = mask & ~in_front
            visible_share.append(visible.sum() / mask.sum())
            if ann["area"] < 32**2:
                x, y, w, h = (int(v) for v in ann["bbox"])
                around = np.zeros_like(mask)
                around[max(y - 3, 0) : y + h + 4, max(x - 3, 0) : x + w + 4] = True
                around &= ~mask & ~in_front
                contrast.append(abs(luma[visible].mean() - luma[around].mean()))
    assert min(visible_share) >= MIN_VISIBLE - 0.02
    assert len(contrast) > 100
    assert np.median(contrast) >= MIN_CONTRAST * 0.8 and np.percentile(contrast, 10) >= 0.15


def test_sample_is_what_its_command_makes(sample, tmp_path):
    """The first images of each split, regenerated with SHAPES_MINI's settings, match the shipped ones."""
    settings = {**catalog.SHAPES_MINI, "n_train": 3, "n_val": 2}
    fresh = make_dataset(tmp_path, workers=1, progress=False, **settings)
    for split, count in (("train", 3), ("val", 2)):
        shipped = json.loads(sample.split(split)[1].read_text())
        made = json.loads((fresh / f"{split}.json").read_text())
        assert made["images"] == shipped["images"][:count]
        assert made["annotations"] == [a for a in shipped["annotations"] if a["image_id"] <= count]
        for info in made["images"]:
            a = np.asarray(Image.open(fresh / split / info["file_name"]), dtype=float)
            b = np.asarray(Image.open(sample.split(split)[0] / info["file_name"]), dtype=float)
            assert np.abs(a - b).mean() < 0.5  # equal bytes here; JPEG libraries may differ elsewhere


def test_shapes_mini_regenerates_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "REPO_DATA", tmp_path / "no-checkout")
    monkeypatch.setenv("FPNLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setitem(catalog.SHAPES_MINI, "n_train", 3)
    monkeypatch.setitem(catalog.SHAPES_MINI, "n_val", 2)
    (tmp_path / "cache" / "shapes-mini" / "train").mkdir(parents=True)  # an interrupted earlier attempt
    paths = shapes_mini(progress=False)
    assert paths.root == tmp_path / "cache" / "shapes-mini" and paths.complete()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["shapes-mini", "shapes-mini.incomplete"]
    assert (tmp_path / "cache" / "shapes-mini.incomplete" / "train").is_dir()  # set aside, not deleted
    assert len(load_split("shapes-mini", "val")) == 2
    assert shapes_mini(progress=False) == paths  # found, not made again


def test_load_split_and_a_training_batch(sample):
    train = load_split("shapes-mini", "train", transforms=Compose([RandomHorizontalFlip()]))
    assert len(train) == catalog.SHAPES_MINI["n_train"] and train.num_classes == 7
    loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True, collate_fn=collate_fn)
    images, targets = next(iter(loader))
    assert len(images) == 4 and all(im.shape == (3, 160, 160) for im in images)
    for target in targets:
        boxes = target["boxes"]  # (N, 4) xyxy
        assert len(boxes) >= 1 and (boxes[:, 2:] > boxes[:, :2]).all()
        assert boxes.min() >= 0 and boxes.max() <= 160
        assert target["labels"].min() >= 1 and target["labels"].max() <= 6
    assert len(load_split(sample.root, "val")) == catalog.SHAPES_MINI["n_val"]


def test_load_split_unknown_names(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="'shapes_mini' is neither.*fpnlab make-data --out shapes_mini"):
        load_split("shapes_mini")
    with pytest.raises(DataError, match="split must be one of train, val"):
        load_split("shapes-mini", "test")
    monkeypatch.setenv("FPNLAB_DATA", str(tmp_path))
    with pytest.raises(DataError, match="fpnlab download pennfudan"):
        load_split("pennfudan")
