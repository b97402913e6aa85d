"""Property-based tests (hypothesis): generated settings, COCO files, images and paths through the real entry points.

The property, for every generated input: exit 0 with a correct result, or exit 2 with exactly one line
that names the setting or file; and every file that was there before is byte for byte what it was
(hashed without following any link). The examples are derandomized (conftest.py's profile) and few:
the whole module takes well under a minute. Failing examples hypothesis found while this was written
are kept as plain cases in tests/test_robustness.py and tests/test_bad_input.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import fpnlab.commands.train as train_command
from fpnlab.cli import main
from fpnlab.data import CocoDetection, make_dataset
from fpnlab.data.images import to_tensor
from fpnlab.errors import DataError
from tests.test_robustness import snapshot


class Stop(Exception):
    """Raised by the stand-in for training: the settings got through the command line."""


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fpnlab-property-") as name:
        yield Path(name)


def run(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """fpnlab ARGV in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The one error line; fails on a traceback or on more than one line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and " error: " in lines[0], err
    return lines[0]


# --- settings strings -------------------------------------------------------------------------------------

# setting -> (words of which the error line names at least one, the range an accepted value lies in)
RANGES: dict[str, tuple[tuple[str, ...], Any]] = {
    "lr": (("lr",), lambda v: 0 < v < math.inf),
    "momentum": (("momentum",), lambda v: 0 <= v < 1),
    "weight_decay": (("weight_decay",), lambda v: 0 <= v < math.inf),
    "hflip_prob": (("hflip_prob",), lambda v: 0 <= v <= 1),
    "gamma": (("gamma",), lambda v: 0 < v <= 1),
    "iterations": (("iterations",), lambda v: v >= 2),  # at least the warm-up (2); a checkpoint at the end
    "batch_size": (("batch_size",), lambda v: 1 <= v <= 4096),
    "seed": (("seed",), lambda v: 0 <= v < 2**32),
    "num_workers": (("num_workers",), lambda v: 0 <= v <= 256),
    "device": (("device",), lambda v: isinstance(v, str)),
    "schedule": (("schedule",), lambda v: v in ("step", "cosine")),
    "lr_steps": (("lr_steps",), lambda v: all(0 < s < 1 for s in v)),
    "model.rpn.nms_thresh": (("nms_thresh",), lambda v: 0 <= v <= 1),
    "model.fpn_channels": (("fpn_channels",), lambda v: 1 <= v <= 4096),
    "model.min_size": (("min_size",), lambda v: 0 < v <= 320),
    "model.roi.canonical_size": (("canonical_size",), lambda v: v is None or 0 < v < math.inf),
    "model.levels": (("level",), lambda v: len(v) in (1, 4)),  # one anchor size per level (4), or all on one
    "model.image_mean": (("image_mean",), lambda v: len(v) == 3),
}
VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "none", "true", "", "p2,p3,p4,p5", "p2,p9", "0.5,0.9", "(0.5,)"]),
    st.sampled_from(["cpu", "meta", "cuda:7", "step", "cosine", "gn", "[1, 2, 3]", "{'a': 1}", "p2", "'x'"]),
    st.text(alphabet="abcp0123456789.,-e ", max_size=12),
)


@settings(max_examples=60)
@given(key=st.sampled_from(sorted(RANGES)), value=VALUES)
def test_any_setting_string_is_taken_in_range_or_refused_naming_it(key, value, capsys):
    seen = []

    def stand_in(cfg, *args, **kwargs):
        seen.append(cfg)
        raise Stop

    with pytest.MonkeyPatch.context() as patch, folder() as root:
        patch.setattr(train_command, "train", stand_in)
        try:
            code, _, err = run(["train", "--preset", "test", "--run-dir", str(root), "--set", f"{key}={value}"], capsys)
        except Stop:
            code, err = 0, ""
    words, accepted = RANGES[key]
    if code == 0:
        node = seen[0]
        for part in key.split("."):
            node = getattr(node, part)
        assert accepted(node), (key, value, node)
    else:
        line = one_line(err)
        assert code == 2 and any(word in line for word in words), line


# --- COCO annotation files through the dataset -----------------------------------------------------------

NUMBERS = st.one_of(st.integers(-5, 80), st.floats(-5, 80, allow_nan=False), st.sampled_from([math.nan, 1e300, 2**70]))
IDS = st.one_of(st.integers(1, 4), st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**70]))


