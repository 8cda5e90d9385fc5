"""Network calls on pictures larger than the network's tile (docs/design.md decision 3).

Tiling wraps the `denoise` callable, never the sampler: the bridge state and its noise stay
whole-picture tensors, and only each network evaluation is cut into overlapping tiles whose
x0_hat predictions are blended back with smooth weights. Seams from mismatched noise cannot
occur, and memory is bounded by one tile. The result still depends on the tile size: through
the blending near tile edges, and through what each tile's network call sees (its context, its
GroupNorm statistics); tiles start on the network's grid so that patching and downsampling
are not one more difference (tile_spans).
"""

import itertools
import math
from collections.abc import Iterator
from types import EllipsisType

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bridge.sampler import Denoise
from ..errors import UsageError

WHOLE_SLACK = 1.25
"""A picture of up to this many times a tile's pixels runs whole: the memory of one tile
(convolutions scale with pixels) give or take a quarter, and no overlap to pay for. A 520x520
picture with tile 512 costs its own 1.03 tiles, not four tiles of 296."""


def pad_to_multiple(denoise: Denoise, multiple: int) -> Denoise:
    """Wrap `denoise` so that it only ever sees heights and widths divisible by `multiple`.

    x_t (and cond) are padded on the bottom and right by reflection, or by repeating the last
    row/column where the picture is too small to reflect, and the result is cropped back.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")

    def padded(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        height, width = x_t.shape[-2:]
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h == 0 and pad_w == 0:
            return denoise(x_t, n, cond)
        x_t = _pad_bottom_right(x_t, pad_h, pad_w)
        if cond is not None:
            cond = _pad_bottom_right(cond, pad_h, pad_w)
        return denoise(x_t, n, cond)[..., :height, :width]

    return padded


def tiled(
    denoise: Denoise, *, tile: int, overlap: int, multiple: int = 1, tile_batch: int = 1
) -> Denoise:
    """Wrap `denoise` so that each call runs on tiles of at most tile x tile pixels.

    A picture that fits in one tile, or whose pixels are at most `WHOLE_SLACK` tiles' worth, is
    evaluated in one call. A larger one is covered, side by
    side, by the fewest equal tiles of at most `tile` pixels that overlap by at least `overlap`
    (`tile_spans`): a picture just over the tile costs its pixels and overlaps, not four tiles.
    Each tile's x0_hat is weighted by a raised-cosine ramp that falls towards 0 across each
    stretch shared with a neighbour (never at the picture's own border) and is 1 elsewhere; the
    weighted sum is divided by the weight sum.
    Every tile of a picture has the same size, so `tile_batch` of them at a time are stacked
    along the batch axis into one network call (fewer, larger calls: faster where the device
    is not saturated by one tile; memory grows with it). Sides shorter than a tile are padded
    up to `multiple`.
    """
    if tile <= 0 or tile % multiple != 0:
        raise UsageError(f"--tile must be a positive multiple of {multiple}, got {tile}")
    if not 0 <= overlap < tile:
        raise UsageError(
            f"--tile-overlap must be at least 0 and less than --tile ({tile}), got {overlap}"
        )
    if tile_batch < 1:
        raise UsageError(f"--tile-batch must be at least 1, got {tile_batch}")
    if -(-overlap // multiple) * multiple >= tile:
        # Tiles start on the grid of `multiple` pixels (tile_spans), so overlaps are whole cells.
        raise UsageError(
            f"--tile-overlap {overlap}, rounded up to a multiple of {multiple}, must stay below "
            f"--tile ({tile})"
        )
    net = pad_to_multiple(denoise, multiple) if multiple > 1 else denoise

    def blended(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        height, width = x_t.shape[-2:]
        if cond is not None and cond.shape[-2:] != x_t.shape[-2:]:
            raise ValueError(f"cond is {tuple(cond.shape)} but x_t is {tuple(x_t.shape)}")
        if (height <= tile and width <= tile) or height * width <= WHOLE_SLACK * tile * tile:
            return net(x_t, n, cond)
        # Tiles of the picture padded as a whole call pads it (pad_to_multiple), starting on
        # its grid of `multiple` pixels: each pixel then falls in the same patch and the same
        # cell of every downsampling as in one call on the whole picture (tile_spans).
        pad_h, pad_w = -height % multiple, -width % multiple
        x_t = _pad_bottom_right(x_t, pad_h, pad_w)
        if cond is not None:
            cond = _pad_bottom_right(cond, pad_h, pad_w)
        tiles = _evaluate_tiles(net, x_t, n, cond, (tile, overlap, multiple), tile_batch)
        first = next(tiles)
        out = first[1]
        # Accumulate in float32 so that half-precision nets blend without rounding.
        total = out.new_zeros((*out.shape[:-2], *x_t.shape[-2:]), dtype=torch.float32)
        weight_sum = out.new_zeros(x_t.shape[-2:], dtype=torch.float32)
        for window, out, weight in itertools.chain([first], tiles):
            total[window] += out.float() * weight
            weight_sum[window[-2:]] += weight
        return (total / weight_sum)[..., :height, :width].to(first[1].dtype)

    return blended


def _evaluate_tiles(
    net: Denoise,
    x_t: Tensor,
    n: int,
    cond: Tensor | None,
    plan: tuple[int, int, int],
    tile_batch: int,
) -> Iterator[tuple[tuple[EllipsisType, slice, slice], Tensor, Tensor]]:
    """Yield (window, x0_hat, 2-D blending weights), running the net lazily on `tile_batch`
    tiles a call."""
    height, width = x_t.shape[-2:]
    tile, overlap, multiple = plan
    tiles = [
        ((..., slice(top, bottom), slice(left, right)), w_rows[:, None] * w_cols)
        for top, bottom, w_rows in blend_spans(height, tile, overlap, multiple)
        for left, right, w_cols in blend_spans(width, tile, overlap, multiple)
    ]
    for first in range(0, len(tiles), tile_batch):
        group = tiles[first : first + tile_batch]
        stacked_x = torch.cat([x_t[window] for window, _ in group])
        stacked_cond = None if cond is None else torch.cat([cond[window] for window, _ in group])
        outs = net(stacked_x, n, stacked_cond).split(x_t.shape[0])
        for (window, weight), out in zip(group, outs, strict=True):
            yield window, out, weight.to(out.device)


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """The (start, end) of each tile along a side of `length` pixels.

    A side that fits in one tile is one span, the whole side (padded up to `multiple` by the
    caller). A longer side gets the fewest tiles of at most `tile` pixels that cover it with at
    least `overlap` pixels shared by neighbours, all of one size: the smallest multiple of
    `multiple` that n tiles need, n s - (n - 1) overlap >= length. Starts are spread evenly, so
    every overlap is at least `overlap` and the first and last tiles touch the borders. A side
    of 520 with tile 512 and overlap 64 is two tiles of 296 (multiple 8), not two of 512.

    A longer side must be a multiple of `multiple` (the caller pads it): every start is then
    on that grid too, the spans being worked out in grid cells, so that each pixel falls in the
    same patch and downsampling cell as in one call on the whole picture (networks that fold
    pixels into patches and downsample are not shift-invariant). Measured with sr4x-p4 on two
    photos, 300 -> 1200 pixels, tile 512 against one call (`i2sb restore --tile 512` and
    `--tile 2048`, seed 0): with starts off the grid 1.8-2.1% of pixels differed by more than 2
    levels (at most 49), on it 1.3-1.6% (at most 19). The rest is each tile's own context and
    GroupNorm statistics.
    """
    if length <= tile:
        return [(0, length)]
    if length % multiple or tile % multiple:
        raise ValueError(
            f"a side of {length} split into tiles of {tile} is not on a grid of {multiple}"
        )
    cells, tile_cells = length // multiple, tile // multiple
    overlap_cells = -(-overlap // multiple)
    count = math.ceil((cells - overlap_cells) / (tile_cells - overlap_cells))
    size = math.ceil((cells + (count - 1) * overlap_cells) / count)  # at most tile_cells
    # Rounded even spacing: each stride is the floor or ceiling of (cells - size) / (count - 1),
    # which is at most size - overlap_cells because count tiles of `size` cover the side.
    starts = [round(i * (cells - size) / (count - 1)) for i in range(count)]
    return [(start * multiple, (start + size) * multiple) for start in starts]


def blend_spans(
    length: int, tile: int, overlap: int, multiple: int = 1, scale: int = 1
) -> list[tuple[int, int, Tensor]]:
    """(start, end, 1-D blending weights) of each tile along one side; with `scale`, the
    weights are for the tile's output `scale` times larger (an upscaler's), ramping over the
    shared stretch at that resolution."""
    spans = tile_spans(length, tile, overlap, multiple)
    weights = [torch.ones((end - start) * scale) for start, end in spans]
    # Each shared stretch gets a ramp on one tile and its mirror image on the other, over the
    # whole stretch (at least `overlap` pixels), so the two weights sum to 1 there; the
    # picture's own border keeps weight 1.
    for i, ((_, end), (start, _)) in enumerate(itertools.pairwise(spans)):
        shared = (end - start) * scale
        if shared == 0:  # no overlap asked, and none left by rounding
            continue
        ramp = _ramp(shared)
        weights[i][-shared:] *= ramp.flip(0)
        weights[i + 1][:shared] *= ramp
    return [(start, end, w) for (start, end), w in zip(spans, weights, strict=True)]


def _ramp(overlap: int) -> Tensor:
    """Raised-cosine weights rising from near 0 to near 1 over `overlap` pixels.

    Sampled at pixel centres, so no weight is exactly 0 (every pixel keeps a positive weight
    sum) and a ramp plus its mirror image sum to exactly 1 where two tiles overlap by `overlap`.
    """
    centres = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
    return (0.5 - 0.5 * torch.cos(math.pi * centres)).float()


def _pad_bottom_right(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    height, width = x.shape[-2:]
    # Reflection needs more pixels than it adds; tiny pictures repeat their last row/column.
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < width else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < height else "replicate")
    return x
