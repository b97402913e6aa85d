"""Every bad input a user (or an attacker) can give the command line: one line, exit code 2, nothing changed.

Each case builds its files in a fresh folder, runs `fpnlab ...` there through fpnlab.cli.main, and
checks the exit code, a fragment of the one-line message and that every file in the folder is
byte-for-byte what it was before (nothing deleted, nothing overwritten, nothing left behind).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fpnlab.cli import main
from fpnlab.data import make_dataset
from fpnlab.engine.checkpoint import DEMO_CHECKPOINT, load_checkpoint, save_checkpoint


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def photo(path: Path, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(
        mode
    ).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG that claims width x height pixels (a decompression bomb needs no more to be refused)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )
    return path


def coco_folder(root: Path, val: dict | str) -> Path:
    """A dataset folder whose val.json is `val` (a dict, or raw text)."""
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
    good = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20]}],
        "categories": [{"id": 1, "name": "circle"}],
    }
    (root / "train.json").write_text(json.dumps(good))
    (root / "val.json").write_text(val if isinstance(val, str) else json.dumps(val))
    photo(root / "val" / "a.jpg")
    return root


def bad_annotation(**changes) -> dict:
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], **changes}
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [ann],
        "categories": [{"id": 1, "name": "circle"}],
    }


def demo_variant(path: Path, **changes) -> Path:
    """The shipped demo checkpoint with some fields replaced (crafted or damaged files)."""
    save_checkpoint(
        path,
        {**{k: v for k, v in load_checkpoint(DEMO_CHECKPOINT).items() if k not in ("format", "version")}, **changes},
    )
    return path


def own_dataset_with_a_stranger(root: Path) -> None:
    make_dataset(root / "out", 2, 1, size=64, workers=1, progress=False)
    photo(root / "out" / "train" / "my_holiday.jpg")


# (name, setup(folder) -> None, command line, message fragment)
CASES: list[tuple[str, Callable[[Path], object], list[str], str]] = [
    # 1. make-data never touches files it did not make
    (
        "make-data into a folder of photos",
        lambda d: (photo(d / "out" / "train" / "000000.jpg"), photo(d / "out" / "val" / "me.jpg")),
        ["make-data", "--out", "out", "--train", "2", "--val", "1", "--size", "64", "--workers", "1"],
        "is not empty and holds no dataset made by `fpnlab make-data`",
    ),
    (
        "make-data --overwrite on a folder of photos",
        lambda d: photo(d / "out" / "train" / "000000.jpg"),
        ["make-data", "--out", "out", "--train", "2", "--val", "1", "--size", "64", "--overwrite"],
        "is not empty and holds no dataset made by",
    ),
    (
        "make-data --overwrite beside a stranger's file",
        own_dataset_with_a_stranger,
        ["make-data", "--out", "out", "--train", "1", "--val", "1", "--size", "64", "--overwrite", "--workers", "1"],
        "also holds 1 file(s) make-data did not make (e.g. out/train/my_holiday.jpg)",
    ),
    (
        "make-data again without --overwrite",
        lambda d: make_dataset(d / "out", 1, 1, size=64, workers=1, progress=False),
        ["make-data", "--out", "out", "--train", "1", "--val", "1", "--size", "64"],
        "already holds a dataset made by `fpnlab make-data`; pass --overwrite",
    ),
    (
        "make-data --out a file",
        lambda d: (d / "out").write_text("notes"),
        ["make-data", "--out", "out", "--train", "1", "--val", "1"],
        "--out out is a file",
    ),
    # 2. detect never writes over its input
    (
        "detect --out the input",
        lambda d: photo(d / "x.jpg"),
        ["detect", "x.jpg", "--out", "x.jpg"],
        "--out x.jpg is the input file itself",
    ),
    (
        "detect --out a folder",
        lambda d: (photo(d / "x.jpg"), (d / "shots").mkdir()),
        ["detect", "x.jpg", "--out", "shots"],
        "--out shots is a folder",
    ),
    # 7. checkpoints that are not what they claim
    (
        "checkpoint without weights",
        lambda d: torch.save({"format": "fpnlab-checkpoint", "version": 2}, d / "c.pt"),
        ["eval", "--checkpoint", "c.pt"],
        "checkpoint c.pt has no model weights",
    ),
    (
        "checkpoint carrying code",
        lambda d: (
            photo(d / "x.jpg"),
            torch.save({"format": "fpnlab-checkpoint", "version": 2, "model": Path("/")}, d / "c.pt"),
        ),
        ["detect", "x.jpg", "--checkpoint", "c.pt"],
        "contains pickled Python objects, which can run code",
    ),
    (
        "checkpoint is a folder",
        lambda d: (d / "c.pt").mkdir(),
        ["eval", "--checkpoint", "c.pt"],
        "checkpoint c.pt is a folder, not a file",
    ),
    (
        "checkpoint is /dev/zero",
        lambda d: None,
        ["eval", "--checkpoint", "/dev/zero"],
        "checkpoint /dev/zero is not a regular file",
    ),
    (
        "checkpoint with too few categories",
        lambda d: (photo(d / "x.jpg"), demo_variant(d / "c.pt", categories=["a"])),
        ["detect", "x.jpg", "--checkpoint", "c.pt"],
        "names 1 categories but its detector has 6 classes",
    ),
    (
        "checkpoint asking for a 627 GB layer",
        lambda d: demo_variant(
            d / "c.pt",
            model_config={**load_checkpoint(DEMO_CHECKPOINT)["model_config"], "box": {"representation_size": 10**8}},
        ),
        ["eval", "--checkpoint", "c.pt"],
        "representation_size must be in 1..16384",
    ),
    # 9. images the detector cannot use as they are
    (
        "decompression bomb",
        lambda d: png_header_only(d / "bomb.png", 14000, 14000),
        ["detect", "bomb.png"],
        "image file bomb.png is too large to read safely",
    ),
    (
        "3000 x 2 image",
        lambda d: photo(d / "line.png", (3000, 2)),
        ["detect", "line.png"],
        "image file line.png: an image of 2 x 2048 pixels is too elongated",
    ),
    (
        "not an image",
        lambda d: (d / "x.jpg").write_bytes(b"\xff\xd8\xff not a jpeg"),
        ["detect", "x.jpg"],
        "image file x.jpg cannot be read",
    ),
    # 10. annotation files
    (
        "JSON nested 100000 deep",
        lambda d: coco_folder(d / "data", "[" * 100_000 + "]" * 100_000),
        ["eval", "--dataset", "data"],
        "val.json is nested too deeply",
    ),
    (
        "box entirely outside its image",
        lambda d: coco_folder(d / "data", bad_annotation(bbox=[100, 4, 20, 20])),
        ["eval", "--dataset", "data"],
        "lies entirely outside its 64x48 image",
    ),
    (
        "bbox of 1e300",
        lambda d: coco_folder(d / "data", bad_annotation(bbox=[0, 0, 1e300, 5])),
        ["eval", "--dataset", "data"],
        "val.json: annotations[0] (id 1) has bbox [0, 0, 1e+300, 5]",
    ),
    (
        "width given as text",
        lambda d: coco_folder(
            d / "data",
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": "64", "height": 48}],
                "annotations": [],
                "categories": [{"id": 1, "name": "circle"}],
            },
        ),
        ["eval", "--dataset", "data"],
        "val.json: images[0]['width'] should be a whole number of pixels >= 1 but is '64'",
    ),
    # 11. output paths, checked before any work
    (
        "--run-dir a file",
        lambda d: (d / "run").write_text("notes"),
        ["train", "--preset", "test", "--run-dir", "run"],
        "run folder run is a file, not a folder",
    ),
    (
        "--export where nothing can be written",
        lambda d: None,
        ["train", "--preset", "test", "--run-dir", "run", "--export", "/proc/x.pt"],
        "cannot write in the folder of --export",
    ),
    # 12. settings out of range
    (
        "eval --batch-size 0",
        lambda d: None,
        ["eval", "--batch-size", "0"],
        "argument --batch-size: must be >= 1, got 0",
    ),
    ("eval --batch-size -1", lambda d: None, ["eval", "--batch-size", "-1"], "argument --batch-size: must be >= 1"),
    (
        "max_train_images=0",
        lambda d: None,
        ["train", "--preset", "test", "--set", "max_train_images=0"],
        "max_train_images must be >= 1 (or None for all images), got 0",
    ),
    ("momentum=-1", lambda d: None, ["train", "--set", "momentum=-1"], "momentum must be in [0, 1), got -1"),
    ("weight_decay=-1", lambda d: None, ["train", "--set", "weight_decay=-1"], "weight_decay must be >= 0"),
    ("hflip_prob=7", lambda d: None, ["train", "--set", "hflip_prob=7"], "hflip_prob is a probability in [0, 1]"),
    (
        "warm-up longer than the run",
        lambda d: None,
        ["train", "--preset", "test", "--set", "warmup_iterations=50"],
        "warmup_iterations must be in 0..iterations (12), got 50",
    ),
    (
        "a typo in a nested setting",
        lambda d: None,
        ["train", "--set", "model.box.nms_tresh=0.4"],
        "unknown setting TrainConfig.model.box.nms_tresh; known: head, representation_size",
    ),
]


@pytest.mark.parametrize("setup, argv, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(setup, argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    before = snapshot(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors (exit code 2)
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in "\n".join(err) and "error:" in err[-1]
    assert message in err[-1], err[-1]
    assert snapshot(tmp_path) == before


def test_make_data_overwrite_replaces_only_what_it_made(tmp_path):
    make_dataset(tmp_path / "out", 3, 2, size=64, workers=1, progress=False)
    (tmp_path / "notes.txt").write_text("mine")  # beside the dataset, not in it
    assert (
        main(
            [
                "make-data",
                "--out",
                str(tmp_path / "out"),
                "--train",
                "1",
                "--val",
                "1",
                "--size",
                "64",
                "--overwrite",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(snapshot(tmp_path / "out")) == [
        "make-data.json",
        "train.json",
        "train/000000.jpg",
        "val.json",
        "val/000000.jpg",
    ]  # the 2 extra images of the old set are gone
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_detect_writes_its_default_output_under_runs_not_beside_the_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = photo(tmp_path / "photos" / "street.jpg", (96, 64))
    assert main(["detect", str(image)]) == 0
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["street.jpg"]
    assert (tmp_path / "runs" / "detect" / "street.png").is_file()
    assert capsys.readouterr().out.startswith("runs/detect/street.png: ")


def test_export_to_an_unwritable_place_fails_before_training(tmp_path, monkeypatch):
    import fpnlab.commands.train as command

    monkeypatch.setattr(command, "train", lambda *a, **k: pytest.fail("trained before checking --export"))
    assert main(["train", "--preset", "test", "--run-dir", str(tmp_path / "run"), "--export", "/proc/x.pt"]) == 2
    assert not (tmp_path / "run").exists()


def test_sixteen_bit_png_keeps_its_values(tmp_path):
    """A 16-bit greyscale PNG (mode I;16) is scaled by 65535, not clipped to white."""
    from fpnlab.data.images import read_image

    levels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)  # (3, 4)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode == "I;16"
    image, note = read_image(tmp_path / "deep.png")
    assert note == "" and tuple(image.shape) == (3, 3, 4)
    expected = torch.tensor([0.0, 16384 / 65535, 32768 / 65535, 1.0]).expand(3, 4)  # every channel, first row
    assert torch.allclose(image[:, 0], expected)


def test_a_huge_photo_is_shrunk_before_it_becomes_floats(tmp_path):
    from fpnlab.data.images import read_image

    image, note = read_image(photo(tmp_path / "big.jpg", (3000, 2000)), max_side=1000)
    assert tuple(image.shape) == (3, 667, 1000)
    assert note == "shrunk from 3000 x 2000 to 1000 x 667 pixels"


def test_float64_images_are_accepted_and_detect_what_float32_would():
    from fpnlab.engine.presets import get_preset
    from fpnlab.model.detector import build_detector

    model = build_detector(dataclasses.replace(get_preset("test").model, num_classes=3)).eval()
    image = torch.rand(3, 80, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        single, double = model([image])[0], model([image.double()])[0]
    assert all(torch.equal(single[k], double[k]) for k in single)
