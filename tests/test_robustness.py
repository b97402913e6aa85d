"""Issue 21, case by case: nothing the user made is touched, what runs is what is recorded, nothing hangs, one line.

Each case builds its files in a fresh folder, runs `fpnlab ...` there in-process (fpnlab.cli.main) and
checks, by class:

    data loss   exit 2 with one line, or exit 0; either way every file that was there before is byte
                for byte what it was, and no link was followed or replaced (the snapshot reads no link)
    wrong       exit 2 naming the setting or file, or exit 0 with the right result (checked by hand)
    hang        exit 2 at once (a 30 s alarm turns a hang into a failure)
    traceback   exit 2 with exactly one line that names the file or setting

The cases use only what every version of fpnlab has (its command line, make_dataset, the Python API's
names), so the same cases run against any version: that is how the issue's "before -> after" counts
were taken. Below them: a SIGKILL while a checkpoint is written, and the Python API's own cases.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fpnlab.cli import main
from fpnlab.data import make_dataset

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "checkpoints" / "demo.pt"
LAB_RUN_FILES = {f"run/{name}" for name in ("checkpoint.pt", "metrics.csv", "config.json", "metrics.json", ".lock")}
QUICK = ["--preset", "test", "--set", "iterations=2", "--no-progress"]  # a 2-iteration run: seconds


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` -> the SHA-256 of a file's bytes, a link's target, or its kind; no link followed."""
    found = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                found[str(path.relative_to(folder))] = "link to " + os.readlink(path)
            elif stat.S_ISREG(mode):
                found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path.relative_to(folder))] = "special"
    return found


