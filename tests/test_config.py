"""Presets and overrides: every preset is valid, every value can be overridden, mistakes are named at once."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import torch

from fpnlab.engine.presets import PRESETS, TrainConfig, auto_preset, estimated_minutes, get_preset
from fpnlab.errors import FpnlabError
from fpnlab.model.config import (
    MAX_HEAD_PARAMETERS,
    BoxHeadConfig,
    DetectorConfig,
    MaskHeadConfig,
    ProposalCounts,
    RoIConfig,
    RPNConfig,
    upgrade_flat_layout,
)
from fpnlab.overrides import coerce, literal, parse_set, type_name, update


@pytest.mark.parametrize("name", ["cpu", "gpu", "colab", "test", "demo", "demo_mask", "gpu_mask"])
def test_every_preset_builds_a_valid_config_that_round_trips(name):
    cfg = get_preset(name)
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.model, DetectorConfig)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what a checkpoint stores rebuilds the same config
    assert cfg.to_dict()["model"]["rpn"]["train"]["pre_nms_top_n"] == cfg.model.rpn.train.pre_nms_top_n


def test_presets_match_their_purpose():
    gpu = get_preset("gpu").model
    assert gpu.backbone == "resnet50" and 512 <= gpu.min_size <= 800
    for name in ("cpu", "demo", "demo_mask"):  # trainable from scratch on a CPU: a small net whose norm layers learn
        cfg = get_preset(name)
        assert cfg.dataset == "shapes-mini"
        assert cfg.model.backbone == "resnet_tiny" and cfg.model.norm in ("bn", "gn")
        assert cfg.model.min_size == 320  # shapes-mini's 160 px images at 2x
        assert cfg.model.anchor_sizes == (32, 64, 128, 256) and cfg.model.levels == ("p2", "p3", "p4", "p5")
        assert cfg.model.canonical_size() == pytest.approx(224 * 320 / 800)  # Eq. 1 follows the input scale
    assert get_preset("test").iterations < get_preset("cpu").iterations < get_preset("demo").iterations
    # the mask presets are their box presets with the mask head: nothing else differs
    for masked, plain in (("demo_mask", "demo"), ("gpu_mask", "gpu")):
        cfg = get_preset(masked)
        assert cfg.model.mask.enabled and cfg.model.mask.mask_size() == 28
        assert dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, mask=MaskHeadConfig())) == get_preset(
            plain
        )
    assert get_preset("demo_mask").model.mask.conv_layers == (64,) * 4  # as wide as its 64-channel pyramid
    colab = get_preset("colab")  # the gpu preset's detector and data, for an eighth of its images (a T4's share)
    assert colab.model == gpu and colab.dataset == get_preset("gpu").dataset
    assert colab.iterations * colab.batch_size * 8 == get_preset("gpu").iterations * get_preset("gpu").batch_size
    assert colab.lr / colab.batch_size == get_preset("gpu").lr / get_preset("gpu").batch_size  # linear scaling
    assert colab.num_workers == 2  # Colab's free runtime has two CPU cores


def test_time_estimates_follow_the_cards_ratio():
    # worked by hand: gpu = 3000 x 16 images of 512 x 512 px in 12 min on an H100; colab = 750 x 8 of the same, an
    # eighth of that work, on a T4 at a tenth of an H100's speed: 12 / 8 x 10 = 15 min
    assert estimated_minutes("gpu") == pytest.approx(12.0)
    assert estimated_minutes("colab") == pytest.approx(15.0)
    with pytest.raises(FpnlabError, match=r"^no time estimate for preset 'cpu'; there are estimates for gpu, colab\.$"):
        estimated_minutes("cpu")


@pytest.fixture()
def machine(monkeypatch):
    """Fake the machine: whether CUDA is visible and whether this is Colab (nothing else is asked)."""
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)

    def fake(cuda: bool, colab: str | None = None) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        if colab == "kernel":  # Colab's kernel imports google.colab at start
            monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        elif colab == "process":  # a process started from a Colab cell (!fpnlab train) sees Colab's variables
            monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20250101-060000_RC00")

    return fake


@pytest.mark.parametrize(
    "cuda, colab, preset",
    [
        (True, "kernel", "colab"),  # Colab with a GPU runtime (the free T4)
        (True, "process", "colab"),
        (False, "kernel", "cpu"),  # Colab's default CPU runtime
        (True, None, "gpu"),  # any other machine with a GPU
        (False, None, "cpu"),  # a laptop
    ],
)
def test_auto_preset_fits_the_machine(machine, cuda, colab, preset):
    machine(cuda, colab)
    assert auto_preset() == preset


def test_auto_preset_follows_the_device_asked_for(machine):
    machine(cuda=True, colab="kernel")
    assert auto_preset("cpu") == "cpu" and auto_preset("mps") == "cpu" and auto_preset("cuda:0") == "colab"


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
    overrides = parse_set(
        [
            "lr=1e-3",
            "schedule=step",
            "lr_steps=0.5,0.8",
            "clip_grad_norm=none",
            "amp=false",
            "model.norm=gn",
            "model.anchor_sizes=(16, 32, 64, 128)",
            "model.rpn.test.post_nms_top_n=700",
            "model.box.nms_thresh=0.4",
        ]
    )
    assert overrides == {
        "lr": 0.001,
        "schedule": "step",
        "lr_steps": (0.5, 0.8),
        "clip_grad_norm": None,
        "amp": False,
        "model": {
            "norm": "gn",
            "anchor_sizes": (16, 32, 64, 128),
            "rpn": {"test": {"post_nms_top_n": 700}},
            "box": {"nms_thresh": 0.4},
        },
    }
    cfg = get_preset("test", **overrides)
    assert cfg.lr_steps == (0.5, 0.8) and cfg.clip_grad_norm is None and cfg.model.norm == "gn"
    assert cfg.model.rpn.test == ProposalCounts(500, 700) and cfg.model.box.nms_thresh == 0.4


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(learning_rate=0.1), "unknown setting TrainConfig.learning_rate; known: dataset,"),
        (
            dict(model={"rpn": {"nms_tresh": 0.6}}),
            "unknown setting TrainConfig.model.rpn.nms_tresh; known: train, test",
        ),
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
        (dict(seed=-1), "seed must be in 0..4294967295, got -1"),
        (dict(seed=2**32), "seed must be in 0..4294967295, got 4294967296"),
        (dict(model={"box": {"representation_size": 100_000_000}}), "representation_size must be in 1..16384"),
        (
            dict(model={"fpn_channels": 4096, "box": {"representation_size": 16384}}),
            "box head's first layer would have",
        ),
        (dict(model={"min_size": 400}), "min_size <= max_size"),
        (dict(model={"rpn": {"fg_iou_thresh": 0.2}}), "bg_iou_thresh <= fg_iou_thresh"),
        (dict(model={"rpn": {"test": {"post_nms_top_n": 0}}}), "proposal counts must be >= 1"),
        (dict(model={"anchor_sizes": (32, 64)}), "anchor_sizes needs one size per level"),
        (dict(model={"roi": {"pooler": "max"}}), "RoIConfig.pooler must be one of"),
    ],
)
def test_every_bad_setting_is_named_when_it_is_given(overrides, message):
    with pytest.raises(FpnlabError, match=message):
        get_preset("cpu", **overrides)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: get_preset("gpu2"), "unknown preset 'gpu2'"),
        (lambda: parse_set(["lr"]), "--set expects key=value"),
        (lambda: parse_set(["model..norm=gn"]), "--set expects key=value"),
    ],
)
def test_other_mistakes_raise_one_clear_error(call, message):
    with pytest.raises(FpnlabError, match=message):
        call()


# Each range rule at its edges: the edge itself is accepted, the nearest value outside is refused.
EDGES = [  # (setting, accepted edge values, refused values)
    ("batch_size", [1], [0]),
    ("log_every", [1], [0]),
    ("max_train_images", [1, None], [0]),
    ("max_val_images", [1], [0]),
    ("hflip_prob", [0.0, 1.0], [-0.01, 1.01]),
    ("num_workers", [0], [-1]),
    ("momentum", [0.0, 0.99], [1.0, -0.1]),
    ("weight_decay", [0.0], [-1e-9]),
    ("warmup_factor", [1.0, 1e-6], [0.0, 1.5]),
    ("gamma", [1.0], [0.0, 1.01]),
    ("clip_grad_norm", [1e-3, 0.5, None], [0.0]),
    ("seed", [0], [-1]),
    ("lr_steps", [(0.01, 0.99), (0.5, 0.5), (0.5,)], [(0.0, 0.5), (0.5, 1.0), (0.5, 1.5)]),
]


@pytest.mark.parametrize("name, accepted, refused", EDGES, ids=[e[0] for e in EDGES])
def test_each_rule_accepts_its_edges_and_refuses_just_outside(name, accepted, refused):
    for value in accepted:
        assert getattr(TrainConfig(**{name: value}), name) == value
    for value in refused:
        with pytest.raises(FpnlabError, match=rf"^TrainConfig\.{name} "):
            TrainConfig(**{name: value})


def test_warmup_may_last_from_zero_to_all_iterations():
    assert TrainConfig(iterations=50, warmup_iterations=0).warmup_iterations == 0
    assert TrainConfig(iterations=50, warmup_iterations=50).warmup_iterations == 50
    with pytest.raises(FpnlabError, match=r"warmup_iterations must be in 0\.\.iterations \(50\), got -1"):
        TrainConfig(iterations=50, warmup_iterations=-1)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(
        FpnlabError, match=r"^unknown preset 'x'; choose one of cpu, demo, demo_mask, gpu, colab, gpu_mask, test\.$"
    ):
        get_preset("x")


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("TRUE", True),
        ("False", False),
        ("none", None),
        ("null", None),
        ("NULL", None),
        ("0.01", 0.01),
        ("[1, 2]", (1, 2)),
        ("1,2", (1, 2)),
        ("resnet18", "resnet18"),
        ("(", "("),
        ("'a'", "a"),
    ],
)
def test_literal_reads_python_values_and_spelled_constants(text, value):
    assert literal(text) == value and type(literal(text)) is type(value)


def test_parse_set_splits_at_the_first_equals_sign_and_refuses_a_value_used_as_a_group():
    assert parse_set(["dataset=a=b"]) == {"dataset": "a=b"}
    with pytest.raises(FpnlabError, match=r"^--set 'lr\.x=2': lr was already given a value\.$"):
        parse_set(["lr=1", "lr.x=2"])


def test_update_and_coerce_convert_only_what_they_document():
    with pytest.raises(FpnlabError, match=r"^TrainConfig expects a dict of settings, got 5\.$"):
        update(TrainConfig(), 5)
    assert coerce(5, tuple[int, ...], "w") == (5,) and coerce([1, 2], tuple[int, ...], "w") == (1, 2)
    with pytest.raises(FpnlabError, match=r"^w expects tuple\[int, \.\.\.\], got \(1, 2\)"):
        coerce((1, 2), tuple[int, int], "w")  # fixed-length tuples are not settings' types
    assert coerce({"nms_thresh": 0.6}, RPNConfig, "w") == RPNConfig(nms_thresh=0.6)
    assert coerce(RPNConfig(nms_thresh=0.5), RPNConfig | None, "w") == RPNConfig(nms_thresh=0.5)
    with pytest.raises(FpnlabError, match=r"^unknown setting cfg\.rpn\.bad; known: "):
        coerce({"bad": 1}, RPNConfig, "cfg.rpn")
    with pytest.raises(FpnlabError, match=r"^cfg\.rpn expects RPNConfig \| None, got 3\.$"):
        coerce(3, RPNConfig | None, "cfg.rpn")


@pytest.mark.parametrize(
    "kind, name",
    [
        (int, "int"),
        (float | None, "float | None"),
        (tuple[float, ...], "tuple[float, ...]"),
        (type(None), "None"),
        ("Unresolved", "Unresolved"),  # an annotation left as text
    ],
)
def test_type_names_read_like_the_annotations(kind, name):
    assert type_name(kind) == name


MODEL_EDGES = [  # (settings class, setting, accepted edge values, refused values, message start)
    (RPNConfig, "fg_iou_thresh", [1.0, 0.3], [1.01], "RPNConfig needs 0 <= bg_iou_thresh <= fg_iou_thresh <= 1"),
    (RPNConfig, "bg_iou_thresh", [0.0, 0.7], [-0.01], "RPNConfig needs 0 <= bg_iou_thresh"),
    (RPNConfig, "batch_size_per_image", [1], [0], "RPNConfig.batch_size_per_image must be >= 1, got 0"),
    (
        RPNConfig,
        "positive_fraction",
        [0.0, 1.0],
        [-0.01, 1.01],
        r"RPNConfig.positive_fraction must be in \[0, 1\], got",
    ),
    (RPNConfig, "nms_thresh", [0.0, 1.0], [-0.01, 1.01], r"RPNConfig.nms_thresh is an IoU in \[0, 1\], got"),
    (BoxHeadConfig, "fg_iou_thresh", [1.0], [1.01], "BoxHeadConfig needs 0 <= bg_iou_thresh"),
    (BoxHeadConfig, "batch_size_per_image", [1], [0], "BoxHeadConfig.batch_size_per_image must be >= 1"),
    (BoxHeadConfig, "representation_size", [1, 16384], [0, 16385], "BoxHeadConfig.representation_size must be"),
    (
        BoxHeadConfig,
        "reg_weights",
        [(1e-3, 1e-3, 1e-3, 1e-3)],
        [(0.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0)],
        r"BoxHeadConfig.reg_weights needs 4 positive numbers, got \(",
    ),
    (BoxHeadConfig, "detections_per_img", [1], [0], "BoxHeadConfig.detections_per_img must be >= 1, got 0"),
    (RoIConfig, "output_size", [1, 32], [0, 33], "RoIConfig.output_size must be in 1..32, got"),
    (RoIConfig, "canonical_size", [None, 0.5], [0.0, -1.0], r"RoIConfig.canonical_size must be > 0 \(or None\)"),
    (DetectorConfig, "num_classes", [2], [1], "DetectorConfig.num_classes counts background too and must be >= 2"),
    (
        DetectorConfig,
        "levels",
        [("p2", "p3", "p4", "p5", "p6")],
        [(), ("p7", "p2", "p3", "p4", "p5")],
        "DetectorConfig.levels must be a non-empty subset of",
    ),
    (
        DetectorConfig,
        "anchor_sizes",
        [(1, 64, 128, 256, 512)],
        [(0, 64, 128, 256, 512)],
        "DetectorConfig.anchor_sizes and aspect_ratios must be positive.",
    ),
    (DetectorConfig, "aspect_ratios", [(0.01,)], [(0.0, 1.0)], "DetectorConfig.anchor_sizes and aspect_ratios must"),
    (DetectorConfig, "fpn_channels", [1, 4096], [0, 4097], "DetectorConfig.fpn_channels must be in 1..4096, got"),
]


@pytest.mark.parametrize(
    "kind, name, accepted, refused, message", MODEL_EDGES, ids=[f"{e[0].__name__}.{e[1]}" for e in MODEL_EDGES]
)
def test_each_model_rule_accepts_its_edges_and_refuses_just_outside(kind, name, accepted, refused, message):
    extra = {"representation_size": 64} if name == "fpn_channels" else {}  # keep fc6 within its limit
    box = {"box": BoxHeadConfig(**extra)} if extra else {}
    for value in accepted:
        assert getattr(kind(**{name: value}, **box), name) == value
    for value in refused:
        with pytest.raises(FpnlabError, match="^" + message):
            kind(**{name: value}, **box)


def test_model_sizes_and_proposal_counts_at_their_edges():
    assert DetectorConfig(min_size=1, max_size=1).min_size == 1
    assert DetectorConfig(min_size=4096, max_size=4096).max_size == 4096
    for low, high in [(0, 800), (800, 4097)]:
        with pytest.raises(FpnlabError, match=r"^DetectorConfig needs 0 < min_size <= max_size <= 4096"):
            DetectorConfig(min_size=low, max_size=high)
    assert ProposalCounts(1, 1) == ProposalCounts(pre_nms_top_n=1, post_nms_top_n=1)
    for counts in [(0, 1), (1, 0)]:
        with pytest.raises(FpnlabError, match="proposal counts must be >= 1"):
            ProposalCounts(*counts)
    with pytest.raises(FpnlabError, match=r"^DetectorConfig.levels has only 'p6', which carries anchors but no"):
        DetectorConfig(levels=("p6",), anchor_sizes=(512,))


def test_box_head_limit_is_inclusive():
    """fc6 has fpn_channels x output_size^2 x representation_size weights, at most MAX_HEAD_PARAMETERS."""
    limit = MAX_HEAD_PARAMETERS  # 500_000_000 = 2000 x 5^2 x 10_000
    assert (
        DetectorConfig(
            fpn_channels=2000, roi=RoIConfig(output_size=5), box=BoxHeadConfig(representation_size=10_000)
        ).fpn_channels
        == 2000
    )
    with pytest.raises(FpnlabError, match=f"would have {limit + 2000 * 25:,} weights"):
        DetectorConfig(fpn_channels=2000, roi=RoIConfig(output_size=5), box=BoxHeadConfig(representation_size=10_001))


def test_flat_layout_of_old_checkpoints_moves_into_groups():
    old = {
        "backbone": "resnet50",
        "rpn_pre_nms_top_n_test": 500,
        "rpn_nms_thresh": 0.6,
        "roi_output_size": 5,
        "representation_size": 256,
        "bbox_reg_weights": (1.0, 1.0, 1.0, 1.0),
        "box_detections_per_img": 7,
    }
    assert upgrade_flat_layout(old) == {
        "roi": {"canonical_size": 224.0, "output_size": 5},
        "backbone": "resnet50",
        "rpn": {"test": {"pre_nms_top_n": 500}, "nms_thresh": 0.6},
        "box": {"representation_size": 256, "reg_weights": (1.0, 1.0, 1.0, 1.0), "detections_per_img": 7},
    }
    assert upgrade_flat_layout({}) == {"roi": {"canonical_size": 224.0}}


def test_single_scale_models_carry_every_anchor_size_on_their_one_level():
    sizes = (32, 64, 128, 256, 512)
    fpn = DetectorConfig(anchor_sizes=sizes[:4], levels=("p2", "p3", "p4", "p5"))
    assert fpn.rpn_levels() == ("p2", "p3", "p4", "p5")
    assert fpn.anchor_sizes_per_level() == ((32,), (64,), (128,), (256,))
    c4 = DetectorConfig(neck="c4", anchor_sizes=sizes)  # Table 1 row (a): one level, all 15 anchors
    assert c4.rpn_levels() == c4.pooled_levels() == ("c4",) and c4.anchor_sizes_per_level() == (sizes,)
    p2_only = DetectorConfig(levels=("p2",), anchor_sizes=sizes)  # row (f)
    assert p2_only.anchor_sizes_per_level() == (sizes,)
    with pytest.raises(FpnlabError, match=r"^DetectorConfig.neck must be one of \('fpn', 'c4', 'c5'\), got 'c3'\.$"):
        DetectorConfig(neck="c3")


def test_rpn_keeps_more_proposals_while_training():
    rpn = RPNConfig()
    assert rpn.counts(training=True) == rpn.train == ProposalCounts(2000, 2000)
    assert rpn.counts(training=False) == rpn.test == ProposalCounts(1000, 1000)
