"""When a run stops before its end: on request (Ctrl-C, or SIGTERM from a scheduler) or because it diverged.

    with StopRequests() as stop:            # Ctrl-C or SIGTERM: finish this iteration, save, stop
        ... if stop.requested(device): save, then raise KeyboardInterrupt
    check_finite(losses, iteration)         # a NaN or infinite loss term: Diverged, before the weights see it
    check_finite_weights(model, iteration)  # weights that became NaN or infinite are never saved

`Diverged` carries what the message needs; the loop adds what the checkpoint on disk holds.
"""

from __future__ import annotations

import contextlib
import math
import signal
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fpnlab.engine.distributed import any_process
from fpnlab.errors import FpnlabError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; `kill`, `docker stop`, a cluster scheduler


class StopRequests:
    """Ctrl-C or SIGTERM ask the loop to stop after the current iteration, so the checkpoint is consistent.

    A second signal interrupts at once. Under DDP every process stops at the same iteration.
    """

    def __enter__(self) -> StopRequests:
        self.signal_name: str | None = None
        self.previous: dict[int, Any] = {}
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError):  # handlers can only be set from the main thread
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        tqdm.write(
            f"{self.signal_name}: stopping after this iteration and saving a checkpoint "
            "(send it again to quit at once)."
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def requested(self, device: torch.device) -> bool:
        """True (on every process) once any process received a stop signal."""
        return any_process(self.signal_name is not None, device)


class Diverged(FpnlabError):
    """Training produced a NaN or infinite loss or weight at `iteration`."""

    def __init__(self, iteration: int, what: str) -> None:
        super().__init__(f"training diverged at iteration {iteration}: {what}")
        self.iteration, self.what = iteration, what


def check_finite(losses: dict[str, float], iteration: int) -> None:
    """Raise Diverged at the first NaN or infinite loss term, before it reaches the weights."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise Diverged(iteration, f"{name} is {value}")


def check_finite_weights(model: nn.Module, iteration: int) -> None:
    """Raise Diverged when a weight is NaN or infinite (a finite loss can still send a huge gradient)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Diverged(iteration, f"weight {name} is no longer finite")
