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


def local_rank() -> int:
    """This process's GPU index on its machine (torchrun's LOCAL_RANK), 0 when run alone."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True for the process that logs and writes files (rank 0), and for a run without DDP."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" (a GPU when there is one, this process's under torchrun), or a device name such as "cuda:1"."""
    if name == "auto":
        device = default_device()
        return torch.device("cuda", local_rank()) if device.type == "cuda" else device
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FpnlabError(f"TrainConfig.device {name!r} is not a device name (try 'auto', 'cpu' or 'cuda').") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FpnlabError(f"TrainConfig.device is {name!r} but no CUDA GPU is visible.")
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size): from torchrun's environment variables, (0, 1) when run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
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
