"""The spread of several samples and its heat map (restoring/spread.py)."""

import pytest
import torch

from i2sb_cli.restoring.spread import heat_map, spread


def test_spread_is_the_per_pixel_deviation_in_levels() -> None:
    same = torch.rand(1, 3, 4, 5) * 2 - 1
    assert spread(same.expand(3, -1, -1, -1)).abs().max() == 0
    two = torch.stack([torch.full((3, 2, 2), -1.0), torch.full((3, 2, 2), 1.0)])
    # Two samples 255 levels apart deviate by half of that from their mean.
    assert torch.allclose(spread(two), torch.full((2, 2), 127.5))
    with pytest.raises(ValueError, match="K >= 2"):
        spread(same)


def test_heat_map_goes_from_black_to_bright() -> None:
    values = torch.tensor([[0.0, 5.0, 10.0]])
    image = heat_map(values)
    assert image.size == (3, 1) and image.mode == "RGB"
    dark, middle, bright = (sum(image.getpixel((x, 0))) for x in range(3))
    assert dark < middle < bright
    assert sum(heat_map(torch.zeros(2, 2)).getpixel((0, 0))) == sum(image.getpixel((0, 0)))
