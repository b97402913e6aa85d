"""Presets and overrides: every preset is valid, every value can be overridden, mistakes are named at once."""
from __future__ import annotations

import dataclasses

import pytest

from fpnlab.config import PRESETS, TrainConfig, get_preset
from fpnlab.errors import FpnlabError
from fpnlab.model_config import DetectorConfig, ProposalCounts
from fpnlab.overrides import parse_set


@pytest.mark.parametrize("name", ["cpu", "gpu", "test", "demo"])
def test_every_preset_builds_a_valid_config_that_round_trips(name):
    cfg = get_preset(name)
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.model, DetectorConfig)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what a checkpoint stores rebuilds the same config
    assert cfg.to_dict()["model"]["rpn"]["train"]["pre_nms_top_n"] == cfg.model.rpn.train.pre_nms_top_n


def test_presets_match_their_purpose():
    gpu = get_preset("gpu").model
    assert gpu.backbone == "resnet50" and 512 <= gpu.min_size <= 800
    for name in ("cpu", "demo"):  # trainable from scratch on a CPU: a small net whose norm layers learn
        cfg = get_preset(name)
        assert cfg.dataset == "shapes-mini"
        assert cfg.model.backbone == "resnet_tiny" and cfg.model.norm in ("bn", "gn")
        assert cfg.model.min_size == 320  # shapes-mini's 160 px images at 2x
        assert cfg.model.anchor_sizes == (32, 64, 128, 256) and cfg.model.levels == ("p2", "p3", "p4", "p5")
        assert cfg.model.canonical_size() == pytest.approx(224 * 320 / 800)  # Eq. 1 follows the input scale
    assert get_preset("test").iterations < get_preset("cpu").iterations < get_preset("demo").iterations


def test_overrides_replace_fields_and_merge_nested_settings():
    cfg = get_preset("cpu", lr=0.05, iterations=700, model={"norm": "gn", "rpn": {"nms_thresh": 0.6}})
    assert (cfg.lr, cfg.iterations, cfg.model.norm, cfg.model.rpn.nms_thresh) == (0.05, 700, "gn", 0.6)
    assert cfg.model.backbone == "resnet_tiny"  # other model settings kept
    assert cfg.model.rpn.train == ProposalCounts(1000, 500)  # other RPN settings kept
    assert PRESETS["cpu"].model.norm == "bn" and PRESETS["cpu"].model.rpn.nms_thresh == 0.7  # presets untouched
    assert get_preset("cpu", lr=1).lr == 1.0 and isinstance(get_preset("cpu", lr=1).lr, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.norm = "bn"  # settings are values: change them with overrides, not in place


def test_parse_set_reads_python_literals_and_dotted_names():
    overrides = parse_set(["lr=1e-3", "schedule=step", "lr_steps=0.5,0.8", "clip_grad_norm=none",
                           "amp=false", "model.norm=gn", "model.anchor_sizes=(16, 32, 64, 128)",
                           "model.rpn.test.post_nms_top_n=700", "model.box.nms_thresh=0.4"])
    assert overrides == {"lr": 0.001, "schedule": "step", "lr_steps": (0.5, 0.8), "clip_grad_norm": None,
                         "amp": False, "model": {"norm": "gn", "anchor_sizes": (16, 32, 64, 128),
                                                 "rpn": {"test": {"post_nms_top_n": 700}}, "box": {"nms_thresh": 0.4}}}
    cfg = get_preset("test", **overrides)
    assert cfg.lr_steps == (0.5, 0.8) and cfg.clip_grad_norm is None and cfg.model.norm == "gn"
    assert cfg.model.rpn.test == ProposalCounts(500, 700) and cfg.model.box.nms_thresh == 0.4


@pytest.mark.parametrize("overrides, message", [
    (dict(learning_rate=0.1), "unknown setting TrainConfig.learning_rate; known: dataset,"),
    (dict(model={"rpn": {"nms_tresh": 0.6}}), "unknown setting TrainConfig.model.rpn.nms_tresh; known: train, test"),
    (dict(model={"rpn_nms_thresh": 0.6}), "unknown setting TrainConfig.model.rpn_nms_thresh"),
    (dict(iterations="many"), "TrainConfig.iterations expects int, got 'many'"),
    (dict(amp=1), "TrainConfig.amp expects bool"),
    (dict(clip_grad_norm="x"), "TrainConfig.clip_grad_norm expects float | None"),
    (dict(model={"anchor_sizes": (32, "x", 128, 256)}), r"model.anchor_sizes expects tuple\[int, ...\]"),
    (dict(model={"rpn": 0.6}), "TrainConfig.model.rpn expects RPNConfig"),
    (dict(iterations=0), "iterations must be >= 1, got 0"),
    (dict(max_train_images=0), "max_train_images must be >= 1 .or None for all images., got 0"),
    (dict(max_val_images=-1), "max_val_images must be >= 1"),
    (dict(momentum=-1), r"momentum must be in \[0, 1\), got -1"),
    (dict(weight_decay=-1), "weight_decay must be >= 0"),
    (dict(hflip_prob=7), r"hflip_prob is a probability in \[0, 1\], got 7"),
    (dict(iterations=50, warmup_iterations=100), r"warmup_iterations must be in 0..iterations \(50\), got 100"),
    (dict(schedule="linear"), "schedule must be one of step, cosine"),
    (dict(lr_steps=(0.5, 2)), "fractions of the run"),
    (dict(lr_steps=(0.8, 0.5)), "increasing fractions"),
    (dict(lr=0), "lr must be > 0"),
    (dict(gamma=0), "gamma must be in"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(model={"box": {"representation_size": 100_000_000}}), "representation_size must be in 1..16384"),
    (dict(model={"fpn_channels": 4096, "box": {"representation_size": 16384}}), "box head's first layer would have"),
    (dict(model={"min_size": 400}), "min_size <= max_size"),
    (dict(model={"rpn": {"fg_iou_thresh": 0.2}}), "bg_iou_thresh <= fg_iou_thresh"),
    (dict(model={"rpn": {"test": {"post_nms_top_n": 0}}}), "proposal counts must be >= 1"),
    (dict(model={"anchor_sizes": (32, 64)}), "anchor_sizes needs one size per level"),
    (dict(model={"roi": {"pooler": "max"}}), "RoIConfig.pooler must be one of"),
])
def test_every_bad_setting_is_named_when_it_is_given(overrides, message):
    with pytest.raises(FpnlabError, match=message):
        get_preset("cpu", **overrides)


@pytest.mark.parametrize("call, message", [
    (lambda: get_preset("gpu2"), "unknown preset 'gpu2'"),
    (lambda: parse_set(["lr"]), "--set expects key=value"),
    (lambda: parse_set(["model..norm=gn"]), "--set expects key=value"),
])
def test_other_mistakes_raise_one_clear_error(call, message):
    with pytest.raises(FpnlabError, match=message):
        call()
