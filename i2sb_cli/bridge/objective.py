"""The training objective (Algorithm 1 of the paper; docs/spec.md section 2).

A training example draws a step n, places x_n on the bridge between a clean x0 and its degraded
x1 (eq. 11: the analytic posterior of the bridge), and asks the network for the scaled
difference (x_n - x0) / std_fwd[n], from which x0 follows at sampling time.
"""

import torch
from torch import Tensor

from .schedule import Schedule


def _per_item(values: Tensor, n: Tensor, like: Tensor) -> Tensor:
    """values[n] shaped to broadcast over a batch like `like`, in its dtype and device."""
    picked = values.to(like.device)[n.to(like.device)]
    return picked.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def bridge_sample(
    x0: Tensor, x1: Tensor, n: Tensor, schedule: Schedule, eps: Tensor | None
) -> Tensor:
    """x_n ~ q(x_n | x0, x1): mu_x0[n] x0 + mu_x1[n] x1 + std_sb[n] eps (no eps under OT-ODE)."""
    x_n = _per_item(schedule.mu_x0, n, x0) * x0 + _per_item(schedule.mu_x1, n, x0) * x1
    if eps is not None:
        x_n = x_n + _per_item(schedule.std_sb, n, x0) * eps
    return x_n


def bridge_target(x_n: Tensor, x0: Tensor, n: Tensor, schedule: Schedule) -> Tensor:
    """The network's regression target (x_n - x0) / std_fwd[n]."""
    return (x_n - x0) / _per_item(schedule.std_fwd, n, x0)


def time_input(n: Tensor, schedule: Schedule, device: torch.device) -> Tensor:
    """The float time levels the network receives for integer steps n."""
    return schedule.noise_levels.to(device)[n.to(device)]


def bridge_loss(output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error; for inpainting only the hole (mask 1) counts, as in the official code."""
    if mask is not None:
        output, target = output * mask, target * mask
    return torch.nn.functional.mse_loss(output, target)
