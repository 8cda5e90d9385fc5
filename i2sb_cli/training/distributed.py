"""Several processes training one model: torch.distributed data parallelism (DDP).

`torchrun --nproc-per-node G [--nnodes N ...] -m i2sb_cli train ...` starts one process per
GPU and tells each its RANK, LOCAL_RANK and WORLD_SIZE; without those variables training runs
in a single process and nothing here does anything. Each process draws its own batches (its
rank is part of every step's seed), DDP averages the gradients so that all copies of the
network stay equal, and only rank 0 writes files and prints. GPUs talk through NCCL, CPU
processes through gloo (which the tests use).
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# Joining, waiting and leaving are shared with `restore`; training adds DDP and its reductions.
from ..runtime.cluster import Cluster, barrier, join, leave

__all__ = ["Cluster", "anyone", "barrier", "join", "leave", "mean", "wrap"]


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
