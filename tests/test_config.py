"""Presets and overrides: every preset is valid, every value can be overridden, mistakes are named."""
from __future__ import annotations

import pytest

from fpnlab.config import PRESETS, TrainConfig, get_preset, parse_set
from fpnlab.errors import FpnlabError


@pytest.mark.parametrize("name", ["cpu", "gpu", "test", "demo"])
def test_every_preset_builds_a_valid_config(name):
    cfg = get_preset(name)
    assert isinstance(cfg, TrainConfig)
    assert cfg.to_dict()["model"] == PRESETS[name]["model"]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what a checkpoint stores rebuilds the same config


def test_presets_match_their_purpose():
    assert get_preset("gpu").model["backbone"] == "resnet50"
    assert 512 <= get_preset("gpu").model["min_size"] <= 800
    for name in ("cpu", "demo"):  # trainable from scratch on a CPU: a small net whose norm layers learn
        cfg = get_preset(name)
        assert cfg.dataset == "shapes-mini"
        assert cfg.model["backbone"] in ("resnet_tiny", "resnet18") and cfg.model["norm"] in ("bn", "gn")
        assert cfg.model["max_size"] <= 320
    assert get_preset("test").iterations < get_preset("cpu").iterations < get_preset("demo").iterations


def test_overrides_replace_fields_and_merge_model_settings():
    cfg = get_preset("cpu", lr=0.05, iterations=7, model={"norm": "gn"})
    assert (cfg.lr, cfg.iterations) == (0.05, 7)
    assert cfg.model["norm"] == "gn"
    assert cfg.model["backbone"] == PRESETS["cpu"]["model"]["backbone"]  # other model settings kept
    assert PRESETS["cpu"]["model"]["norm"] == "bn"  # the preset itself is untouched
    assert get_preset("cpu", lr=1).lr == 1.0 and isinstance(get_preset("cpu", lr=1).lr, float)


def test_parse_set_reads_python_literals():
    overrides = parse_set(["lr=1e-3", "schedule=step", "lr_steps=0.5,0.8", "clip_grad_norm=none",
                           "amp=false", "model.norm=gn", "model.anchor_sizes=(8, 16, 32, 64, 128)"])
    assert overrides == {"lr": 0.001, "schedule": "step", "lr_steps": (0.5, 0.8), "clip_grad_norm": None,
                         "amp": False, "model": {"norm": "gn", "anchor_sizes": (8, 16, 32, 64, 128)}}
    cfg = get_preset("test", **overrides)
    assert cfg.lr_steps == (0.5, 0.8) and cfg.clip_grad_norm is None and cfg.model["norm"] == "gn"


@pytest.mark.parametrize("call, message", [
    (lambda: get_preset("gpu2"), "unknown preset 'gpu2'"),
    (lambda: get_preset("cpu", learning_rate=0.1), "unknown TrainConfig field 'learning_rate'"),
    (lambda: get_preset("cpu", iterations="many"), "TrainConfig.iterations expects int"),
    (lambda: get_preset("cpu", amp=1), "TrainConfig.amp expects bool"),
    (lambda: get_preset("cpu", iterations=0), "iterations must be >= 1"),
    (lambda: get_preset("cpu", schedule="linear"), "schedule must be one of step, cosine"),
    (lambda: get_preset("cpu", lr_steps=(0.5, 2)), "fractions of the run"),
    (lambda: parse_set(["lr"]), "--set expects key=value"),
])
def test_mistakes_raise_one_clear_error(call, message):
    with pytest.raises(FpnlabError, match=message):
        call()
