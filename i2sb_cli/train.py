"""Training a bridge network (Algorithm 1 of the paper; I2SB_SPEC.md section 2).

`train` is the loop: draw a batch of (x0, x1) pairs, a step n per pair, place x_n on the
bridge, regress the network onto (x_n - x0) / std_fwd[n], and keep an exponential moving
average (EMA) of the weights, which is what sampling uses. Data, checkpoints and logging come in
as callables so that the loop knows nothing of files.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .bridge.objective import bridge_loss, bridge_sample, bridge_target, time_input
from .bridge.schedule import Schedule

# batch_source(generator) -> (x0, x1, mask or None), all [B, C, H, W] on the training device.
BatchSource = Callable[[torch.Generator], tuple[Tensor, Tensor, Tensor | None]]


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    ot_ode: bool = False
    cond_x1: bool = False


@dataclass(frozen=True)
class TrainLog:
    step: int
    loss: float
    lr: float
    seconds: float


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


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(
    net: nn.Module,
    schedule: Schedule,
    batch_source: BatchSource,
    settings: TrainSettings,
    *,
    generator: torch.Generator,
    on_log: Callable[[TrainLog], None] | None = None,
    on_checkpoint: Callable[[int, EMA], None] | None = None,
    checkpoint_every: int = 0,
    log_every: int = 50,
) -> EMA:
    """Train `net` in place for settings.steps steps; returns the EMA of its weights."""
    device = next(net.parameters()).device
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    ema = EMA(net, settings.ema_decay)
    net.train()
    started, running = time.monotonic(), 0.0
    for step in range(settings.steps):
        lr = learning_rate(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x0, x1, mask = batch_source(generator)
        n = torch.randint(0, schedule.interval, (x0.shape[0],), generator=generator)
        eps = None if settings.ot_ode else torch.randn(x0.shape, generator=generator).to(device)
        x_n = bridge_sample(x0, x1, n, schedule, eps)
        target = bridge_target(x_n, x0, n, schedule)
        output = net(x_n, time_input(n, schedule, device), x1 if settings.cond_x1 else None)
        loss = bridge_loss(output, target, mask)

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
        optimizer.step()
        ema.update(net)

        running += loss.item()
        done = step + 1
        if on_log is not None and (done % log_every == 0 or done == settings.steps):
            count = log_every if done % log_every == 0 else done % log_every
            on_log(TrainLog(done, running / count, lr, time.monotonic() - started))
            running = 0.0
        if on_checkpoint is not None and checkpoint_every and done % checkpoint_every == 0:
            on_checkpoint(done, ema)
    net.eval()
    return ema
