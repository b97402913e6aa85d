"""Stopping early: a stop signal is noted and answered after the iteration, a second one quits at once;
weights that stopped being finite name the iteration and the weight."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch

from fpnlab.engine.stopping import Diverged, StopRequests, check_finite, check_finite_weights

CPU = torch.device("cpu")


def test_sigterm_is_noted_then_a_second_signal_quits(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:
        assert stop.requested(CPU) is False  # nothing received yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal_name == "SIGTERM" and stop.requested(CPU) is True
        assert capsys.readouterr().out == (
            "SIGTERM: stopping after this iteration and saving a checkpoint (send it again to quit at once).\n"
        )
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back


def test_outside_the_main_thread_no_handler_is_set_and_nothing_fails():
    found = {}

    def worker() -> None:
        with StopRequests() as stop:
            found["requested"], found["previous"] = stop.requested(CPU), stop.previous

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert found == {"requested": False, "previous": {}}


def test_a_weight_that_is_no_longer_finite_is_named():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    check_finite_weights(model, 6)  # finite: nothing happens
    with torch.no_grad():
        model[0].bias[1] = float("inf")
    with pytest.raises(Diverged) as err:
        check_finite_weights(model, 7)
    assert str(err.value) == "training diverged at iteration 7: weight 0.bias is no longer finite"
    assert (err.value.iteration, err.value.what) == (7, "weight 0.bias is no longer finite")
    with pytest.raises(Diverged, match=r"^training diverged at iteration 3: loss_objectness is nan$"):
        check_finite({"loss_classifier": 0.5, "loss_objectness": float("nan")}, 3)
