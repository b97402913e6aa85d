"""TrainState without training: the optimizer's groups, the lr schedule's edges, what a checkpoint holds,
what resuming accepts and refuses, and the precision chosen for the GPU (faked by its compute capability)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from fpnlab.engine.presets import TrainConfig, get_preset
from fpnlab.engine.state import TrainState, autocast_dtype, build_model, lr_factor, make_optimizer, precision_note
from fpnlab.errors import FpnlabError

# What TrainState.create reads of a training set.
TRAIN_SET = SimpleNamespace(num_classes=3, categories=["circle", "square"], label_to_cat_id={1: 5, 2: 7})


@pytest.fixture()
def state() -> TrainState:
    return TrainState.create(get_preset("test", iterations=20, warmup_iterations=5), TRAIN_SET, torch.device("cpu"))


def test_weight_decay_applies_to_weights_only():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    decay, no_decay = make_optimizer(model, TrainConfig(weight_decay=1e-3, lr=0.05, momentum=0.8)).param_groups
    assert [p.shape for p in decay["params"]] == [(4, 3)] and decay["weight_decay"] == 1e-3
    assert [p.shape for p in no_decay["params"]] == [(4,), (4,), (4,)] and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 0.05 and decay["momentum"] == 0.8


def test_lr_schedule_at_its_edges():
    # warm-up ends exactly where a step falls: the step applies at once
    step = TrainConfig(iterations=100, warmup_iterations=50, lr_steps=(0.5,), gamma=0.1)
    assert lr_factor(49, step) == pytest.approx(0.001 * (1 / 50) + 49 / 50) and lr_factor(50, step) == 0.1
    # cosine over a single iteration after warm-up: 1 at its start, 0 at its end, and 0 after the end
    cosine = TrainConfig(iterations=11, warmup_iterations=10, schedule="cosine")
    assert lr_factor(10, cosine) == 1.0 and lr_factor(11, cosine) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(60, cosine) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(10, TrainConfig(iterations=30, warmup_iterations=10, schedule="cosine")) == 1.0
    assert lr_factor(20, TrainConfig(iterations=30, warmup_iterations=10, schedule="cosine")) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 2))
    )


def test_the_model_is_the_configs(state):
    cfg = get_preset("test")
    assert build_model(cfg, 3).config == dataclasses.replace(cfg.model, num_classes=3)
    assert state.detector.config == dataclasses.replace(state.cfg.model, num_classes=3)
    assert state.lr() == pytest.approx(state.cfg.lr * state.cfg.warmup_factor)  # warm-up starts low


def test_a_checkpoint_holds_the_class_mapping_and_the_settings(state):
    checkpoint = state.checkpoint(loss=1.5)
    assert checkpoint["categories"] == ["circle", "square"] and checkpoint["label_to_cat_id"] == {1: 5, 2: 7}
    assert checkpoint["train_config"] == state.cfg.to_dict() and checkpoint["loss"] == 1.5
    assert state.changed_settings(checkpoint) == []
    changed = {**checkpoint, "train_config": {**checkpoint["train_config"], "lr": 0.5, "seed": 9}}
    assert state.changed_settings(changed) == ["lr"]  # seed cannot change on resume: restore refuses it
    assert state.changed_settings(changed, everything=True) == ["lr", "seed"]
    assert state.changed_settings({}) == []  # an old checkpoint without settings: nothing to compare


def test_resume_accepts_a_finished_run_and_refuses_what_cannot_continue(state):
    checkpoint = state.checkpoint()
    state.restore({**checkpoint, "iteration": 20}, "done.pt")  # all 20 done: nothing left, not an error
    assert state.iteration == 20
    with pytest.raises(FpnlabError) as err:
        state.restore({**checkpoint, "iteration": 21}, "long.pt")
    assert str(err.value) == (
        "long.pt has already trained 21 iterations, more than iterations=20; raise iterations "
        "to continue it, or use another run folder."
    )
    exported = {k: v for k, v in checkpoint.items() if k != "optimizer"}
    with pytest.raises(FpnlabError) as err:
        state.restore(exported, "model.pt")
    assert str(err.value) == "model.pt holds weights only (an exported model), no training state to resume."
    with pytest.raises(FpnlabError, match=r"^checkpoint other.pt does not match the model: "):
        state.restore({**checkpoint, "model": {}}, "other.pt")


# --- precision by hardware --------------------------------------------------------------------------

CARDS = {  # name -> compute capability (Nvidia's tables)
    "Tesla T4": (7, 5),  # Colab's free GPU: fp16 tensor cores, no bf16 hardware
    "Tesla V100-SXM2-16GB": (7, 0),
    "NVIDIA A100-SXM4-40GB": (8, 0),
    "NVIDIA L4": (8, 9),
    "NVIDIA H100 80GB HBM3": (9, 0),
}


@pytest.fixture()
def gpu(monkeypatch):
    """Fake the CUDA card by its name and compute capability; torch's is_bf16_supported() says yes on every one, as
    it does by default on a T4 (emulated bf16), so a choice that asked it would be caught."""

    def fake(name: str) -> torch.device:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: CARDS[name])
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        return torch.device("cuda")

    return fake


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("Tesla T4", torch.float16),
        ("Tesla V100-SXM2-16GB", torch.float16),
        ("NVIDIA A100-SXM4-40GB", torch.bfloat16),
        ("NVIDIA L4", torch.bfloat16),
        ("NVIDIA H100 80GB HBM3", torch.bfloat16),
    ],
)
def test_bf16_only_where_the_gpu_computes_it_natively(gpu, name, dtype):
    assert autocast_dtype(TrainConfig(), gpu(name)) == dtype


def test_no_mixed_precision_off_cuda_or_when_switched_off(gpu):
    device = gpu("NVIDIA H100 80GB HBM3")
    assert autocast_dtype(TrainConfig(amp=False), device) is None
    assert autocast_dtype(TrainConfig(), torch.device("cpu")) is None


def test_the_precision_line_says_what_and_why(gpu):
    assert precision_note(torch.float16, gpu("Tesla T4")) == (
        "precision: fp16 autocast with a GradScaler (Tesla T4, compute capability 7.5: no native bf16)"
    )
    h100 = gpu("NVIDIA H100 80GB HBM3")
    assert precision_note(torch.bfloat16, h100) == (
        "precision: bf16 autocast (NVIDIA H100 80GB HBM3, compute capability 9.0: native bf16, no loss scaling needed)"
    )
    assert precision_note(None, h100) == "precision: float32 (amp=False)"


@pytest.mark.parametrize("done", [-1, 2.0, True, "3", None])
def test_resume_refuses_an_iteration_that_is_not_a_whole_number(state, done):
    checkpoint = state.checkpoint()
    with pytest.raises(FpnlabError) as err:
        state.restore({**checkpoint, "iteration": done}, "odd.pt")
    assert str(err.value) == f"odd.pt is damaged: its iteration is {done!r}, not a whole number >= 0."
    state.restore({**checkpoint, "iteration": 0}, "start.pt")  # 0 is a whole number: nothing trained yet
    assert state.iteration == 0


def test_resume_refuses_other_categories_and_takes_a_checkpoint_without_them(state):
    checkpoint = state.checkpoint()
    with pytest.raises(FpnlabError) as err:
        state.restore({**checkpoint, "categories": ["circle", "star"]}, "shapes.pt")
    assert str(err.value) == (
        "shapes.pt was trained on the categories circle, star, but the training set now has circle, square; "
        "start afresh in another --run-dir."
    )
    older = {k: v for k, v in checkpoint.items() if k != "categories"}  # made before checkpoints named them
    state.restore({**older, "iteration": 3}, "older.pt")
    assert state.iteration == 3


def test_resume_names_damaged_training_state_in_one_sentence(state):
    checkpoint = state.checkpoint()
    param = state.optimizer.param_groups[0]["params"][0]
    state.optimizer.state[param]["momentum_buffer"] = torch.zeros(2, 2)  # a buffer that fits no weight
    damaged = {**checkpoint, "optimizer": state.optimizer.state_dict()}
    with pytest.raises(FpnlabError) as err:
        state.restore(damaged, "bad.pt")
    assert str(err.value) == (
        f"bad.pt holds damaged training state (ValueError: a momentum buffer of shape (2, 2) for a "
        f"{tuple(param.shape)} weight); start afresh in another --run-dir, or restore the checkpoint from a copy."
    )
