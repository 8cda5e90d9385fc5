"""Building blocks of the ADM UNet (guided-diffusion), parameter-for-parameter.

Submodule names and indices are those of guided-diffusion (docs/spec.md section 5), because
they become the state-dict keys of official checkpoints: a ResBlock holds `in_layers.{0,2}`,
`emb_layers.1`, `out_layers.{0,3}` and `skip_connection`; an attention block holds `norm`,
`qkv` and `proj_out`. Moving or adding a parameterised module here breaks checkpoint loading.
"""

import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

M = TypeVar("M", bound=nn.Module)

GROUPS = 32


class GroupNorm32(nn.GroupNorm):
    """GroupNorm over 32 groups, computed in float32 whatever the input dtype (as ADM does)."""

    def __init__(self, channels: int) -> None:
        super().__init__(GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B] -> [B, dim]: [cos, sin] of t * exp(-ln(max_period) k / half)."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:  # odd widths get a zero column, as in guided-diffusion
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Downsample(nn.Module):
    """Halve H and W: a stride-2 3x3 conv (`op`), or parameter-free 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour repetition, then an optional 3x3 conv (`conv`)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class ResBlock(nn.Module):
    """Residual block conditioned on the time embedding, optionally resampling (up or down).

    The resampling sits between the first norm/SiLU and the first conv (and on the skip path),
    so an up/down block carries no parameters beyond a plain one (spec section 5).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        *,
        dropout: float,
        use_scale_shift_norm: bool,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        if up:
            self.resample: nn.Module = Upsample(channels, use_conv=False)
        elif down:
            self.resample = Downsample(channels, use_conv=False)
        else:
            self.resample = nn.Identity()
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W], emb: [B, E]
        h = self.in_layers[:-1](x)  # norm, SiLU
        h = self.in_layers[-1](self.resample(h))  # [B, C_out, H', W']
        x = self.resample(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]  # [B, 2*C_out or C_out, 1, 1]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h  # [B, C_out, H', W']


def zeroed(module: M) -> M:
    """`module` with its parameters set to zero, as ADM initialises the last layer of each
    residual branch and of the network: every block starts as the identity and the untrained
    network outputs zero, so the bridge's first prediction of x0 is x_t itself."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions, with ADM's legacy QKV head layout."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = GroupNorm32(channels)
        # 1x1 Conv1d rather than Linear: official checkpoints store [3C, C, 1] weights.
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W]
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)  # [B, C, T]
        qkv = self.qkv(self.norm(x))  # [B, 3C, T]
        h = self.proj_out(legacy_attention(qkv, self.num_heads))  # [B, C, T]
        return (x + h).reshape(b, c, *spatial)


def legacy_attention(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, 3*H*ch, T] -> [B, H*ch, T], channels grouped heads first, then q, k, v per head.

    ADM scales q and k each by ch^-1/4; their product carries ch^-1/2, which is exactly the
    default scale of scaled_dot_product_attention, so the fused kernel computes the same thing.
    """
    b, width, length = qkv.shape
    ch = width // (3 * num_heads)
    q, k, v = qkv.reshape(b * num_heads, 3 * ch, length).split(ch, dim=1)  # each [BH, ch, T]
    a = F.scaled_dot_product_attention(q.mT, k.mT, v.mT)  # [BH, T, ch]
    return a.mT.reshape(b, num_heads * ch, length)


class EmbedSequential(nn.Sequential):
    """A sequence of blocks in which the ResBlocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x
