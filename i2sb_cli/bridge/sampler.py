"""The I2SB sampler (Algorithm 2 of the paper; docs/spec.md section 3).

Starting from the degraded picture x1, each step predicts the clean picture x0_hat with the
network and moves the state from step n to an earlier step `prev` with the DDPM posterior
p(x_prev | x0_hat, x_n) of the bridge's forward diffusion (eq. 4 of the paper). The sampler is a
function of a `denoise` callable, so the same loop drives a torch network, an ONNX Runtime
session or a tiled wrapper; its randomness comes in through a `NoiseSource`.
"""

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .schedule import Schedule

# The one interface between the math and whatever computes a network (docs/design.md decision 1):
# denoise(x_t, n, cond) -> x0_hat, with n the integer step of x_t and cond the x1 the network
# is conditioned on (None for unconditioned models).
Denoise = Callable[[Tensor, int, Tensor | None], Tensor]

# noise(like) -> a standard normal tensor shaped like `like`, on its device and dtype.
NoiseSource = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What a progress callback sees after each network call."""

    index: int
    """How many steps are done, 1 after the first call."""
    total: int
    n: int
    prev: int
    x: Tensor
    """The state at step `prev`."""
    x0_hat: Tensor
    """The network's prediction of the clean picture at step `n`."""


def per_image_noise(generators: Sequence[torch.Generator]) -> NoiseSource:
    """A noise source that draws image i of a batch from generators[i] alone.

    Draws happen on the generators' device (normally the CPU) and are moved to the batch's
    device, so an image's noise does not depend on the batch it is in, the backend or the device.
    """

    def draw(like: Tensor) -> Tensor:
        if like.shape[0] != len(generators):
            raise ValueError(f"batch of {like.shape[0]} pictures but {len(generators)} generators")
        draws = [
            torch.randn(like.shape[1:], generator=g, device=g.device, dtype=torch.float32)
            for g in generators
        ]
        return torch.stack(draws).to(device=like.device, dtype=like.dtype)

    return draw


def recorded_noise(draws: Iterable[Tensor]) -> NoiseSource:
    """A noise source that replays given tensors in order (for reproducing a recorded run)."""
    pending = iter(draws)

    def replay(like: Tensor) -> Tensor:
        try:
            eps = next(pending)
        except StopIteration:
            raise ValueError("the recorded noise ran out before the sampler finished") from None
        return eps.to(device=like.device, dtype=like.dtype).expand_as(like)

    return replay


def fill_hole(x1: Tensor, mask: Tensor, noise: NoiseSource) -> Tensor:
    """The inpainting network input: known pixels of x1, standard normal noise in the hole.

    `mask` is 1 in the hole. The official runner fills the hole with noise, not a colour, and the
    filled picture is both the sampler's start point and the source of re-imposed known pixels.
    """
    return (1 - mask) * x1 + mask * noise(x1)


def posterior_step(
    x_n: Tensor,
    x0_hat: Tensor,
    n: int,
    prev: int,
    schedule: Schedule,
    noise: NoiseSource | None,
) -> Tensor:
    """One move from step n to step prev < n: the mean (and, with `noise`, a draw) of the
    Gaussian p(x_prev | x0_hat, x_n) of the forward diffusion with variances std_fwd^2."""
    var_prev = schedule.std_fwd[prev] ** 2
    var_delta = schedule.std_fwd[n] ** 2 - var_prev
    coef_x0 = float(var_delta / (var_prev + var_delta))
    coef_xn = float(var_prev / (var_prev + var_delta))
    # In place where the result is new (a 4096x4096 picture's state is 200 MB a copy), and in
    # the same separate multiplies and adds as written out: a fused multiply-add would round
    # differently in the vector loop than in its tail, and a picture would then depend on the
    # batch it was sampled in.
    x_prev = x0_hat * coef_x0
    x_prev.add_(x_n * coef_xn)
    if noise is not None and prev > 0:
        std = float((var_prev * var_delta / (var_prev + var_delta)).sqrt())
        x_prev.add_(std * noise(x_prev))
    return x_prev


def sample(
    denoise: Denoise,
    x1: Tensor,
    schedule: Schedule,
    steps: Sequence[int],
    *,
    ot_ode: bool,
    noise: NoiseSource | None = None,
    mask: Tensor | None = None,
    cond: Tensor | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    detail: float = 1.0,
) -> Tensor:
    """Run the bridge from x1 back to step 0 and return the final state (no clamp).

    `steps` is ascending from 0 (see `nfe_steps`); each of the len(steps) - 1 pairs costs one
    network call. With `ot_ode` the walk is deterministic (the OT-ODE limit); otherwise `noise`
    is required. With `mask` (1 = hole), x1 must already be hole-filled (`fill_hole`) and the
    known pixels are re-imposed after every step, noised to the bridge's marginal at `prev`.
    `cond` is passed to every `denoise` call (the x1 of a conditioned model).

    `detail` below 1 returns detail * x0 + (1 - detail) * x0_hat(x1), a mix of the sample with
    the first step's prediction, which is the network's estimate of E[x0 | x1] (the training
    objective regresses x0 at every step): the least-squares end of the distortion-perception
    trade-off, reached by linear interpolation (Freirich, Michaeli and Meir, NeurIPS 2021). It
    costs no network call; with `mask`, only the hole is mixed.
    """
    if not 0.0 <= detail <= 1.0:
        raise ValueError(f"detail must be between 0 and 1, got {detail}")
    if list(steps) != sorted(set(steps)) or len(steps) < 2 or steps[0] != 0:
        raise ValueError(f"steps must be ascending from 0 with at least 2 entries, got {steps}")
    if steps[-1] >= schedule.interval:
        raise ValueError(f"step {steps[-1]} is outside a schedule of {schedule.interval} steps")
    if not ot_ode and noise is None:
        raise ValueError("the stochastic sampler needs a noise source (or ot_ode=True)")
    step_noise = None if ot_ode else noise

    x = x1
    first_x0_hat = x1
    pairs = list(itertools.pairwise(steps))[::-1]
    for index, (prev, n) in enumerate(pairs, start=1):
        x0_hat = denoise(x, n, cond)
        if index == 1:
            first_x0_hat = x0_hat
        x = posterior_step(x, x0_hat, n, prev, schedule, step_noise)
        if mask is not None:
            known = x1 if step_noise is None else x1 + float(schedule.std_sb[prev]) * step_noise(x1)
            # (1 - mask) * known + mask * x, with x (new this step) scaled in place.
            x.mul_(mask).add_((1 - mask) * known)
        if callback is not None:
            callback(StepInfo(index, len(pairs), n, prev, x, x0_hat))
    if detail == 1.0:
        return x
    mixed = detail * x + (1.0 - detail) * first_x0_hat
    return mixed if mask is None else (1 - mask) * x + mask * mixed