@st.composite
def coco_files(draw: Any) -> dict[str, Any]:
    categories = [{"id": c, "name": f"class{c}"} for c in draw(st.lists(IDS, min_size=1, max_size=3, unique=True))]
    images = [
        {"id": i, "file_name": f"{n}.png", "width": 16, "height": 12}
        for n, i in enumerate(draw(st.lists(IDS, min_size=1, max_size=3, unique=True)))
    ]
    annotations = []
    for n in range(draw(st.integers(0, 4))):
        ann = {
            "id": n + 1,
            "image_id": draw(st.sampled_from([im["id"] for im in images] + [99])),
            "category_id": draw(st.sampled_from([c["id"] for c in categories] + [77])),
            "bbox": draw(st.lists(NUMBERS, min_size=3, max_size=5)),
        }
        if draw(st.booleans()):
            ann["area"] = draw(NUMBERS)
        if draw(st.booleans()):
            ann["iscrowd"] = draw(st.sampled_from([0, 1, 2, True]))
        annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": categories}


def expected_targets(data: dict[str, Any]) -> dict[int, tuple[list[list[float]], list[int]]]:
    """Worked out here, independently of fpnlab: xywh -> xyxy of the non-crowd boxes with w, h > 0; labels
    number the categories by id, from 1."""
    label = {c["id"]: i + 1 for i, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}
    found: dict[int, tuple[list[list[float]], list[int]]] = {im["id"]: ([], []) for im in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0) == 0 and w > 0 and h > 0:
            found[ann["image_id"]][0].append([x, y, x + w, y + h])
            found[ann["image_id"]][1].append(label[ann["category_id"]])
    return found


@settings(max_examples=50)
@given(data=coco_files())
def test_any_coco_file_loads_right_or_is_refused_naming_the_file(data):
    with folder() as root:
        (root / "images").mkdir()
        for image in data["images"]:
            Image.new("RGB", (16, 12), (10, 20, 30)).save(root / "images" / image["file_name"])
        (root / "ann.json").write_text(json.dumps(data))
        before = snapshot(root)
        try:
            dataset = CocoDetection(root / "images", root / "ann.json")
            loaded = {dataset.ids[i]: dataset[i][1] for i in range(len(dataset))}
        except DataError as err:
            assert str(root / "ann.json") in str(err) and "\n" not in str(err), str(err)
            loaded = None
        assert snapshot(root) == before
    if loaded is not None:
        for image_id, (boxes, labels) in expected_targets(data).items():
            target = loaded[image_id]
            assert target["boxes"].tolist() == pytest.approx(boxes) and target["labels"].tolist() == labels


# --- images: modes, sizes, EXIF ---------------------------------------------------------------------------

MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "LA", "I;16", "I", "F"]
FORMATS = {"I": "TIFF", "F": "TIFF", "CMYK": "JPEG"}  # else PNG


def make_image(mode: str, width: int, height: int, seed: int, top: float) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "F":
        return Image.fromarray((rng.random((height, width)) * top).astype(np.float32))  # mode F
    if mode == "I":
        return Image.fromarray((rng.random((height, width)) * top).astype(np.int32))  # mode I
    if mode == "I;16":
        return Image.fromarray((rng.random((height, width)) * min(top, 65535)).astype(np.uint16))  # mode I;16
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


@settings(max_examples=12)
@given(
    mode=st.sampled_from(MODES),
    width=st.integers(1, 72),
    height=st.integers(1, 72),
    orientation=st.integers(1, 8),
    top=st.sampled_from([1.0, 255.0, 4095.0, 65535.0, 1e6]),
)
def test_detect_takes_any_image_upright_or_refuses_it_in_one_line(mode, width, height, orientation, top, capsys):
    with folder() as root:
        image = make_image(mode, width, height, 0, top)
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = root / f"in.{FORMATS.get(mode, 'PNG').lower()}"
        image.save(path, FORMATS.get(mode, "PNG"), exif=exif)
        before = snapshot(root)
        code, out, err = run(["detect", str(path), "--out", str(root / "out.png")], capsys)
        after = snapshot(root)
        if code == 0:
            with Image.open(path) as saved:
                turned = saved.getexif().get(0x0112, 1) >= 5  # what was stored (a format may drop the tag)
            with Image.open(root / "out.png") as drawn:
                assert drawn.size == ((height, width) if turned else (width, height))
        else:
            assert code == 2 and str(path) in one_line(err)
        assert {name: after[name] for name in before} == before


