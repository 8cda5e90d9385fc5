"""8-bit storage for a checkpoint's weights: half the bytes of float16, restored to float32 on load.

The bundle has a size budget (64 MB for every model together), and a 7.4 M-parameter network
is 14.9 MB in float16. Stored as int8 with one float32 scale per output channel (symmetric:
w ~ q * scale, q in -127..127, scale = max|w| of the channel / 127), its convolution and linear
weights take one byte each. The rounding error is at most half a step, 0.4% of the channel's
largest weight; what it costs a model's pictures is measured before it is bundled so (its card
says). Tensors of fewer than 2 dimensions (biases, norms) stay float16: they are few,
and a norm's gain is not spread around zero as weights are.

A stored int8 tensor `key` comes with `key + SCALE_SUFFIX`; `dequantize` folds the pairs back
into float32 tensors under the network's own names, so nothing past loading knows how a
checkpoint was stored.
"""

import torch
from torch import Tensor

SCALE_SUFFIX = ".int8_scale"
LEVELS = 127


def quantize_int8(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """`state` as stored in 8 bits: each floating-point tensor of 2 or more dimensions as int8
    plus its per-output-channel float32 scales, every other floating-point tensor as float16,
    the rest as it is."""
    stored: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            stored[key] = tensor
            continue
        if tensor.dim() < 2:
            stored[key] = tensor.half()
            continue
        rows = tensor.detach().float().reshape(tensor.shape[0], -1)
        peak = rows.abs().amax(1)
        # A channel of zeros gets scale 1 (its levels are 0 whatever the scale).
        scale = torch.where(peak > 0, peak / LEVELS, torch.ones_like(peak))
        levels = (rows / scale[:, None]).round().clamp(-LEVELS, LEVELS)
        stored[key] = levels.to(torch.int8).reshape(tensor.shape)
        stored[key + SCALE_SUFFIX] = scale
    return stored


def dequantize(stored: dict[str, Tensor]) -> dict[str, Tensor]:
    """The float32 state dict that `stored` (quantize_int8's, or a plain one) holds: every
    tensor as float32, as a network's parameters are. An int8
    tensor without its scale, or a scale without its tensor, is a ValueError."""
    scales = {k[: -len(SCALE_SUFFIX)]: v for k, v in stored.items() if k.endswith(SCALE_SUFFIX)}
    state: dict[str, Tensor] = {}
    for key, tensor in stored.items():
        if key.endswith(SCALE_SUFFIX):
            if key[: -len(SCALE_SUFFIX)] not in stored:
                raise ValueError(f"scale {key} has no int8 tensor")
            continue
        if tensor.dtype == torch.int8:
            scale = scales.get(key)
            if scale is None or scale.shape != tensor.shape[:1]:
                raise ValueError(f"int8 tensor {key} has no scale per output channel")
            view = (-1,) + (1,) * (tensor.dim() - 1)
            state[key] = tensor.float() * scale.float().view(view)
        else:
            state[key] = tensor.float()
    return state
