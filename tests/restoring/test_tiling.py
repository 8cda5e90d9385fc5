"""Tiled network calls: tiled and untiled denoisers agree away from tile edges, without seams."""

import itertools

import pytest
import torch
from torch import Tensor, nn

from i2sb_cli.errors import UsageError
from i2sb_cli.restoring.tiling import pad_to_multiple, tile_spans, tiled


def _conv_stack(layers: int = 3, seed: int = 0) -> nn.Module:
    """A fixed random 5x5 conv stack with zero padding: translation-equivariant with receptive
    radius 2 * layers, like a network without global statistics."""
    torch.manual_seed(seed)
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks.append(nn.Conv2d(3, 3, 5, padding=2))
        if i < layers - 1:
            blocks.append(nn.Tanh())
    return nn.Sequential(*blocks).eval()


def _edge_rows(length: int, tile: int, overlap: int, radius: int) -> Tensor:
    """True for positions within `radius` of a tile edge that is not the picture's border."""
    near = torch.zeros(length, dtype=torch.bool)
    for start, end in tile_spans(length, tile, overlap):
        if start > 0:
            near[start : start + radius] = True
        if end < length:
            near[max(end - radius, 0) : end] = True
    return near


def test_equivariant_denoiser_matches_untiled_away_from_tile_edges() -> None:
    net, radius = _conv_stack(), 6
    x = torch.randn(2, 3, 70, 93)
    cond = torch.randn_like(x)

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        assert c is not None
        return net(x_t + c)

    with torch.no_grad():
        full = denoise(x, 5, cond)
        tile, overlap = 32, 12
        out = tiled(denoise, tile=tile, overlap=overlap)(x, 5, cond)

    near = _edge_rows(70, tile, overlap, radius)[:, None] | _edge_rows(93, tile, overlap, radius)
    diff = (out - full).abs()
    assert (~near).any()
    assert diff[..., ~near].max() < 1e-5
    # Near tile edges the tiles disagree, but the blend keeps the disagreement small.
    assert diff.max() < 0.2 * full.abs().max()


def test_pointwise_denoiser_is_exact_and_seamless() -> None:
    ys, xs = torch.meshgrid(torch.linspace(0, 3, 75), torch.linspace(0, 4, 101), indexing="ij")
    smooth = torch.stack([torch.sin(ys + xs), torch.cos(ys - xs), torch.sin(2 * ys)])[None]

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        return 0.5 * x_t

    out = tiled(denoise, tile=24, overlap=8)(smooth, 1, None)
    full = denoise(smooth, 1, None)
    torch.testing.assert_close(out, full, rtol=0, atol=1e-6)
    for dim in (-1, -2):
        jumps = out.diff(dim=dim).abs().max()
        assert jumps <= full.diff(dim=dim).abs().max() + 1e-6


def test_tile_dependent_predictions_blend_without_hard_seams() -> None:
    # A net with a global statistic (here: the tile mean) predicts a different constant on each
    # tile; the smooth weights must spread each step over the overlap instead of a hard seam.
    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        return x_t.mean(dim=(-2, -1), keepdim=True).expand_as(x_t)

    x = torch.linspace(-1, 1, 96)[None, None, None, :].expand(1, 3, 40, 96).contiguous()
    overlap = 16
    out = tiled(denoise, tile=32, overlap=overlap)(x, 0, None)
    step_between_tiles = 2 * (32 - overlap) / 95  # tile means differ by one stride of the ramp
    assert out.diff(dim=-1).abs().max() < step_between_tiles * 3.2 / overlap
    assert out.diff(dim=-2).abs().max() < 1e-6


def test_tiles_never_exceed_the_tile_and_cover_non_multiple_sizes() -> None:
    shapes: list[tuple[int, ...]] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        shapes.append(tuple(x_t.shape))
        return x_t * 2

    x = torch.randn(1, 3, 50, 77)
    out = tiled(denoise, tile=32, overlap=8, multiple=8)(x, 3, None)
    torch.testing.assert_close(out, 2 * x)
    # The picture is tiled as it is padded to the grid, 56 x 80.
    assert len(shapes) == len(tile_spans(56, 32, 8, 8)) * len(tile_spans(80, 32, 8, 8))
    assert all(s == (1, 3, 32, 32) for s in shapes)


