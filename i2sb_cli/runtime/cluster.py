"""Several processes of one job under torchrun: which one this is, its device, and their group.

`torchrun --nproc-per-node G [--nnodes N ...] -m i2sb_cli COMMAND ...` starts one process per
GPU and tells each its RANK, LOCAL_RANK and WORLD_SIZE; without those variables a command runs
in a single process and nothing here does anything. `train` uses the group for data
parallelism (training/distributed.py), `restore` to split its pictures (restoring/split.py).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ClusterError, UsageError
from .torch_backend import resolve_device


@dataclass(frozen=True)
class Cluster:
    """This process's place among the processes of one job."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the shared files and talks to the user."""
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


def launched_world_size() -> int:
    """How many processes torchrun started for this job (1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def rank_device(device_spec: str, local_rank: int) -> str:
    """The device of the process with `local_rank` on its machine: `auto` and `cuda` mean that
    process's own GPU where there are GPUs; anything else (cpu, cuda:N) stays as asked."""
    if device_spec in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return device_spec


def join(
    device_spec: str, *, backend: str | None = None, timeout: timedelta | None = None
) -> Cluster:
    """Join the process group torchrun describes, or run alone; picks this process's device.

    `backend` None is NCCL between GPUs and gloo between CPU processes; `timeout` bounds every
    collective call (None: torch's default).
    """
    world_size = launched_world_size()
    if world_size <= 1:
        return Cluster(device=resolve_device(device_spec))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = resolve_device(rank_device(device_spec, local_rank))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend, timeout=timeout)
    return Cluster(device, rank, world_size, local_rank)


@contextmanager
def _together() -> Iterator[None]:
    """A collective call, whose failure means that another process of the job has stopped."""
    try:
        yield
    except RuntimeError as exc:  # gloo: "Connection closed by peer", or its timeout
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(
            f"another process of this job stopped, so this one stops too ({reason}); "
            "that process's own messages say why"
        ) from exc


def barrier(cluster: Cluster) -> None:
    """Wait until every process gets here."""
    if cluster.enabled:
        with _together():
            dist.barrier()


def leave(cluster: Cluster) -> None:
    """Leave the process group; no collective call may follow."""
    if cluster.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def main_first(cluster: Cluster) -> Iterator[None]:
    """Run the block in the main process, then in the others at once: what it writes to shared
    places (a download, a cached export) is made once, and found by the others."""
    if not cluster.is_main:
        barrier(cluster)
    yield
    if cluster.is_main:
        barrier(cluster)


def all_gather(cluster: Cluster, value: Any) -> list[Any]:
    """Every process's `value` (picklable), by rank, in every process (all must call it)."""
    if not cluster.enabled:
        return [value]
    values: list[Any] = [None] * cluster.world_size
    with _together():
        dist.all_gather_object(values, value)
    return values
