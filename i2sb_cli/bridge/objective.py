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


def bridge_loss(
    output: Tensor, target: Tensor, mask: Tensor | None = None, weights: Tensor | None = None
) -> Tensor:
    """Mean squared error; for inpainting only the hole (mask 1) counts, as in the official code.
    `weights` ([B], mean 1) scale each picture's share of the mean."""
    if mask is not None:
        output, target = output * mask, target * mask
    if weights is None:
        return torch.nn.functional.mse_loss(output, target)
    per_picture = (output - target).square().flatten(1).mean(1)
    return (weights.to(per_picture) * per_picture).mean()


INPUT_ERROR_FLOOR = (2 * 2 / 255) ** 2
"""Two 8-bit levels of error, squared, in [-1, 1] units: a pair whose input is nearly clean
weighs as one that is two levels off, not without bound."""


def input_error_weights(x0: Tensor, x1: Tensor) -> Tensor:
    """[B] loss weights, mean 1, inversely proportional to each picture's input error
    mean((x1 - x0)^2) (floored at INPUT_ERROR_FLOOR). Under the plain mean, a heavily degraded
    picture's large errors outweigh a lightly degraded one's: a JPEG of quality 10 has about 10
    times the squared error of one of quality 90 (median over the 9 validation photos; 5 to
    100), so the network learns to clean the first and smooths the second as hard. Weighed so,
    each picture's loss counts relative to what its input got wrong (a gain in PSNR, not in
    squared error)."""
    error = (x1 - x0).float().square().flatten(1).mean(1).clamp(min=INPUT_ERROR_FLOOR)
    weights = 1 / error
    return weights / weights.mean()
