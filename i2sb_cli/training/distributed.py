"""Several processes training one model: torch.distributed data parallelism (DDP).

`torchrun --nproc-per-node G [--nnodes N ...] -m i2sb_cli train ...` starts one process per
GPU and tells each its RANK, LOCAL_RANK and WORLD_SIZE; without those variables training runs
in a single process and nothing here does anything. Each process draws its own batches (its
rank is part of every step's seed), DDP averages the gradients so that all copies of the
network stay equal, and only rank 0 writes files and prints. GPUs talk through NCCL, CPU
processes through gloo (which the tests use).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import UsageError
from ..runtime.torch_backend import resolve_device


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and talks to the user."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UsageError(f"${name}={value!r} is not an integer (torchrun sets it)") from None


def join(device_spec: str) -> Cluster:
    """Join the process group torchrun describes, or run alone; picks this process's device.

    Under torchrun, `auto` and `cuda` mean the GPU of this process's LOCAL_RANK.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return Cluster(device=resolve_device(device_spec))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device_spec in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
    else:
        device = resolve_device(device_spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Cluster(device, rank, world_size, local_rank)


def barrier(cluster: Cluster) -> None:
    """Wait until every process gets here."""
    if cluster.enabled:
        dist.barrier()


def leave(cluster: Cluster) -> None:
    """Leave the process group; no collective call may follow."""
    if cluster.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(net: nn.Module, cluster: Cluster) -> nn.Module:
    """The module the forward pass calls: DDP across processes, or the net itself.

    DDP copies rank 0's weights to every process when it is built, so all start equal.
    """
    if not cluster.enabled:
        return net
    device_ids = [cluster.device.index] if cluster.device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=device_ids)


def mean(cluster: Cluster, value: float) -> float:
    """The mean of `value` over all processes (every process must call it)."""
    if not cluster.enabled:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=cluster.device)
    dist.all_reduce(total)
    return float(total) / cluster.world_size


def anyone(cluster: Cluster, flag: bool) -> bool:
    """Whether `flag` is true in any process (every process must call it)."""
    if not cluster.enabled:
        return flag
    value = torch.tensor([int(flag)], device=cluster.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
