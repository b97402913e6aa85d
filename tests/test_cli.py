"""`fpnlab train | eval | detect` as a user runs them: exit codes, outputs and one-line errors.

Real processes (`python -m fpnlab`) for a training run, its eval and detect, and one mistake per command;
the other mistakes go through the same `fpnlab.cli.main` in this process, which is 10x faster.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fpnlab.cli import main
from fpnlab.data import CATEGORIES, shapes_mini
from fpnlab.data.images import read_image
from fpnlab.engine.checkpoint import DEMO_MASK_CHECKPOINT, load_model
from fpnlab.engine.inference import detect
from fpnlab.plots import save_detections


def fpnlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m fpnlab ARGS` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "fpnlab", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def in_process(*args: str) -> subprocess.CompletedProcess:
    """`fpnlab ARGS` through fpnlab.cli.main in this process (same parser and error path, no start-up cost)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(map(str, args)))
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
    return subprocess.CompletedProcess(args, code, "", stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "error:" in lines[-1]
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A test-preset run trained through the CLI, with an exported model and a results file."""
    root = tmp_path_factory.mktemp("cli")
    result = fpnlab(
        "train",
        "--preset",
        "test",
        "--run-dir",
        root / "run",
        "--export",
        root / "model.pt",
        "--set",
        "iterations=4",
        "--set",
        "eval_at_end=true",
        "--result",
        "cli_run",
        "--no-progress",
        env={"FPNLAB_RESULTS": str(root / "results")},
    )
    assert result.returncode == 0, result.stderr
    return root, result


@pytest.mark.parametrize(
    "command, option", [("train", "--preset"), ("eval", "--proposals"), ("detect", "--score-threshold")]
)
def test_every_command_has_help(command, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert option in capsys.readouterr().out


def test_train_prints_metrics_exports_and_records_the_run(trained):
    root, result = trained
    assert "AP50" in result.stdout and "exported" in result.stdout
    record = json.loads((root / "results" / "cli_run.json").read_text())
    assert record["preset"] == "test" and record["iterations"] == 4 and record["config"]["iterations"] == 4
    assert set(record["val_metrics"]) >= {"AP", "AP50", "AR100"} and record["wall_minutes"] > 0
    assert [point[0] for point in record["loss_curve"]] == [1, 2, 3, 4]
    assert record["checkpoint_mb"] == round((root / "model.pt").stat().st_size / 2**20, 2)
    assert (root / "model.pt").stat().st_size < (root / "run" / "checkpoint.pt").stat().st_size


def test_eval_and_detect_use_the_exported_model(trained, tmp_path):
    root, _ = trained
    result = fpnlab("eval", "--checkpoint", root / "model.pt", "--max-images", 2, "--proposals", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "AP75" in result.stdout and "AR@1000" in result.stdout
    image = next(shapes_mini().val_images.glob("*.jpg"))
    out = tmp_path / "boxes.png"
    result = fpnlab("detect", image, "--checkpoint", root / "model.pt", "--out", out, "--score-threshold", 0.0)
    assert result.returncode == 0, result.stderr
    assert "detection(s)" in result.stdout
    with Image.open(out) as png, Image.open(image) as photo:
        assert png.format == "PNG" and png.size == photo.size


def test_detect_draws_the_masks_of_a_mask_rcnn(tmp_path):
    """The shipped Mask R-CNN on a val image: each detection's mask is filled in its class's colour, so the PNG
    differs from the same detections drawn as boxes only inside the objects, not just along box edges."""
    image_file = shapes_mini().val_images / "000007.jpg"
    result = fpnlab("detect", image_file, "--checkpoint", DEMO_MASK_CHECKPOINT, "--out", tmp_path / "masks.png")
    assert result.returncode == 0, result.stderr
    image, _ = read_image(image_file)
    found = detect(load_model(DEMO_MASK_CHECKPOINT), image)
    save_detections(image, {k: v for k, v in found.items() if k != "masks"}, list(CATEGORIES), tmp_path / "boxes.png")
    with Image.open(tmp_path / "masks.png") as masked, Image.open(tmp_path / "boxes.png") as boxed:
        differs = np.asarray(masked.convert("RGB"), dtype=int) != np.asarray(boxed.convert("RGB"), dtype=int)
    covered = (found["masks"][:, 0] >= 0.5).any(0).float().mean()  # the share of pixels some mask covers
    assert len(found["boxes"]) >= 3 and differs.any(axis=-1).mean() > 0.5 * float(covered) > 0.05


def test_resuming_with_another_model_is_a_clear_mismatch(trained):
    root, _ = trained
    result = in_process("train", "--preset", "test", "--run-dir", root / "run", "--set", "model.fpn_channels=16")
    assert_one_line_error(result, "checkpoint.pt was trained with other model.fpn_channels", "start afresh")


def test_eval_on_a_dataset_that_is_not_there(trained):
    root, _ = trained
    assert_one_line_error(
        in_process("eval", "--checkpoint", root / "model.pt", "--dataset", "/no/such/data"), "/no/such/data"
    )


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "--preset", "huge"], ["unknown preset 'huge'"]),
        (["eval", "--checkpoint", "no_such.pt"], ["no_such.pt does not exist"]),
        (["detect", "no_such.jpg"], ["image file no_such.jpg does not exist"]),
    ],
)
def test_each_command_exits_2_with_one_line_in_a_real_process(args, fragments):
    assert_one_line_error(fpnlab(*args), *fragments)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "--fast"], ["unrecognized arguments: --fast"]),
        (["train", "--set", "learning_rate=0.1"], ["unknown setting TrainConfig.learning_rate"]),
        (["train", "--set", "model.rpn.nms_tresh=0.6"], ["unknown setting TrainConfig.model.rpn.nms_tresh"]),
        (["train", "--set", "lr"], ["--set expects key=value"]),
        (["eval", "--max-images", "0"], ["argument --max-images: must be >= 1, got 0"]),
        (["detect", "x.jpg", "--score-threshold", "high"], ["invalid float value: 'high'"]),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, fragments):
    assert_one_line_error(in_process(*args), *fragments)


def test_broken_files_exit_2_naming_them(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "notes.pt").write_text("a text file, not a checkpoint")
    assert_one_line_error(
        in_process("detect", tmp_path / "broken.jpg", "--checkpoint", tmp_path / "notes.pt"),
        "broken.jpg",
        "cannot be read",
    )
    assert_one_line_error(in_process("eval", "--checkpoint", tmp_path / "notes.pt"), "notes.pt", "corrupt")
    (tmp_path / "no").write_text("a file where a folder should be")
    assert_one_line_error(
        in_process("detect", tmp_path / "broken.jpg", "--out", tmp_path / "no" / "x.png"),
        "--out",
        "is a file, not a folder",
    )