def test_tiles_start_on_the_grid_so_a_shift_variant_net_gives_the_whole_picture() -> None:
    # A stand-in for a patch-folding, downsampling net: what it does to a pixel depends on
    # the pixel's place in its cell of 8 counted from the corner of what it is given.
    def phase_net(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        rows = torch.arange(x_t.shape[-2])[:, None] % 8
        cols = torch.arange(x_t.shape[-1])[None, :] % 8
        return x_t * (1 + rows + 10 * cols)

    x = torch.randn(1, 3, 101, 150)
    whole = pad_to_multiple(phase_net, 8)(x, 0, None)
    out = tiled(phase_net, tile=48, overlap=12, multiple=8)(x, 0, None)
    torch.testing.assert_close(out, whole)


def test_sides_shorter_than_a_tile_are_padded_to_the_multiple() -> None:
    shapes: list[tuple[int, ...]] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        shapes.append(tuple(x_t.shape))
        return -x_t

    x = torch.randn(1, 3, 20, 70)
    out = tiled(denoise, tile=32, overlap=4, multiple=8)(x, 0, None)
    torch.testing.assert_close(out, -x)
    assert shapes and all(s == (1, 3, 24, 32) for s in shapes)


def test_picture_that_fits_runs_in_one_call() -> None:
    calls: list[tuple[int, ...]] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        calls.append(tuple(x_t.shape))
        return x_t + n

    x = torch.randn(2, 3, 32, 17)
    out = tiled(denoise, tile=32, overlap=8)(x, 4, None)
    assert calls == [(2, 3, 32, 17)]
    torch.testing.assert_close(out, x + 4)


def test_cond_is_cut_like_x_t() -> None:
    x = torch.randn(1, 3, 45, 60)
    cond = 3 * x + 1
    seen: list[int] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        assert c is not None and c.shape == x_t.shape
        torch.testing.assert_close(c, 3 * x_t + 1)
        seen.append(n)
        return c

    out = tiled(denoise, tile=16, overlap=5)(x, 7, cond)
    torch.testing.assert_close(out, cond)
    assert len(seen) > 1 and set(seen) == {7}


def test_a_side_just_over_the_tile_gets_two_tiles_of_about_half() -> None:
    assert tile_spans(520, 512, 64) == [(0, 292), (228, 520)]
    assert tile_spans(520, 512, 64, 8) == [(0, 296), (224, 520)]
    assert tile_spans(512, 512, 64, 8) == [(0, 512)]
    assert tile_spans(33, 32, 0) == [(0, 17), (16, 33)]


@pytest.mark.parametrize(("tile", "overlap", "multiple"), [
    (64, 0, 1), (64, 5, 8), (64, 16, 16), (96, 24, 8), (96, 5, 1), (512, 64, 8), (512, 64, 16),
])  # fmt: skip
def test_tile_plan_is_the_fewest_equal_tiles_that_cover_with_the_overlap(
    tile: int, overlap: int, multiple: int
) -> None:
    on_grid = -(-overlap // multiple) * multiple
    for length in [*range(1, 3 * tile, 7), tile, tile + 1, 2 * tile - overlap + 1, 1100]:
        if length > tile:
            length = -(-length // multiple) * multiple  # the caller pads it to the grid
        spans = tile_spans(length, tile, overlap, multiple)
        sizes = {end - start for start, end in spans}
        assert len(sizes) == 1
        size = sizes.pop()
        assert spans[0][0] == 0 and spans[-1][1] == length
        if length <= tile:
            assert spans == [(0, length)]
            continue
        assert size <= tile and size % multiple == 0
        assert all(start % multiple == 0 for start, _ in spans)
        # Fewest: one tile fewer, even of the full tile size, could not cover the side with
        # overlaps of whole grid cells.
        count = len(spans)
        assert (count - 1) * tile - (count - 2) * on_grid < length
        for (start, end), (next_start, _) in itertools.pairwise(spans):
            assert start < next_start and end - next_start >= overlap


def test_a_picture_just_over_the_tile_runs_whole_and_a_larger_one_on_balanced_tiles() -> None:
    shapes: list[tuple[int, ...]] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        shapes.append(tuple(x_t.shape))
        return x_t * 3

    net = tiled(denoise, tile=128, overlap=16, multiple=8)
    x = torch.randn(1, 3, 130, 136)  # 1.08 tiles' worth of pixels: one call, padded to 8
    torch.testing.assert_close(net(x, 0, None), 3 * x)
    assert shapes == [(1, 3, 136, 136)]
    shapes.clear()
    x = torch.randn(1, 3, 160, 136)  # 1.33 tiles' worth: four balanced tiles
    torch.testing.assert_close(net(x, 0, None), 3 * x)
    assert shapes == [(1, 3, 88, 80)] * 4
    shapes.clear()
    strip = torch.randn(1, 3, 16, 1200)  # long but small: one call
    torch.testing.assert_close(net(strip, 0, None), 3 * strip)
    assert shapes == [(1, 3, 16, 1200)]


@pytest.mark.parametrize(("tile", "overlap", "multiple", "option"), [
    (0, 0, 1, "--tile"),
    (30, 4, 8, "--tile"),
    (32, 32, 8, "--tile-overlap"),
    (32, -1, 8, "--tile-overlap"),
])  # fmt: skip
def test_bad_tile_options_are_usage_errors(
    tile: int, overlap: int, multiple: int, option: str
) -> None:
    with pytest.raises(UsageError, match=option):
        tiled(lambda x, n, c: x, tile=tile, overlap=overlap, multiple=multiple)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (13, 9), (16, 16)])
def test_pad_to_multiple_pads_and_crops_back(size: tuple[int, int]) -> None:
    seen: list[tuple[int, ...]] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        seen.append(tuple(x_t.shape))
        assert c is not None and c.shape == x_t.shape
        return x_t - c

    x = torch.randn(1, 3, *size)
    cond = torch.randn_like(x)
    out = pad_to_multiple(denoise, 8)(x, 0, cond)
    assert seen[0][-2] % 8 == 0 and seen[0][-1] % 8 == 0
    assert seen[0][-2] - size[0] < 8 and seen[0][-1] - size[1] < 8
    torch.testing.assert_close(out, x - cond)


def test_pad_to_multiple_reflects_or_repeats_at_the_bottom_right() -> None:
    seen: list[Tensor] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        seen.append(x_t[0, 0])
        return x_t

    pad_to_multiple(denoise, 4)(torch.arange(9.0).reshape(1, 1, 3, 3), 0, None)
    assert seen[-1].tolist() == [
        [0.0, 1.0, 2.0, 1.0],
        [3.0, 4.0, 5.0, 4.0],
        [6.0, 7.0, 8.0, 7.0],
        [3.0, 4.0, 5.0, 4.0],
    ]
    # Two rows cannot reflect two more: the last row is repeated instead.
    pad_to_multiple(denoise, 4)(torch.arange(6.0).reshape(1, 1, 2, 3), 0, None)
    assert seen[-1].tolist() == [
        [0.0, 1.0, 2.0, 1.0],
        [3.0, 4.0, 5.0, 4.0],
        [3.0, 4.0, 5.0, 4.0],
        [3.0, 4.0, 5.0, 4.0],
    ]


@pytest.mark.parametrize("tile_batch", [2, 3, 100])
def test_batched_tiles_give_the_one_at_a_time_result_in_fewer_calls(tile_batch: int) -> None:
    net = _conv_stack()
    x = torch.randn(2, 3, 70, 93)
    cond = torch.randn_like(x)
    calls: list[int] = []

    def denoise(x_t: Tensor, n: int, c: Tensor | None) -> Tensor:
        assert c is not None and c.shape == x_t.shape
        calls.append(x_t.shape[0])
        return net(x_t + c) * (n + 1)

    with torch.no_grad():
        single = tiled(denoise, tile=32, overlap=12)(x, 5, cond)
        tiles = len(calls)
        calls.clear()
        batched = tiled(denoise, tile=32, overlap=12, tile_batch=tile_batch)(x, 5, cond)
    assert tiles == len(tile_spans(70, 32, 12)) * len(tile_spans(93, 32, 12))
    assert len(calls) == -(-tiles // tile_batch) and sum(calls) == 2 * tiles
    assert torch.allclose(batched, single, atol=1e-6)


def test_tile_batch_below_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--tile-batch"):
        tiled(lambda x, n, c: x, tile=32, overlap=8, tile_batch=0)


def test_a_side_off_the_grid_and_an_overlap_filling_the_tile_are_refused() -> None:
    with pytest.raises(ValueError, match="grid of 8"):
        tile_spans(70, 32, 8, 8)
    with pytest.raises(UsageError, match="rounded up to a multiple of 16"):
        tiled(lambda x, n, c: x, tile=32, overlap=17, multiple=16)
