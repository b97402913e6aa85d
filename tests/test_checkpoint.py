"""Checkpoints: atomic, weights_only-loadable, exact round trips, one clear error for any bad file."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import fpnlab.engine.demo as demo
from fpnlab.data import CATEGORIES
from fpnlab.engine.checkpoint import (
    DEMO_CHECKPOINT,
    export_model,
    load_checkpoint,
    load_model,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fpnlab.engine.presets import PRESETS, TrainConfig, get_preset
from fpnlab.engine.state import build_model
from fpnlab.errors import FpnlabError
from fpnlab.model.config import DetectorConfig, ProposalCounts, upgrade_flat_layout
from fpnlab.model.detector import build_detector


def write_model_checkpoint(path: Path, **model_overrides) -> torch.nn.Module:
    """A checkpoint of an untrained test-preset detector (what an exported model file holds)."""
    cfg = get_preset("test", model=model_overrides)
    model = build_model(cfg, num_classes=len(CATEGORIES) + 1)
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "model_config": dataclasses.asdict(model.config),
            "categories": list(CATEGORIES),
            "train_config": cfg.to_dict(),
            "iteration": 0,
        },
    )
    return model


def test_load_model_rebuilds_the_detector_with_its_weights(tmp_path):
    model = write_model_checkpoint(tmp_path / "a.pt")
    raw = torch.load(tmp_path / "a.pt", weights_only=True)  # plain tensors and values only
    assert (raw["format"], raw["version"]) == ("fpnlab-checkpoint", 2)
    loaded = load_model(tmp_path / "a.pt")
    assert not loaded.training and loaded.config == model.config
    assert loaded.categories == list(CATEGORIES)
    original = model.state_dict()
    assert all(torch.equal(original[k], v) for k, v in loaded.state_dict().items())


# The flat layout of format version 1 (before the RPN and box-head settings were grouped), spelled out
# here on purpose, independently of fpnlab.model.config.FLAT_NAMES.
VERSION1_NAMES = {
    ("rpn", "train", "pre_nms_top_n"): "rpn_pre_nms_top_n_train",
    ("rpn", "train", "post_nms_top_n"): "rpn_post_nms_top_n_train",
    ("rpn", "test", "pre_nms_top_n"): "rpn_pre_nms_top_n_test",
    ("rpn", "test", "post_nms_top_n"): "rpn_post_nms_top_n_test",
    ("rpn", "nms_thresh"): "rpn_nms_thresh",
    ("rpn", "fg_iou_thresh"): "rpn_fg_iou_thresh",
    ("rpn", "bg_iou_thresh"): "rpn_bg_iou_thresh",
    ("rpn", "batch_size_per_image"): "rpn_batch_size_per_image",
    ("rpn", "positive_fraction"): "rpn_positive_fraction",
    ("rpn", "score_thresh"): "rpn_score_thresh",
    ("roi", "pooler"): "roi_pooler",
    ("roi", "output_size"): "roi_output_size",
    ("roi", "sampling_ratio"): "roi_sampling_ratio",
    ("roi", "aligned"): "roi_aligned",
    ("box", "representation_size"): "representation_size",
    ("box", "fg_iou_thresh"): "box_fg_iou_thresh",
    ("box", "bg_iou_thresh"): "box_bg_iou_thresh",
    ("box", "batch_size_per_image"): "box_batch_size_per_image",
    ("box", "positive_fraction"): "box_positive_fraction",
    ("box", "reg_weights"): "bbox_reg_weights",
    ("box", "score_thresh"): "box_score_thresh",
    ("box", "nms_thresh"): "box_nms_thresh",
    ("box", "detections_per_img"): "box_detections_per_img",
}


def flatten_to_version1(config: dict) -> dict:
    flat = {k: v for k, v in config.items() if k not in ("rpn", "roi", "box")}
    for path, name in VERSION1_NAMES.items():
        value = config
        for key in path:
            value = value[key]
        flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def test_version1_checkpoints_still_load_and_detect_the_same(tmp_path):
    """A checkpoint written before the settings were grouped: flat names, no canonical size (224 then)."""
    model = write_model_checkpoint(tmp_path / "new.pt", roi={"canonical_size": 224.0})
    checkpoint = load_checkpoint(tmp_path / "new.pt")
    old = {**checkpoint, "version": 1, "model_config": flatten_to_version1(checkpoint["model_config"])}
    old["train_config"] = {
        **checkpoint["train_config"],
        "model": flatten_to_version1(checkpoint["train_config"]["model"]),
    }
    torch.save(old, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.config == model.config and loaded.config.canonical_size() == 224
    image = torch.rand(3, 100, 140, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = loaded([image])[0], model.eval()([image])[0]
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert load_checkpoint(tmp_path / "old.pt")["train_config"]["model"]["rpn"]["nms_thresh"] == 0.7
    assert load_checkpoint(tmp_path / "old.pt")["version"] == 2  # brought to the current layout
    torch.save({**old, "train_config": {"lr": 0.01}}, tmp_path / "old_without_model.pt")  # nothing to move
    assert load_checkpoint(tmp_path / "old_without_model.pt")["train_config"] == {"lr": 0.01}


def test_save_is_atomic_the_old_checkpoint_survives_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"iteration": 1, "w": torch.ones(3)})

    def crash(fd):  # a write that dies halfway (power cut, failing disk): the temporary file holds half a zip
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(
        FpnlabError,
        match=r"could not write checkpoint .*Input/output error.*the checkpoint already "
        r"there is unchanged\.$",
    ):
        save_checkpoint(path, {"iteration": 2, "w": torch.zeros(3)})
    assert torch.load(path, weights_only=True)["iteration"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_a_full_disk_is_named_and_nothing_is_lost(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"iteration": 1, "w": torch.ones(3)})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        FpnlabError,
        match=r"checkpoint.pt: the disk is full .*the checkpoint already there is "
        r"unchanged",
    ) as err:
        save_checkpoint(path, {"iteration": 2, "w": torch.zeros(1000)})
    assert "enforce" not in str(err.value)
    assert torch.load(path, weights_only=True)["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_read_only_folder_is_named(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(FpnlabError, match=r"no permission to write there .*; nothing was written\.$"):
        save_checkpoint(tmp_path / "checkpoint.pt", {"iteration": 1})
    assert list(tmp_path.iterdir()) == []


def test_bad_files_give_one_clear_error(tmp_path):
    write_model_checkpoint(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    marker = {"format": "fpnlab-checkpoint", "version": 2}
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "foreign.pt")
    torch.save({**marker, "x": Path("/")}, tmp_path / "pickled.pt")
    torch.save({**marker, "model_config": {}}, tmp_path / "no_model.pt")
    torch.save({**marker, "model": {}}, tmp_path / "no_config.pt")
    torch.save({**marker, "model": {}, "model_config": {}, "categories": "abc"}, tmp_path / "text_categories.pt")
    torch.save({**marker, "model": {}, "model_config": {}, "categories": [1, 2]}, tmp_path / "number_categories.pt")
    torch.save({"format": "fpnlab-checkpoint", "version": 7}, tmp_path / "future.pt")
    (tmp_path / "folder.pt").mkdir()
    cases = {  # the whole message after "checkpoint <path>"
        "missing.pt": " does not exist.",
        "folder.pt": " is a folder, not a file.",
        "text.pt": " cannot be read: it is corrupt or not a torch file.",
        "pickled.pt": " contains pickled Python objects, which can run code when loaded, so it was refused; "
        "fpnlab's checkpoints hold only tensors and plain values.",
        "no_model.pt": " has no model weights (no 'model' dict of tensors); it is damaged or was not written by "
        "fpnlab.",
        "no_config.pt": " has no detector settings ('model_config'); it is damaged.",
        "text_categories.pt": ": 'categories' should be a list of class names.",
        "number_categories.pt": ": 'categories' should be a list of class names.",
        "future.pt": " has format version 7; this fpnlab reads versions 1, 2.",
    }
    for name, message in cases.items():
        with pytest.raises(FpnlabError) as err:
            load_model(tmp_path / name)
        assert str(err.value) == f"checkpoint {tmp_path / name}{message}"
    with pytest.raises(FpnlabError) as err:
        load_model(tmp_path / "foreign.pt")
    assert (
        str(err.value) == f"{tmp_path / 'foreign.pt'} is not an fpnlab checkpoint (it lacks the "
        "'fpnlab-checkpoint' marker)."
    )
    with pytest.raises(FpnlabError) as err:  # torch's own words, cut to 80 characters, after the type
        load_model(tmp_path / "truncated.pt")
    found = re.fullmatch(
        rf"checkpoint {re.escape(str(tmp_path / 'truncated.pt'))} cannot be read: it is "
        r"truncated or corrupt \((\w+): (.*)\)\.",
        str(err.value),
    )
    assert found and found[1] == "RuntimeError" and len(found[2]) == 80  # torch says more than 80 here
    with pytest.raises(
        FpnlabError,
        match=r"^checkpoint /dev/zero is not a regular file \(a pipe, socket or device\), so it was not read.$",
    ):
        load_model("/dev/zero")


def test_weights_that_do_not_fit_are_listed_in_one_sentence():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))  # weights 0.weight (3, 2) and 0.bias (3,)
    cases = [
        ({}, "2 weight(s) missing (e.g. 0.weight)"),
        (
            {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(3), "1.w": torch.zeros(1), "2.w": torch.zeros(1)},
            "2 unknown weight(s) (e.g. 1.w)",
        ),
        (
            {"0.weight": torch.zeros(3, 5), "0.bias": torch.zeros(4)},
            "2 shape(s) differ (e.g. 0.weight: checkpoint (3, 5), model (3, 2))",
        ),
        (
            {"0.bias": torch.zeros(3), "x": torch.zeros(1)},
            "1 weight(s) missing (e.g. 0.weight); 1 unknown weight(s) (e.g. x)",
        ),
    ]
    for state, problems in cases:
        with pytest.raises(FpnlabError) as err:
            load_weights(model, state, "m.pt")
        assert str(err.value) == f"checkpoint m.pt does not match the model: {problems}."


def test_a_checkpoint_without_class_names_numbers_the_classes(tmp_path):
    write_model_checkpoint(tmp_path / "named.pt")
    checkpoint = load_checkpoint(tmp_path / "named.pt")
    del checkpoint["categories"]
    save_checkpoint(tmp_path / "unnamed.pt", checkpoint)
    assert load_model(tmp_path / "unnamed.pt").categories == [f"class {i}" for i in range(1, len(CATEGORIES) + 1)]


def test_save_makes_missing_folders(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "b" / "checkpoint.pt", {"iteration": 3})
    assert torch.load(path, weights_only=True)["iteration"] == 3


def test_inconsistent_or_oversized_settings_are_refused_before_building(tmp_path):
    write_model_checkpoint(tmp_path / "good.pt")
    checkpoint = load_checkpoint(tmp_path / "good.pt")
    few = {**checkpoint, "categories": ["circle", "square"]}  # the detector has 6 classes
    save_checkpoint(tmp_path / "few.pt", few)
    with pytest.raises(FpnlabError, match="names 2 categories but its detector has 6 classes"):
        load_model(tmp_path / "few.pt")
    huge = {**checkpoint, "model_config": {**checkpoint["model_config"], "box": {"representation_size": 10**8}}}
    save_checkpoint(tmp_path / "huge.pt", huge)
    with pytest.raises(FpnlabError, match="huge.pt holds unusable detector settings.*representation_size"):
        load_model(tmp_path / "huge.pt")


def test_checkpoint_of_another_model_is_named_as_a_mismatch(tmp_path):
    write_model_checkpoint(tmp_path / "wide.pt", fpn_channels=48)
    checkpoint = load_checkpoint(tmp_path / "wide.pt")
    checkpoint["model_config"]["fpn_channels"] = PRESETS["test"].model.fpn_channels  # config says 32
    save_checkpoint(tmp_path / "edited.pt", checkpoint)
    with pytest.raises(FpnlabError, match=r"edited.pt does not match the model: .*shape\(s\) differ .*48"):
        load_model(tmp_path / "edited.pt")


def test_export_halves_the_file_and_keeps_the_weights_to_float16_precision(tmp_path):
    model = write_model_checkpoint(tmp_path / "full.pt")
    export_model(tmp_path / "full.pt", tmp_path / "half.pt")
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    loaded = load_model(tmp_path / "half.pt")
    for name, value in model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(loaded.state_dict()[name], expected), name
    with pytest.raises(FpnlabError, match="is the training checkpoint itself"):
        export_model(tmp_path / "full.pt", tmp_path / "full.pt")
    raw = torch.load(tmp_path / "half.pt", weights_only=True)
    assert {v.dtype for v in raw["model"].values()} == {torch.float16, torch.int64}  # counters stay integers


def test_export_leaves_the_training_state_behind(tmp_path):
    write_model_checkpoint(tmp_path / "full.pt")
    checkpoint = load_checkpoint(tmp_path / "full.pt")
    save_checkpoint(tmp_path / "run.pt", {**checkpoint, "optimizer": {"lr": torch.ones(1)}, "rng": rng_state()})
    export_model(tmp_path / "run.pt", tmp_path / "half.pt")
    exported = torch.load(tmp_path / "half.pt", weights_only=True)
    assert set(exported) == set(checkpoint)  # format, version, model, settings, categories, iteration
    assert (exported["format"], exported["version"]) == ("fpnlab-checkpoint", 2)


def test_rng_state_round_trip_repeats_every_generator():
    random.random(), np.random.rand(), torch.rand(1)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(state)
    second = (random.random(), float(np.random.rand()), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_demo_model_is_the_shipped_detector():
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip(f"{DEMO_CHECKPOINT} is not in this checkout (see test_demo_model_falls_back...)")
    model = demo.demo_model()
    assert model.categories == list(CATEGORIES)
    assert DEMO_CHECKPOINT.stat().st_size <= 10 * 2**20


def test_demo_mask_model_is_the_shipped_mask_rcnn_and_detects_masks():
    if not demo.DEMO_MASK_CHECKPOINT.is_file():
        pytest.skip(f"{demo.DEMO_MASK_CHECKPOINT} is not in this checkout")
    model = demo.demo_mask_model()
    assert model.categories == list(CATEGORIES) and model.config.mask.enabled
    assert demo.DEMO_MASK_CHECKPOINT.stat().st_size <= 10 * 2**20
    image = torch.zeros(3, 160, 160)
    image[:, 40:120, 40:120] = 1.0  # one white square on black
    found = model.eval()([image])[0]
    assert found["masks"].shape == (len(found["boxes"]), 1, 160, 160)


def test_demo_model_falls_back_to_training_when_the_file_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_CHECKPOINT", tmp_path / "absent.pt")
    monkeypatch.setitem(PRESETS, "cpu", dataclasses.replace(PRESETS["test"], iterations=2))  # "briefly", in test time
    monkeypatch.setenv("FPNLAB_DATA", str(tmp_path / "cache"))
    model = demo.demo_model()
    assert "absent.pt is missing" in capsys.readouterr().out
    assert model.categories == list(CATEGORIES)
    assert load_checkpoint(tmp_path / "cache" / "demo-cpu" / "checkpoint.pt")["iteration"] == 2


def test_the_settings_of_the_previous_shipped_demo_checkpoint_still_load(tmp_path):
    """tests/fixtures/demo_v1_settings.json: the settings stored in the demo checkpoint shipped before the
    settings were grouped (format version 1), copied from that file; with weights of the right shapes the
    checkpoint loads into the detector it described."""
    old = json.loads((Path(__file__).parent / "fixtures" / "demo_v1_settings.json").read_text())
    assert old["version"] == 1 and "rpn_post_nms_top_n_test" in old["model_config"]
    config = DetectorConfig.from_dict(upgrade_flat_layout(old["model_config"]))
    assert (config.backbone, config.min_size, config.anchor_sizes, config.fpn_channels) == (
        "resnet_tiny",
        256,
        (16, 32, 64, 128, 256),
        64,
    )
    assert config.rpn.test == ProposalCounts(500, 300) and config.box.representation_size == 256
    assert config.canonical_size() == 224  # what version 1 used, whatever the input size
    weights = build_detector(config).state_dict()
    torch.save({"format": "fpnlab-checkpoint", **old, "model": weights}, tmp_path / "old.pt")
    model = load_model(tmp_path / "old.pt")
    assert model.config == config and model.categories == old["categories"]
    assert TrainConfig.from_dict(load_checkpoint(tmp_path / "old.pt")["train_config"]).model.fpn_channels == 64