def photo(path: Path, size: tuple[int, int] = (64, 48), exif: dict[int, int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if exif:
        tags = Image.Exif()
        tags.update(exif)
        image.save(path, exif=tags)
    else:
        image.save(path)
    return path


def victim(folder: Path) -> Path:
    path = folder / "victim.txt"
    path.write_text("the user's own file")
    return path


def run_folder(folder: Path) -> Path:
    """A run folder of the lab (its marker), empty otherwise."""
    (folder / "run").mkdir()
    (folder / "run" / "fpnlab-run.json").write_text('{"made_by": "fpnlab train"}\n')
    return folder / "run"


def trained(folder: Path, *extra: str) -> Path:
    """A 2-iteration run in folder/run."""
    assert main(["train", *QUICK, "--run-dir", str(folder / "run"), *extra]) == 0
    return folder / "run" / "checkpoint.pt"


def edit_checkpoint(path: Path, **changes: Any) -> None:
    checkpoint = torch.load(path, weights_only=True)
    torch.save({**checkpoint, **changes}, path)


def lr_column(folder: Path) -> dict[int, float]:
    with open(folder / "run" / "metrics.csv") as f:
        return {int(float(row["iteration"])): float(row["lr"]) for row in csv.DictReader(f)}


def mkfifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # the file stays after the socket closes
    server.close()


def nan_checkpoint(path: Path) -> None:
    checkpoint = torch.load(DEMO, weights_only=True)
    weights = dict(checkpoint["model"])
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    torch.save({**checkpoint, "model": weights}, path)


def rpn_only_checkpoint(path: Path) -> None:
    checkpoint = torch.load(DEMO, weights_only=True)
    weights = {k: v for k, v in checkpoint["model"].items() if not k.startswith("roi_heads.")}
    torch.save({**checkpoint, "model": weights, "model_config": {**checkpoint["model_config"], "rpn_only": True}}, path)


def renamed_val(folder: Path) -> None:
    make_dataset(folder / "data", 2, 1, size=64, workers=1, progress=False)
    val = json.loads((folder / "data" / "val.json").read_text())
    val["categories"][0]["name"] = "disc"
    (folder / "data" / "val.json").write_text(json.dumps(val))


def shapes(folder: Path, val: Callable[[dict], Any] | None = None, pipe: bool = False) -> Path:
    """A tiny make-data set (the demo checkpoint's classes) in folder/data: its val.json edited by `val`,
    its val image replaced by a named pipe with `pipe`."""
    root = make_dataset(folder / "data", 1, 1, size=64, workers=1, progress=False)
    if val is not None:
        data = json.loads((root / "val.json").read_text())
        val(data)
        (root / "val.json").write_text(json.dumps(data))
    if pipe:
        (root / "val" / "000000.jpg").unlink()
        mkfifo(root / "val" / "000000.jpg")
    return root


def strip_optional_fields(data: dict) -> None:
    for ann in data["annotations"]:
        ann.pop("area"), ann.pop("iscrowd")


def huge_image_id(data: dict) -> None:
    data["images"][0]["id"] = 2**70
    for ann in data["annotations"]:
        ann["image_id"] = 2**70


def new_folder(path: Path) -> Path:
    path.mkdir()
    return path


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


TRAIN_RENAMED = ["--set", "dataset=data", "--set", "eval_at_end=true", "--set", "max_train_images=2"]
ABLATE = ["ablate", "--preset", "test", "--set", "iterations=2", "--no-progress", "--out", "out"]

# (class, name, setup(folder), command line, one-line fragment (exit 2) or check(folder, stdout) (exit 0), env)
CASES: list[tuple[str, str, Callable[[Path], Any], list[str], str | Callable[[Path, str], Any], dict[str, str]]] = [
    # --- data loss ------------------------------------------------------------------------------------
    (
        "data loss",
        "the run folder's lock file is a link to a user's file",
        lambda d: (run_folder(d), (d / "run" / ".lock").symlink_to(victim(d))),
        ["train", *QUICK, "--run-dir", "run"],
        "run folder lock run/.lock is a symbolic link",
        {},
    ),
    (
        "data loss",
        "a link at the checkpoint's old fixed temporary name",
        lambda d: (run_folder(d), (d / "run" / "checkpoint.pt.tmp").symlink_to(victim(d))),
        ["train", *QUICK, "--run-dir", "run"],
        lambda d, out: torch.load(d / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 2,
        {},
    ),
    (
        "data loss",
        "a link at the export's old fixed temporary name",
        lambda d: (d / "model.pt.tmp").symlink_to(victim(d)),
        ["train", *QUICK, "--run-dir", "run", "--export", "model.pt"],
        lambda d, out: stat.S_ISREG(os.lstat(d / "model.pt").st_mode),
        {},
    ),
    (
        "data loss",
        "a user's file at the export's old fixed temporary name",
        lambda d: (d / "model.pt.tmp").write_text("my notes"),
        ["train", *QUICK, "--run-dir", "run", "--export", "model.pt"],
        lambda d, out: (d / "model.pt").is_file(),
        {},
    ),
    (
        "data loss",
        "--export onto a user's file",
        lambda d: (d / "model.pt").write_text("my notes"),
        ["train", *QUICK, "--run-dir", "run", "--export", "model.pt"],
        "--export model.pt already exists and was not written by fpnlab",
        {},
    ),
    (
        "data loss",
        "detect --out a hard link of its input",
        lambda d: os.link(photo(d / "x.jpg"), d / "y.png"),
        ["detect", "x.jpg", "--out", "y.png"],
        "--out y.png is the input file itself",
        {},
    ),
    (
        "data loss",
        "detect --out a symbolic link",
        lambda d: (photo(d / "x.jpg"), (d / "y.png").symlink_to(victim(d))),
        ["detect", "x.jpg", "--out", "y.png"],
        "--out y.png is a symbolic link",
        {},
    ),
    (
        "data loss",
        "detect --out a user's file",
        lambda d: (photo(d / "x.jpg"), (d / "y.png").write_text("my notes")),
        ["detect", "x.jpg", "--out", "y.png"],
        "--out y.png already exists and was not written by fpnlab",
        {},
    ),
    (
        "data loss",
        "make-data into a folder whose train/ is a link",
        lambda d: ((d / "mine").mkdir(), (d / "out").mkdir(), (d / "out" / "train").symlink_to(d / "mine")),
        ["make-data", "--out", "out", "--train", "1", "--val", "1", "--size", "64", "--workers", "1", "--no-progress"],
        "--out out is not empty and holds no dataset made by `fpnlab make-data` (train)",
        {},
    ),
    (
        "data loss",
        "a run folder holding the user's own config.json",
        lambda d: ((d / "run").mkdir(), (d / "run" / "config.json").write_text('{"mine": 1}')),
        ["train", *QUICK, "--run-dir", "run"],
        "run folder run holds files fpnlab did not make (config.json)",
        {},
    ),
    (
        "data loss",
        "download into a folder of the user's files",
        lambda d: victim(new_folder(d / "pf")),
        ["download", "pennfudan", "--out", "pf", "--url", "file:///nonexistent.zip", "--no-progress"],
        "--out pf holds files `fpnlab download` did not make (victim.txt)",
        {},
    ),
    (
        "data loss",
        "download: an archive already there that fails the checksum",
        lambda d: (
            (d / "pf").mkdir(),
            (d / "pf" / "download.json").write_text("{}"),
            (d / "pf" / "PennFudanPed.zip").write_bytes(b"my own copy"),
        ),
        ["download", "pennfudan", "--out", "pf", "--url", "file:///none.zip", "--sha256", "0" * 64, "--no-progress"],
        "pf/PennFudanPed.zip has SHA-256 ",
        {},
    ),
    (
        "data loss",
        "ablate's figure would replace a user's picture",
        lambda d: ((d / "out").mkdir(), photo(d / "out" / "ablation_rpn_test.png")),
        [*ABLATE, "--variants", "fpn"],
        "the figure out/ablation_rpn_test.png already exists and was not written by fpnlab",
        {},
    ),
    (
        "data loss",
        "--result onto a user's JSON in the results folder",
        lambda d: ((d / "results").mkdir(), (d / "results" / "mine.json").write_text('{"a": 1}')),
        ["eval", "--result", "mine", "--max-images", "1", "--no-progress"],
        "--result results/mine.json already exists and was not written by fpnlab",
        {"FPNLAB_RESULTS": "results"},
    ),
    (
        "data loss",
        "metrics.csv is a link to a user's file",
        lambda d: (run_folder(d), (d / "run" / "metrics.csv").symlink_to(victim(d))),
        ["train", *QUICK, "--run-dir", "run"],
        "metrics log run/metrics.csv is a symbolic link",
        {},
    ),
    # --- silent wrong results -----------------------------------------------------------------------
    (
        "wrong",
        "resume with a new lr: the restored schedule takes it",
        lambda d: trained(d),
        ["train", *QUICK, "--run-dir", "run", "--set", "iterations=4", "--set", "lr=0.005"],
        lambda d, out: lr_column(d)[3] == pytest.approx(0.005 * 0.5),  # cosine half-way: by hand
        {},
    ),
    (
        "wrong",
        "resume with model.num_classes (ignored, yet recorded)",
        lambda d: trained(d),
        ["train", *QUICK, "--run-dir", "run", "--set", "model.num_classes=5"],
        "TrainConfig.model.num_classes is 5, but it is taken from the dataset",
        {},
    ),
    (
        "wrong",
        "resume with another seed",
        lambda d: trained(d),
        ["train", *QUICK, "--run-dir", "run", "--set", "iterations=3", "--set", "seed=4"],
        "run/checkpoint.pt was trained with other seed",
        {},
    ),
    (
        "wrong",
        "train scoring a val split whose categories are renamed",
        renamed_val,
        ["train", *QUICK, "--run-dir", "run", *TRAIN_RENAMED],
        "the model trained on data detects circle, square",
        {},
    ),
    (
        "wrong",
        "detect shows a photo turned by its EXIF orientation",
        lambda d: photo(d / "x.jpg", (64, 48), exif={0x0112: 6}),
        ["detect", "x.jpg", "--out", "y.png"],
        lambda d, out: png_size(d / "y.png") == (48, 64),
        {},
    ),
    (
        "wrong",
        "--score-threshold nan",
        lambda d: photo(d / "x.jpg"),
        ["detect", "x.jpg", "--score-threshold", "nan"],
        "--score-threshold is a score in [0, 1], got nan",
        {},
    ),
    (
        "wrong",
        "--score-threshold -1",
        lambda d: photo(d / "x.jpg"),
        ["detect", "x.jpg", "--score-threshold", "-1"],
        "--score-threshold is a score in [0, 1], got -1.0",
        {},
    ),
    (
        "wrong",
        "ablate with a repeated seed",
        lambda d: None,
        [*ABLATE, "--variants", "fpn", "--seeds", "0,0"],
        "ablation seed 0 is given more than once",
        {},
    ),
    (
        "wrong",
        "ablate with a repeated variant",
        lambda d: None,
        [*ABLATE, "--variants", "fpn,fpn"],
        "ablation variant fpn is given more than once",
        {},
    ),
    (
        "wrong",
        "--time-budget nan",
        lambda d: None,
        [*ABLATE, "--variants", "fpn", "--time-budget", "nan"],
        "--time-budget is a number of minutes > 0, got nan",
        {},
    ),
    ("wrong", "an infinite lr", lambda d: None, ["train", *QUICK, "--set", "lr=1e999"], "TrainConfig.lr expects", {}),
    (
        "wrong",
        "a checkpoint whose weights are NaN",
        lambda d: nan_checkpoint(d / "c.pt"),
        ["eval", "--checkpoint", "c.pt", "--max-images", "1", "--no-progress"],
        "has weights that are not finite",
        {},
    ),
    (
        "wrong",
        "RANK=1 alone (would never write its checkpoint)",
        lambda d: None,
        ["train", *QUICK, "--run-dir", "r"],
        "RANK=1, WORLD_SIZE=1, LOCAL_RANK=0 do not fit together",
        {"RANK": "1"},
    ),
    (
        "wrong",
        "make-data --size 5000 (no upper bound)",
        lambda d: None,
        ["make-data", "--out", "o", "--train", "1", "--val", "0", "--size", "5000", "--workers", "1"],
        "--size must be in 64..4096 pixels, got 5000",
        {},
    ),
    (
        "wrong",
        "a device that cannot train",
        lambda d: None,
        ["train", *QUICK, "--set", "device=meta"],
        "TrainConfig.device 'meta' cannot train or detect",
        {},
    ),
    (
        "wrong",
        "--set model.levels=p2,p3,p4,p5 (the documented comma form)",
        lambda d: None,
        ["train", *QUICK, "--run-dir", "run", "--set", "model.levels=p2,p3,p4,p5"],
        lambda d, out: (
            json.loads((d / "run" / "config.json").read_text())["model"]["levels"] == ["p2", "p3", "p4", "p5"]
        ),
        {},
    ),
    (  # found by hypothesis (tests/test_properties.py): one level takes every anchor size (Table 1 row f)
        "wrong",
        "--set model.levels=p2: all four anchor sizes on P2",
        lambda d: None,
        ["train", *QUICK, "--run-dir", "run", "--set", "model.levels=p2"],
        lambda d, out: json.loads((d / "run" / "config.json").read_text())["model"]["levels"] == ["p2"],
        {},
    ),
    # --- hangs --------------------------------------------------------------------------------------
    (
        "hang",
        "detect a named pipe",
        lambda d: mkfifo(d / "x.jpg"),
        ["detect", "x.jpg"],
        "image file x.jpg is not a regular file",
        {},
    ),
    (
        "hang",
        "an annotation file that is a named pipe",
        lambda d: (shapes(d), (d / "data" / "val.json").unlink(), mkfifo(d / "data" / "val.json")),
        ["eval", "--dataset", "data", "--no-progress"],
        "annotation file data/val.json is not a regular file",
        {},
    ),
    (
        "hang",
        "a dataset image that is a named pipe",
        lambda d: shapes(d, pipe=True),
        ["eval", "--dataset", "data", "--no-progress"],
        "image file data/val/000000.jpg (listed in data/val.json) is not a regular file",
        {},
    ),
    (
        "hang",
        "detect a socket",
        lambda d: unix_socket(Path("x.jpg")),
        ["detect", "x.jpg"],
        "image file x.jpg is not a regular file",
        {},
    ),
    (
        "hang",
        "a checkpoint that is a named pipe",
        lambda d: mkfifo(d / "c.pt"),
        ["eval", "--checkpoint", "c.pt"],
        "checkpoint c.pt is not a regular file",
        {},
    ),
    # --- one line, never a traceback ----------------------------------------------------------------------
    (
        "traceback",
        "an image name too long for the file system",
        lambda d: None,
        ["detect", "x" * 300 + ".jpg"],
        "the name is too long for the file system",
        {},
    ),
    (
        "traceback",
        "a dangling link as the image",
        lambda d: (d / "x.jpg").symlink_to(d / "gone.jpg"),
        ["detect", "x.jpg"],
        "image file x.jpg does not exist",
        {},
    ),
    (
        "traceback",
        "--result sub/x",
        lambda d: None,
        ["eval", "--result", "sub/x", "--max-images", "1"],
        "--result 'sub/x' is not a plain record name",
        {},
    ),
    (
        "traceback",
        "ablate --name sub/x",
        lambda d: None,
        [*ABLATE, "--variants", "fpn", "--name", "sub/x"],
        "--name 'sub/x' is not a plain record name",
        {},
    ),
    (
        "traceback",
        "a corrupt ablation record",
        lambda d: ((d / "out").mkdir(), (d / "out" / "ab.json").write_text("{")),
        [*ABLATE, "--variants", "fpn", "--name", "ab"],
        "--name out/ab.json already exists and was not written by",
        {},
    ),
    (
        "traceback",
        "model.image_mean of the wrong length",
        lambda d: None,
        ["train", *QUICK, "--set", "model.image_mean=0.5,0.5"],
        "DetectorConfig.image_mean and image_std need 3",
        {},
    ),
    (
        "traceback",
        "a seed beyond 64 bits",
        lambda d: None,
        ["train", *QUICK, "--set", f"seed={2**64}"],
        "TrainConfig.seed must be in 0..4294967295",
        {},
    ),
    (
        "traceback",
        "make-data --seed -1",
        lambda d: None,
        ["make-data", "--out", "o", "--train", "1", "--val", "0", "--size", "64", "--seed", "-1"],
        "--seed must be in 0..4294967295, got -1",
        {},
    ),
    (
        "traceback",
        "an RPN-only checkpoint given to detect",
        lambda d: (photo(d / "x.jpg"), rpn_only_checkpoint(d / "c.pt")),
        ["detect", "x.jpg", "--checkpoint", "c.pt"],
        "checkpoint c.pt holds an RPN alone",
        {},
    ),
    (
        "traceback",
        "an RPN-only checkpoint given to eval",
        lambda d: rpn_only_checkpoint(d / "c.pt"),
        ["eval", "--checkpoint", "c.pt", "--max-images", "1"],
        "checkpoint c.pt holds an RPN alone",
        {},
    ),
    (
        "traceback",
        "ablate --stage detector --set model.rpn_only=true",
        lambda d: None,
        [*ABLATE, "--stage", "detector", "--variants", "fpn", "--set", "model.rpn_only=true"],
        "model.rpn_only=True does not fit --stage detector",
        {},
    ),
    (
        "traceback",
        "resume with a damaged RNG state",
        lambda d: edit_checkpoint(trained(d), rng={"torch": torch.zeros(3)}),
        ["train", *QUICK, "--run-dir", "run", "--set", "iterations=3"],
        "holds damaged training state",
        {},
    ),
    (
        "traceback",
        "resume with one optimizer group",
        lambda d: edit_checkpoint(trained(d), optimizer={"state": {}, "param_groups": [{"params": [0]}]}),
        ["train", *QUICK, "--run-dir", "run", "--set", "iterations=3"],
        "holds damaged training state",
        {},
    ),
    (
        "traceback",
        "resume with an iteration of the wrong type",
        lambda d: edit_checkpoint(trained(d), iteration="2"),
        ["train", *QUICK, "--run-dir", "run", "--set", "iterations=3"],
        "is damaged: its iteration is '2'",
        {},
    ),
    (
        "traceback",
        "RANK that is not a number",
        lambda d: None,
        ["train", *QUICK],
        "environment variable RANK='one' is not a whole number",
        {"RANK": "one"},
    ),
    (
        "traceback",
        "WORLD_SIZE=2 with no process group to join",
        lambda d: None,
        ["train", *QUICK],
        "WORLD_SIZE=2 is set but MASTER_ADDR and MASTER_PORT not",
        {"WORLD_SIZE": "2"},
    ),
    (
        "traceback",
        "an image id beyond 64 bits",
        lambda d: shapes(d, val=huge_image_id),
        ["eval", "--dataset", "data", "--no-progress"],
        "images[0]['id'] is 1180591620717411303424, beyond a 64-bit",
        {},
    ),
    (
        "traceback",
        "annotations without area and iscrowd (pycocotools' COCOeval needs both)",
        lambda d: shapes(d, val=strip_optional_fields),
        ["eval", "--dataset", "data", "--no-progress"],
        lambda d, out: "AP50" in out,
        {},
    ),
]


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """A hang becomes a TimeoutError (a signal interrupts even a blocked open())."""

    def ring(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "setup, argv, expected, env", [case[2:] for case in CASES], ids=[f"{case[0]}: {case[1]}" for case in CASES]
)
def test_each_case_of_the_issue(setup, argv, expected, env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    setup(tmp_path)
    capsys.readouterr()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = snapshot(tmp_path)
    with alarm(30):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    after = snapshot(tmp_path)
    users = {name: digest for name, digest in before.items() if name not in LAB_RUN_FILES}
    assert {name: after.get(name) for name in users} == users  # nothing of the user's was changed or removed
    if isinstance(expected, str):
        lines = [line for line in err.splitlines() if line.startswith("fpnlab ")]
        assert code == 2 and len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
        assert expected in lines[0], lines[0]
        assert after == before  # and nothing new was left behind
    else:
        assert code == 0, err
        assert expected(tmp_path, out)


# --- SIGKILL while a checkpoint is being written, with links laid where a fixed temporary name would be ---------

HALF_WRITE = """
import os, sys, time
from pathlib import Path
import fpnlab.outputs as outputs

real, checkpoints = outputs._write_all, []

def half_then_wait(fd, data, sync):  # the second checkpoint stops half-written: then the test kills us
    if data[:2] == b"PK":
        checkpoints.append(1)
        if len(checkpoints) == 2:
            os.write(fd, data[: len(data) // 2])
            Path(sys.argv[2]).write_text("half written")
            time.sleep(120)
    return real(fd, data, sync)

outputs._write_all = half_then_wait
from fpnlab.cli import main
sys.exit(main(["train", "--preset", "test", "--run-dir", sys.argv[1], "--no-progress"]))
"""


def test_sigkill_while_a_checkpoint_is_written_loses_nothing_and_follows_no_link(tmp_path, capsys):
    """Killed mid-write: the previous checkpoint is intact, the links at the old fixed temporary names and the
    files they point to are untouched, the half-written file is a regular file of the lab's, and the same
    command resumes the run to the end (removing that leftover)."""
    run = run_folder(tmp_path)
    for name in ("checkpoint.pt.tmp", "metrics.csv.tmp", "config.json.tmp"):
        (run / name).symlink_to(victim(tmp_path))
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    flag = tmp_path / "flag"
    process = subprocess.Popen([sys.executable, "-c", HALF_WRITE, str(run), str(flag)], env=env)
    try:
        deadline = time.monotonic() + 240
        while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert flag.exists(), "the run never reached its second checkpoint"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    after = snapshot(tmp_path)
    assert {name: after[name] for name in before if name not in LAB_RUN_FILES} == {
        name: digest for name, digest in before.items() if name not in LAB_RUN_FILES
    }
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 6  # the one before the kill
    leftovers = [p for p in run.iterdir() if p.name.endswith(".fpnlab-tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".checkpoint.pt.")
    assert stat.S_ISREG(os.lstat(leftovers[0]).st_mode)  # written where it was created, through no link
    capsys.readouterr()
    assert main(["train", "--preset", "test", "--run-dir", str(run), "--no-progress"]) == 0  # the same command
    assert f"Resuming {run / 'checkpoint.pt'} at iteration 6." in capsys.readouterr().out
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 12
    assert not any(p.name.endswith(".fpnlab-tmp") for p in run.iterdir())  # the killed run's leftover is gone
    final = snapshot(tmp_path)
    assert {name: final[name] for name in before if name not in LAB_RUN_FILES | {"flag"}} == {
        name: digest for name, digest in before.items() if name not in LAB_RUN_FILES
    }


# --- the Python API and the notebook helpers: FpnlabError in one sentence, never another exception -----------


def tiny_detector() -> Any:
    import dataclasses

    from fpnlab.engine.presets import get_preset
    from fpnlab.model.detector import build_detector

    return build_detector(dataclasses.replace(get_preset("test").model, num_classes=3))


def train_with_labels(dtype: torch.dtype) -> Any:
    target = {"boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([1]).to(dtype)}
    return tiny_detector().train()([torch.rand(3, 32, 32)], [target])


def features() -> dict[str, torch.Tensor]:
    return {f"p{k}": torch.rand(1, 4, 64 // 2**k, 64 // 2**k) for k in (2, 3, 4, 5)}


def level_explorer() -> Any:
    from fpnlab.teaching.widgets import LevelAssignmentExplorer

    return LevelAssignmentExplorer(torch.rand(3, 64, 64), features())


def anchor_explorer() -> Any:
    from fpnlab.model.anchors import AnchorGenerator
    from fpnlab.teaching.widgets import AnchorExplorer

    generator = AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    return AnchorExplorer(torch.rand(3, 64, 64), generator, {"p2": (16, 16), "p3": (8, 8)})


def questions_check(*args: Any) -> Any:
    from fpnlab.teaching.questions import check

    return check(*args)


def level(*args: Any, **kwargs: Any) -> Any:
    from fpnlab.model.levels import assign_levels, continuous_level

    if isinstance(args[0], torch.Tensor):
        return assign_levels(*args, **kwargs)
    return continuous_level(*args, **kwargs)


def browser(name: str) -> Any:
    from fpnlab.teaching.widgets import FeatureMapBrowser

    return FeatureMapBrowser(features()).update(name)


API_CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("labels int32", lambda: train_with_labels(torch.int32), "['labels'] must be a (1,) int64 tensor"),
    ("labels uint8", lambda: train_with_labels(torch.uint8), "['labels'] must be a (1,) int64 tensor"),
    ("labels bool", lambda: train_with_labels(torch.bool), "['labels'] must be a (1,) int64 tensor"),
    ("an image on the meta device", lambda: tiny_detector().eval()([torch.empty(3, 32, 32, device="meta")]), "meta"),
    ("questions.check with a list", lambda: questions_check(["03.p2_anchors"], 19200), "unknown question"),
    ("Eq. 1 for a width of 0", lambda: level(0.0, 10.0), "a width and a height > 0"),
    ("Eq. 1 for a negative width", lambda: level(-4.0, 10.0), "a width and a height > 0"),
    ("Eq. 1 with canonical size 0", lambda: level(10.0, 10.0, canonical_size=0), "canonical size must be"),
    (
        "assign_levels with canonical size 0",
        lambda: level(torch.tensor([[0.0, 0, 9, 9]]), canonical_size=0),
        "canonical size must be",
    ),
    ("the level slider at width 0", lambda: level_explorer().update(0, 10), "a width and a height > 0"),
    (
        "the level slider compared with P9",
        lambda: level_explorer().update(50, 50, compare_level=9),
        "unknown pyramid level 'p9'",
    ),
    ("the feature browser on P7", lambda: browser("p7"), "unknown pyramid level 'p7'"),
    ("the anchor explorer on P6", lambda: anchor_explorer().update("p6", 3, 3), "unknown pyramid level 'p6'"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_the_python_api_refuses_in_one_sentence(call, message):
    from fpnlab.errors import FpnlabError

    with pytest.raises(FpnlabError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_dataset_image_turned_by_its_exif_orientation_is_named_as_such(tmp_path):
    from fpnlab.data import CocoDetection
    from fpnlab.errors import DataError

    photo(tmp_path / "images" / "a.jpg", (64, 48), exif={0x0112: 6})  # stored 64 x 48, shown 48 x 64
    record = {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}
    (tmp_path / "a.json").write_text(
        json.dumps({"images": [record], "annotations": [], "categories": [{"id": 1, "name": "x"}]})
    )
    with pytest.raises(DataError) as err:
        CocoDetection(tmp_path / "images", tmp_path / "a.json")[0]
    assert str(err.value) == (
        f"image file {tmp_path / 'images' / 'a.jpg'} is 48x64 pixels once its EXIF orientation 6 is applied (as a "
        f"viewer shows it) but {tmp_path / 'a.json'} says 64x48."
    )
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "images": [{**record, "width": 48, "height": 64}],
                "annotations": [],
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    image, _ = CocoDetection(tmp_path / "images", tmp_path / "a.json")[0]
    assert tuple(image.shape) == (3, 64, 48)  # upright, as annotated


def test_a_full_disk_during_make_data_is_one_line_and_names_the_file(tmp_path, monkeypatch, capsys):
    import errno

    import fpnlab.outputs as outputs

    real, calls = outputs._write_all, []

    def full_after_two(fd, data, sync):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, sync)

    monkeypatch.setattr(outputs, "_write_all", full_after_two)
    argv = ["make-data", "--out", str(tmp_path / "o"), "--train", "3", "--val", "1", "--size", "64", "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("fpnlab make-data: error: could not write dataset image ")
    assert line.endswith("the disk is full (free some space, or write to another disk).")


def test_the_train_command_states_its_resume_rule(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "settings that change the model, the data or their order" in text
    assert "takes effect from the resume iteration, and metrics.csv's lr column shows it" in text
