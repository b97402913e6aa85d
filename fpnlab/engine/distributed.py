"""Where a run computes: the device, and the processes of a multi-GPU (DDP) run started by torchrun.

    device = resolve_device("auto")        # CUDA (the process's own GPU under torchrun), MPS, else CPU
    rank, world_size = init_distributed(device)    # (0, 1) when run alone

Under DDP every process holds a copy of the model and works on its own share of the data;
`average_across_processes` and `gather` bring their numbers together so that every process sees
the same losses and the same evaluation.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fpnlab.env import default_device
from fpnlab.errors import FpnlabError


def launch_settings() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables, (0, 1, 0) when run alone.

    Values that are not whole numbers, a RANK outside 0..WORLD_SIZE-1, or a WORLD_SIZE above 1 with no
    process group to join (torchrun also sets MASTER_ADDR and MASTER_PORT) are refused in one line,
    before any work: a stray RANK=1 in a shell would otherwise make a lone process skip every write.
    """
    values = []
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, str(default)).strip()
        try:
            values.append(int(text))
        except ValueError:
            raise FpnlabError(
                f"environment variable {name}={text!r} is not a whole number; unset it to run alone, or start "
                "the processes with torchrun."
            ) from None
    rank, world_size, local = values
    if world_size < 1 or not 0 <= rank < world_size or local < 0:
        raise FpnlabError(
            f"environment variables RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local} do not fit "
            "together (RANK must be in 0..WORLD_SIZE-1, LOCAL_RANK >= 0); unset them to run alone."
        )
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if world_size > 1 and missing and not dist.is_initialized():
        raise FpnlabError(
            f"WORLD_SIZE={world_size} is set but {' and '.join(missing)} not: there is no process group to "
            "join; unset RANK, WORLD_SIZE and LOCAL_RANK to run alone, or start the processes with torchrun."
        )
    return rank, world_size, local


def local_rank() -> int:
    """This process's GPU index on its machine (torchrun's LOCAL_RANK), 0 when run alone."""
    return launch_settings()[2]


def is_main_process() -> bool:
    """True for the process that logs and writes files (rank 0), and for a run without DDP."""
    return (dist.get_rank() if dist.is_initialized() else launch_settings()[0]) == 0


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" (a GPU when there is one, this process's under torchrun), or a device name such as "cuda:1"."""
    if name == "auto":
        device = default_device()
        return torch.device("cuda", local_rank()) if device.type == "cuda" else device
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise FpnlabError(f"TrainConfig.device {name!r} is not a device name (try 'auto', 'cpu' or 'cuda').") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise FpnlabError(f"TrainConfig.device {name!r} cannot train or detect; use 'auto', 'cpu', 'cuda' or 'mps'.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FpnlabError(f"TrainConfig.device is {name!r} but no CUDA GPU is visible.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise FpnlabError(f"TrainConfig.device is {name!r} but only {torch.cuda.device_count()} GPU(s) are visible.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FpnlabError(f"TrainConfig.device is {name!r} but this machine has no MPS (Apple GPU) device.")
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size): from torchrun's environment variables, (0, 1) when run alone."""
    _, world_size, _ = launch_settings()
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size


def shutdown() -> None:
    """End the process group, if there is one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here (nothing without DDP)."""
    if dist.is_initialized():
        dist.barrier()


def average_across_processes(values: dict[str, Tensor]) -> dict[str, float]:
    """Loss terms averaged over all processes (every process gets the same numbers)."""
    stacked = torch.stack([v.detach().float() for v in values.values()])
    if dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(values, stacked.tolist()))


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is True on any of them."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def my_indices(count: int) -> list[int]:
    """The indices of 0..count-1 this process handles: all of them, or every world_size-th under DDP."""
    if dist.is_initialized():
        return list(range(dist.get_rank(), count, dist.get_world_size()))
    return list(range(count))


def gather(items: list[Any]) -> list[Any]:
    """The concatenation of every process's `items` (just `items` without DDP)."""
    if not dist.is_initialized():
        return items
    parts: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every process, so all evaluate the same model."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def wrap(model: nn.Module, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """The model for training: as it is alone, in DistributedDataParallel under torchrun.

    `sync_batchnorm` (BatchNorm on GPUs) makes BatchNorm statistics cover the global batch.
    """
    if not dist.is_initialized():
        return model
    if sync_batchnorm and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The detector inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
