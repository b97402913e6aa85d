"""COCO loading: targets as documented, and one clear DataError naming the file for every kind of bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fpnlab.data import CocoDetection, collate_fn
from fpnlab.errors import DataError
from fpnlab.model.boxes import xywh_to_xyxy, xyxy_to_xywh


def _coco() -> dict:
    """Two 64x48 images; categories with gappy ids 5 and 9; one crowd region."""
    return {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 20, "file_name": "b.jpg", "width": 64, "height": 48},
        ],
        "categories": [{"id": 9, "name": "square"}, {"id": 5, "name": "circle"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 9, "bbox": [4.0, 6.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 5, "bbox": [30, 2, 16, 30], "area": 480, "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": 5, "bbox": [0, 0, 64, 48], "area": 3072, "iscrowd": 1},
            {"id": 4, "image_id": 20, "category_id": 9, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
        ],
    }


def _write(root: Path, data: dict) -> Path:
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps(data))
    return ann_file


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    _write(tmp_path, _coco())
    return tmp_path


def test_targets_labels_and_crowd(dataset_dir):
    ds = CocoDetection(dataset_dir, dataset_dir / "ann.json")
    assert len(ds) == 2 and ds.ids == [10, 20]
    assert ds.categories == ["circle", "square"] and ds.num_classes == 3
    assert ds.label_to_cat_id == {1: 5, 2: 9}
    image, target = ds[0]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    expected = np.asarray(Image.open(dataset_dir / "a.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    assert torch.allclose(image, torch.from_numpy(expected))
    assert target["image_id"] == 10
    assert target["boxes"].tolist() == [[4.0, 6.0, 24.0, 16.0], [30.0, 2.0, 46.0, 32.0]]  # crowd box left out
    assert target["labels"].tolist() == [2, 1] and target["labels"].dtype == torch.int64
    assert target["area"].tolist() == [200.0, 480.0] and target["iscrowd"].tolist() == [0, 0]
    assert ds.coco.anns[3]["iscrowd"] == 1  # still there for COCOeval
    assert ds.image_info(1)["file_name"] == "b.jpg"


def test_xywh_xyxy_round_trip(dataset_dir):
    ds = CocoDetection(dataset_dir, dataset_dir / "ann.json")
    xywh = torch.tensor(
        [a["bbox"] for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=10, iscrowd=False))], dtype=torch.float32
    )
    assert torch.equal(ds[0][1]["boxes"], xywh_to_xyxy(xywh))
    assert torch.equal(xyxy_to_xywh(xywh_to_xyxy(xywh)), xywh)


def test_degenerate_boxes_dropped_with_one_counting_warning(dataset_dir):
    data = _coco()
    data["annotations"] += [
        {"id": 5, "image_id": 10, "category_id": 9, "bbox": [3, 3, 0, 8], "area": 0, "iscrowd": 0},
        {"id": 6, "image_id": 20, "category_id": 5, "bbox": [3, 3, 4, -2], "area": -8, "iscrowd": 0},
    ]
    with pytest.warns(UserWarning) as record:
        ds = CocoDetection(dataset_dir, _write(dataset_dir, data))
    assert len(record) == 1
    assert "dropped 2 box(es)" in str(record[0].message) and "ann.json" in str(record[0].message)
    assert len(ds[0][1]["boxes"]) == 2 and len(ds[1][1]["boxes"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading items warns no more
        ds[0], ds[1]


def test_collate_keeps_a_list_of_each(dataset_dir):
    ds = CocoDetection(dataset_dir, dataset_dir / "ann.json")
    images, targets = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_fn)))
    assert isinstance(images, list) and [im.shape for im in images] == [(3, 48, 64)] * 2
    assert [t["image_id"] for t in targets] == [10, 20]
    assert collate_fn([ds[1]])[1][0]["boxes"].tolist() == [[1.0, 1.0, 6.0, 6.0]]


def test_nothing_is_written_into_the_dataset_folder(dataset_dir):
    def snapshot():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in dataset_dir.rglob("*")}

    before = snapshot()
    ds = CocoDetection(dataset_dir, dataset_dir / "ann.json")
    [ds[i] for i in range(len(ds))]
    assert snapshot() == before


# --- bad JSON: each case is one DataError naming the annotation file --------------------------


def _set(path: list, value):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return data

    return edit


def _delete(section: str, index: int, key: str):
    def edit(data):
        del data[section][index][key]
        return data

    return edit


BAD_JSON = {
    "top level is a list": (lambda d: [d], "top level is a list"),
    "no annotations": (lambda d: {k: v for k, v in d.items() if k != "annotations"}, "no 'annotations'"),
    "images not a list": (_set(["images"], {"id": 1}), "'images' should be a list"),
    "no categories": (_set(["categories"], []), "empty 'categories'"),
    "image id is text": (_set(["images", 0, "id"], "10"), "images[0]['id'] should be an integer"),
    "file name missing": (_delete("images", 1, "file_name"), "images[1] has no 'file_name'"),
    "record not object": (_set(["annotations", 2], 7), "annotations[2] should be an object"),
    "bbox wrong length": (_set(["annotations", 0, "bbox"], [1, 2, 3]), "bbox [1, 2, 3]"),
    "bbox text": (_set(["annotations", 0, "bbox"], [1, 2, "3", 4]), "should be 4 numbers"),
    "bbox not list": (_set(["annotations", 1, "bbox"], "1 2 3 4"), "['bbox'] should be a list"),
    "area text": (_set(["annotations", 0, "area"], "big"), "area 'big'"),
    "iscrowd 2": (_set(["annotations", 0, "iscrowd"], 2), "iscrowd 2"),
    "unknown image": (_set(["annotations", 1, "image_id"], 99), "image_id 99, which is not in 'images'"),
    "unknown category": (_set(["annotations", 3, "category_id"], 1), "category_id 1, which is not in"),
    "duplicate image id": (_set(["images", 1, "id"], 10), "id 10 appears twice in 'images'"),
}


@pytest.mark.parametrize("case", BAD_JSON, ids=list(BAD_JSON))
def test_malformed_annotation_file(dataset_dir, case):
    edit, fragment = BAD_JSON[case]
    ann_file = _write(dataset_dir, edit(_coco()))
    with pytest.raises(DataError) as err:
        CocoDetection(dataset_dir, ann_file)
    assert str(ann_file) in str(err.value) and fragment in str(err.value)


def test_not_json_at_all(dataset_dir):
    ann_file = dataset_dir / "ann.json"
    ann_file.write_text('{"images": [}')
    with pytest.raises(DataError, match="is not valid JSON") as err:
        CocoDetection(dataset_dir, ann_file)
    assert str(ann_file) in str(err.value)


def test_missing_annotation_file_and_image_folder(dataset_dir):
    with pytest.raises(DataError, match="does not exist") as err:
        CocoDetection(dataset_dir, dataset_dir / "nope.json")
    assert str(dataset_dir / "nope.json") in str(err.value)
    with pytest.raises(DataError, match="image folder") as err:
        CocoDetection(dataset_dir / "images", dataset_dir / "ann.json")
    assert str(dataset_dir / "images") in str(err.value)


# --- bad images: found when the image is loaded --------------------------------------------------


def _break_missing(path: Path) -> None:
    path.unlink()


def _break_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _break_not_an_image(path: Path) -> None:
    path.write_text("this is not a JPEG")


@pytest.mark.parametrize(
    "breaker, fragment",
    [
        (_break_missing, "does not exist"),
        (_break_truncated, "truncated or not an image"),
        (_break_not_an_image, "truncated or not an image"),
    ],
)
def test_bad_image_file(dataset_dir, breaker, fragment):
    ds = CocoDetection(dataset_dir, dataset_dir / "ann.json")
    breaker(dataset_dir / "b.jpg")
    ds[0]  # the other image still loads
    with pytest.raises(DataError, match=fragment) as err:
        ds[1]
    assert str(dataset_dir / "b.jpg") in str(err.value)


def test_image_size_disagreeing_with_annotations(dataset_dir):
    Image.new("RGB", (50, 40)).save(dataset_dir / "a.png")
    ds = CocoDetection(dataset_dir, dataset_dir / "ann.json")
    with pytest.raises(DataError, match="is 50x40 pixels but") as err:
        ds[0]
    assert str(dataset_dir / "a.png") in str(err.value) and str(dataset_dir / "ann.json") in str(err.value)
