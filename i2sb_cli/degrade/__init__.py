"""Degradation operators: pure tensor functions on [B, C, H, W] pictures in [-1, 1]."""

from .sr import (
    bicubic_downsample4,
    nearest_upsample4,
    pool_downsample4,
    sr4x_bicubic,
    sr4x_pool,
)

__all__ = [
    "bicubic_downsample4",
    "nearest_upsample4",
    "pool_downsample4",
    "sr4x_bicubic",
    "sr4x_pool",
]
