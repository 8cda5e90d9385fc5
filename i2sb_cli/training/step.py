"""Training a bridge network (Algorithm 1 of the paper; docs/spec.md section 2).

`train` is the loop: draw a batch of (x0, x1) pairs, a step n per pair, place x_n on the
bridge (eq. 11), regress the network onto (x_n - x0) / std_fwd[n], and keep an exponential
moving average (EMA) of the weights, which is what sampling uses. Data, checkpoints, logging,
stopping and the distributed wrapper come in from outside, so the loop knows nothing of files
or processes.

Everything random in step k comes from generators seeded with `step_seed(seed, rank, k)`: the
crops, the bridge steps, the noise, and the global torch RNG (dropout). A run stopped after step
k and resumed from the state saved there therefore draws exactly what an uninterrupted run
would, with no generator state to save, whatever the number of processes before and after.
"""

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..bridge.objective import (
    bridge_loss,
    bridge_sample,
    bridge_target,
    input_error_weights,
    time_input,
)
from ..bridge.schedule import Schedule

# batch_source(generator) -> (x0, x1, mask or None, cond or None), all [B, C, H, W] on the
# training device; cond is the network's cond input (models/condition.network_cond).
BatchSource = Callable[[torch.Generator], tuple[Tensor, Tensor, Tensor | None, Tensor | None]]


LOSS_WEIGHTS = ("uniform", "input-error")


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    ot_ode_share: float = 0.0
    """The share of examples placed on the OT-ODE bridge (no noise, eq. 11 with std_sb = 0);
    the rest on the stochastic one. 0 or 1 trains for one sampler, a share between for both."""
    bf16: bool = False
    """Run the forward pass under bfloat16 autocast (fast on CUDA; the loss stays float32)."""
    loss_weight: str = "uniform"
    """How each picture counts in the loss: "uniform", or "input-error" (objective.py's
    input_error_weights)."""


@dataclass(frozen=True)
class TrainLog:
    step: int
    loss: float
    """Mean loss over the steps since the previous log."""
    lr: float
    grad_norm: float
    """Mean gradient norm before clipping over the same steps."""
    seconds: float
    """Since this call of `train` began."""


class EMA:
    """Exponential moving average of parameters, with the official warm-up
    min(decay, (1 + k) / (10 + k)) so that early averages are not dominated by the init."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for key, value in net.state_dict().items():
            self.shadow[key].lerp_(value.float(), 1 - decay)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}


@dataclass
class TrainState:
    """Everything that changes during training; `step` counts the optimiser steps done."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    step: int = 0


def new_state(net: nn.Module, settings: TrainSettings) -> TrainState:
    """A fresh state for `net`: AdamW (the paper's optimiser) and an EMA of its weights."""
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    return TrainState(net, optimizer, EMA(net, settings.ema_decay))


def step_seed(seed: int, rank: int, step: int) -> int:
    """The 63-bit seed of everything random in one step of one process."""
    digest = hashlib.sha256(f"i2sb-train:{seed}:{rank}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass(frozen=True)
class Hooks:
    """What the loop calls besides the maths. `periodic` pairs (every, fn): fn(state) runs after
    each step whose count is a multiple of `every`. `should_stop` is asked after every step; when
    it says yes the loop returns early (it must answer alike in every process)."""

    on_log: Callable[[TrainLog], None] | None = None
    log_every: int = 50
    periodic: Sequence[tuple[int, Callable[[TrainState], None]]] = field(default_factory=tuple)
    should_stop: Callable[[], bool] | None = None


def train(
    state: TrainState,
    schedule: Schedule,
    batch_source: BatchSource,
    settings: TrainSettings,
    *,
    seed: int,
    rank: int = 0,
    model: nn.Module | None = None,
    hooks: Hooks | None = None,
) -> bool:
    """Train from `state.step` up to `settings.steps`, updating `state` in place.

    `model` is what the forward pass calls (a DistributedDataParallel wrapper of `state.net`),
    by default the net itself. Returns True when all steps are done, False when stopped early.
    """
    hooks = hooks or Hooks()
    net = state.net
    model = model or net
    device = next(net.parameters()).device
    net.train()
    started = time.monotonic()
    running = torch.zeros(2, device=device)  # sums of loss and grad norm since the last log
    window = 0
    while state.step < settings.steps:
        lr = learning_rate(state.step, settings)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        step_seed_value = step_seed(seed, rank, state.step)
        # Dropout and any other module randomness draw from the global generator.
        torch.manual_seed(step_seed_value)
        generator = torch.Generator().manual_seed(step_seed_value)
        noise_source = generator
        if device.type != "cpu":
            noise_source = torch.Generator(device).manual_seed(step_seed_value)

        x0, x1, mask, cond = batch_source(generator)
        n = torch.randint(0, schedule.interval, (x0.shape[0],), generator=generator)
        eps = None
        if settings.ot_ode_share < 1:
            eps = torch.randn(x0.shape, generator=noise_source, device=device)
            if settings.ot_ode_share > 0:
                # Per example: the network tells the two bridges apart by the noise in x_n.
                noisy = torch.rand(x0.shape[0], generator=generator) >= settings.ot_ode_share
                eps = eps * noisy.to(device, eps.dtype).view(-1, *([1] * (eps.dim() - 1)))
        x_n = bridge_sample(x0, x1, n, schedule, eps)  # eq. 11: x_n ~ q(x_n | x0, x1)
        target = bridge_target(x_n, x0, n, schedule)  # (x_n - x0) / std_fwd[n]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            output = model(x_n, time_input(n, schedule, device), cond)
        weights = input_error_weights(x0, x1) if settings.loss_weight == "input-error" else None
        loss = bridge_loss(output.float(), target, mask, weights)

        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
        state.optimizer.step()
        state.ema.update(net)
        state.step += 1
        window += 1
        running += torch.stack([loss.detach(), grad_norm.detach().float()])

        if hooks.on_log is not None and (
            state.step % hooks.log_every == 0 or state.step == settings.steps
        ):
            loss_sum, norm_sum = running.tolist()
            elapsed = time.monotonic() - started
            hooks.on_log(TrainLog(state.step, loss_sum / window, lr, norm_sum / window, elapsed))
            running.zero_()
            window = 0
        for every, callback in hooks.periodic:
            if every and state.step % every == 0:
                callback(state)
        if hooks.should_stop is not None and hooks.should_stop():
            break
    net.eval()
    return state.step >= settings.steps