@settings(max_examples=40)
@given(mode=st.sampled_from(MODES), top=st.sampled_from([1.0, 255.0, 4095.0, 65535.0, 1e6]), seed=st.integers(0, 9))
def test_every_mode_becomes_three_channels_in_zero_one_scaled_not_clipped(mode, top, seed):
    image = make_image(mode, 5, 4, seed, top)
    tensor = to_tensor(image)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    pixels = np.asarray(image, dtype=np.float64)
    if mode in ("I;16", "I") and pixels.max() <= 65535:
        expected = pixels / 65535  # 16-bit: the full 16-bit range
    elif mode == "F" and pixels.max() <= 1:
        expected = pixels
    elif mode == "F" and pixels.max() <= 255:
        expected = pixels / 255
    elif mode in ("F", "I"):
        low, high = pixels.min(), pixels.max()
        expected = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
        if mode == "F" and high <= 65535:
            expected = pixels / 65535
    else:
        expected = np.asarray(image.convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255
    expected = np.broadcast_to(expected, (3, 4, 5))
    assert np.allclose(tensor.numpy(), expected, atol=1e-6)


# --- paths: links, pipes, long names ----------------------------------------------------------------------

KINDS = ["file", "link", "dangling", "pipe", "folder", "long", "under a file", "missing"]
OUT_KINDS = ["new", "link to a user's file", "the input's hard link", "a user's file", "folder", "long", "pipe"]


def make_path(root: Path, kind: str, name: str, source: Path | None = None) -> Path:
    path = root / name
    if kind == "file":
        Image.new("RGB", (40, 30), (200, 10, 10)).save(path, "PNG")
    elif kind in ("link", "link to a user's file"):
        target = root / f"{name}.target"
        (target.write_text("the user's") if kind.endswith("file") else Image.new("RGB", (40, 30)).save(target, "PNG"))
        path.symlink_to(target)
    elif kind == "dangling":
        path.symlink_to(root / "nowhere")
    elif kind == "pipe":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "long":
        path = root / ("x" * 300)
    elif kind == "under a file":
        (root / "afile").write_text("x")
        path = root / "afile" / name
    elif kind == "the input's hard link":
        os.link(source, path)
    elif kind == "a user's file":
        path.write_text("the user's")
    return path


@settings(max_examples=20)
@given(image_kind=st.sampled_from(KINDS), out_kind=st.sampled_from(OUT_KINDS))
def test_detect_on_any_path_writes_only_its_output_or_refuses_in_one_line(image_kind, out_kind, capsys):
    with folder() as root:
        image = make_path(root, image_kind, "in.png")
        if out_kind == "the input's hard link" and image_kind != "file":
            out_kind = "new"  # a hard link needs a file to link to
        out = make_path(root, out_kind, "out.png", source=image)
        before = snapshot(root)
        code, _, err = run(["detect", str(image), "--out", str(out)], capsys)
        after = snapshot(root)
        if code == 0:
            assert image_kind in ("file", "link") and out_kind == "new"
            with Image.open(out) as drawn:
                assert drawn.format == "PNG"
            assert {name: after[name] for name in before} == before
        else:
            line = one_line(err)
            assert code == 2 and (str(image)[:60] in line or str(out)[:60] in line), line
            assert after == before


# --- a few COCO files through `fpnlab eval` ------------------------------------------------------------------


@settings(max_examples=6)
@given(drop=st.sampled_from(["area", "iscrowd", "both", "none"]), crowd=st.booleans(), big_id=st.booleans())
def test_eval_scores_a_dataset_with_optional_fields_left_out(drop, crowd, big_id, capsys):
    with folder() as root:
        make_dataset(root / "data", 1, 1, size=64, workers=1, progress=False)
        val = json.loads((root / "data" / "val.json").read_text())
        for ann in val["annotations"]:
            for field in {"area": ["area"], "iscrowd": ["iscrowd"], "both": ["area", "iscrowd"]}.get(drop, []):
                ann.pop(field)
        if crowd and val["annotations"]:
            val["annotations"][0]["iscrowd"] = 1
        if big_id:
            val["images"][0]["id"] = 2**64
            for ann in val["annotations"]:
                ann["image_id"] = 2**64
        (root / "data" / "val.json").write_text(json.dumps(val))
        before = snapshot(root)
        code, out, err = run(["eval", "--dataset", str(root / "data"), "--no-progress"], capsys)
        assert snapshot(root) == before
    if big_id:
        assert code == 2 and "beyond a 64-bit integer" in one_line(err)
    else:
        assert code == 0, err
        lines = out.splitlines()
        row = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["AP"]) + 1].split()
        assert len(row) == 12 and any(value != "-" for value in row), out  # never "-" for every metric


def test_the_profile_is_derandomized():
    assert settings().derandomize and settings().database is None
