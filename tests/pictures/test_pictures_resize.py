"""The final resize of a restored picture (--outscale)."""

import pytest
import torch

from i2sb_cli.errors import UsageError
from i2sb_cli.pictures.resize import MAX_OUTSCALE, check_outscale, resize_pixels, scaled_size


def test_scaled_size_rounds_and_keeps_a_pixel():
    assert scaled_size((6, 10), 1.5) == (9, 15)
    assert scaled_size((7, 7), 0.5) == (4, 4)  # 3.5 rounds to even
    assert scaled_size((1, 3), 0.1) == (1, 1)


@pytest.mark.parametrize("scale", [0.0, -2.0, MAX_OUTSCALE + 1, float("nan"), float("inf")])
def test_check_outscale_refuses_unusable_factors(scale):
    with pytest.raises(UsageError, match="--outscale"):
        check_outscale(scale)
    assert check_outscale(MAX_OUTSCALE) == MAX_OUTSCALE


def test_shrinking_averages_the_pixels_each_output_pixel_covers():
    pixels = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    half = resize_pixels(pixels, (4, 3))
    blocks = pixels.reshape(2, 3, 4, 2, 3, 2).mean(dim=(3, 5))
    assert torch.allclose(half, blocks, atol=1e-6)


def test_resizing_keeps_a_flat_picture_flat_and_its_range():
    flat = torch.full((1, 3, 5, 7), 0.25)
    for size in [(10, 14), (3, 4), (8, 20)]:
        resized = resize_pixels(flat, size)
        assert resized.shape == (1, 3, *size)
        assert torch.allclose(resized, flat.new_full(resized.shape, 0.25), atol=1e-6)
    edge = torch.zeros(1, 3, 4, 4)
    edge[..., 2:] = 1  # a hard step that Lanczos overshoots
    assert resize_pixels(edge * 3 - 1, (16, 16)).abs().max() <= 1
    assert resize_pixels(flat, (5, 7)) is flat
