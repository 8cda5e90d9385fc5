"""Turns a network into the sampler's `denoise(x_t, n, cond) -> x0_hat` (docs/spec.md section 2).

I2SB networks predict the scaled difference (x_n - x0) / std_fwd[n] from x_n and the float time
level noise_levels[n]; the clean-picture estimate follows as x0_hat = x_n - std_fwd[n] * output.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from ..bridge.schedule import Schedule

# net(x_t, t, cond) -> output, with t the float time levels, one per batch element. A torch
# module, an ONNX Runtime session or a TorchScript program can all stand behind it.
NetFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


class BridgeDenoiser:
    """denoise(x_t, n, cond) -> x0_hat for a network trained with the I2SB objective."""

    def __init__(self, net: NetFn, schedule: Schedule, *, clip_denoise: bool = False) -> None:
        self.net = net
        self.schedule = schedule
        self.clip_denoise = clip_denoise

    def __call__(self, x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        t = self.schedule.noise_levels[n].to(x_t.device).expand(x_t.shape[0])
        with torch.inference_mode():
            out = self.net(x_t, t, cond)
        x0_hat = x_t - float(self.schedule.std_fwd[n]) * out.to(x_t.dtype)
        return x0_hat.clamp(-1, 1) if self.clip_denoise else x0_hat
