"""Checkpoints: atomic, weights_only-loadable, exact round trips, one clear error for any bad file."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import fpnlab.checkpoint as ckpt
from fpnlab.checkpoint import (export_model, load_checkpoint, load_model, rng_state, save_checkpoint,
                               set_rng_state)
from fpnlab.config import PRESETS, get_preset
from fpnlab.data import CATEGORIES
from fpnlab.errors import FpnlabError
from fpnlab.train import build_model


def write_model_checkpoint(path: Path, **model_overrides) -> torch.nn.Module:
    """A checkpoint of an untrained test-preset detector (what an exported model file holds)."""
    cfg = get_preset("test", model=model_overrides)
    model = build_model(cfg, num_classes=len(CATEGORIES) + 1)
    save_checkpoint(path, {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config),
                           "categories": list(CATEGORIES), "train_config": cfg.to_dict(), "iteration": 0})
    return model


def test_load_model_rebuilds_the_detector_with_its_weights(tmp_path):
    model = write_model_checkpoint(tmp_path / "a.pt")
    raw = torch.load(tmp_path / "a.pt", weights_only=True)  # plain tensors and values only
    assert raw["format"] == "fpnlab-checkpoint"
    loaded = load_model(tmp_path / "a.pt")
    assert not loaded.training
    assert loaded.categories == list(CATEGORIES)
    original = model.state_dict()
    assert all(torch.equal(original[k], v) for k, v in loaded.state_dict().items())


def test_save_is_atomic_the_old_checkpoint_survives_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"iteration": 1, "w": torch.ones(3)})

    def crash(obj, f):  # a write that dies halfway (disk full, power cut, second Ctrl-C)
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"iteration": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["iteration"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_bad_files_give_one_clear_error(tmp_path):
    write_model_checkpoint(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "foreign.pt")
    torch.save({"format": "fpnlab-checkpoint", "version": 1, "x": Path("/")}, tmp_path / "pickled.pt")
    cases = {"missing.pt": "does not exist", "truncated.pt": "truncated or corrupt",
             "text.pt": "corrupt or not a torch file", "foreign.pt": "is not an fpnlab checkpoint",
             "pickled.pt": "holds pickled Python objects"}
    for name, message in cases.items():
        with pytest.raises(FpnlabError, match=message) as err:
            load_model(tmp_path / name)
        assert name in str(err.value)


def test_checkpoint_of_another_model_is_named_as_a_mismatch(tmp_path):
    write_model_checkpoint(tmp_path / "wide.pt", fpn_channels=48)
    checkpoint = load_checkpoint(tmp_path / "wide.pt")
    checkpoint["model_config"]["fpn_channels"] = PRESETS["test"]["model"]["fpn_channels"]  # config says 32
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


def test_rng_state_round_trip_repeats_every_generator():
    random.random(), np.random.rand(), torch.rand(1)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(state)
    second = (random.random(), float(np.random.rand()), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_demo_model_is_the_shipped_detector():
    if not ckpt.DEMO_CHECKPOINT.is_file():
        pytest.skip(f"{ckpt.DEMO_CHECKPOINT} is not in this checkout (see test_demo_model_falls_back...)")
    model = ckpt.demo_model()
    assert model.categories == list(CATEGORIES)
    assert ckpt.DEMO_CHECKPOINT.stat().st_size <= 10 * 2**20


def test_demo_model_falls_back_to_training_when_the_file_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ckpt, "DEMO_CHECKPOINT", tmp_path / "absent.pt")
    monkeypatch.setitem(PRESETS, "cpu", dict(PRESETS["test"], iterations=2))  # "briefly", in test time
    monkeypatch.setenv("HOME", str(tmp_path))
    model = ckpt.demo_model()
    assert "absent.pt is missing" in capsys.readouterr().out
    assert model.categories == list(CATEGORIES)
    assert load_checkpoint(tmp_path / ".cache" / "fpnlab" / "demo-cpu" / "checkpoint.pt")["iteration"] == 2
