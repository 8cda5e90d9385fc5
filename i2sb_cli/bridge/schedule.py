"""The I2SB noise schedule and the NFE step spacing (docs/spec.md sections 1 and 3).

The bridge between x0 (clean) and x1 (degraded) is the Gaussian product of a forward and a
backward diffusion with a symmetric beta schedule: at step n its marginal (eq. 11 of the paper) is
N(mu_x0[n] x0 + mu_x1[n] x1, std_sb[n]^2). Arrays are computed in float64, as the official
implementation does before it casts to float32, and kept in float64 so that the sampler's
coefficients are exact; callers cast to their working dtype.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_INTERVAL = 1000
BETA_START = 1e-4


@dataclass(frozen=True)
class Schedule:
    """The bridge's per-step quantities, each a float64 tensor of shape [interval]."""

    beta_max: float
    interval: int
    betas: Tensor
    std_fwd: Tensor
    std_bwd: Tensor
    mu_x0: Tensor
    mu_x1: Tensor
    std_sb: Tensor
    noise_levels: Tensor
    """The network's time input for step n: a float32 value in (0, interval], not the integer n."""


def gaussian_product(std1: Tensor, std2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients of the product of N(a, std1^2) and N(b, std2^2): (coef_a, coef_b, var)."""
    denom = std1**2 + std2**2
    return std2**2 / denom, std1**2 / denom, std1**2 * std2**2 / denom


def make_schedule(
    beta_max: float, interval: int = DEFAULT_INTERVAL, t0: float = 1e-4, t1: float = 1.0
) -> Schedule:
    """Build the schedule the official trainer builds for `beta_max` and `interval` steps."""
    if not beta_max > 0:
        raise ValueError(f"beta_max must be positive, got {beta_max}")
    if interval < 2:
        raise ValueError(f"interval must be at least 2, got {interval}")
    # Only the end value is divided by the interval; the start is the fixed 1e-4.
    half = torch.linspace(
        BETA_START**0.5, (beta_max / interval) ** 0.5, interval, dtype=torch.float64
    )
    half = (half**2)[: interval // 2]
    betas = torch.cat([half, half.flip(0)])
    # Both cumulative sums include beta_n itself, so std_fwd[0] = sqrt(betas[0]) = 0.01.
    std_fwd = betas.cumsum(0).sqrt()
    std_bwd = betas.flip(0).cumsum(0).flip(0).sqrt()
    mu_x0, mu_x1, var = gaussian_product(std_fwd, std_bwd)
    # The official code builds the time input in float32; keep its exact values.
    noise_levels = torch.linspace(t0, t1, interval, dtype=torch.float32) * interval
    return Schedule(
        beta_max=float(beta_max),
        interval=interval,
        betas=betas,
        std_fwd=std_fwd,
        std_bwd=std_bwd,
        mu_x0=mu_x0,
        mu_x1=mu_x1,
        std_sb=var.sqrt(),
        noise_levels=noise_levels,
    )


def nfe_steps(nfe: int, interval: int = DEFAULT_INTERVAL) -> list[int]:
    """The nfe + 1 ascending steps from 0 to interval - 1 that a sampler with `nfe` calls visits.

    The official spacing accumulates the stride in floating point and rounds half to even at
    every point; `round(i * stride)` differs from it for some NFE (e.g. 20), so keep the loop.
    """
    if not 0 < nfe < interval:
        raise ValueError(f"nfe must be between 1 and {interval - 1}, got {nfe}")
    stride = (interval - 1) / nfe
    steps, cur = [], 0.0
    for _ in range(nfe + 1):
        steps.append(round(cur))
        cur += stride
    return steps
