"""The paper's JPEG operators (`jpeg-5`, `jpeg-10`, any `jpeg-Q`) and a real JPEG round trip.

`jpeg_numerical` is the official numerical JPEG (docs/spec.md section 4, from DDRM-JPEG):
no entropy coding and no rounding of pixels; only the DCT coefficients are quantised.
  x -> [0, 255] floats; RGB -> YCbCr; chroma decimated [::2, ::2]; per 8x8 block subtract 128,
  orthonormal DCT-II, divide by the IJG table scaled for the quality, round half to even,
  multiply back, inverse DCT, add 128; chroma upsampled by 2x2 replication; YCbCr -> RGB;
  back to [-1, 1] without clamping (jpeg-5 spans about -2.7..2.4).
The colour matrix is the JFIF one rounded to 4 decimals, and its inverse the exact inverse of
that rounded matrix, as in the official code: the reference outputs (tests/golden/corruptions.npz)
were made with it, and the exact JFIF constants move them by up to 1.1e-4. Everything runs in
float64, so that no quantisation decision depends on the order of float32 operations, and
returns in the input's dtype.

Any size: the picture is extended beyond its bottom and right edges to a multiple of 16 (one
chroma block covers 16 x 16 pixels) by half-sample symmetric reflection, the rule the sr4x
operators use, and the result is cropped back. Multiples of 16 are untouched, so at 256 x 256
this is the official operator.

`jpeg_real` is what a user meets in practice: the picture rounded to 8 bits, written as a real
JPEG file by Pillow's libjpeg at a given quality (4:2:0 chroma, like the paper's), decoded.
`estimate_quality` reads the quality back from a file's own quantisation tables,
`blind_jpeg_quality` from the decoded pixels alone.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .sr import reflect_index

# The example tables of the JPEG standard (ITU-T T.81 Annex K) that the IJG library scales.
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)

# JFIF RGB -> YCbCr rounded to 4 decimals, as the official operator has it (offsets apart).
_RGB_TO_YCC = (
    (0.299, 0.587, 0.114),
    (-0.1687, -0.3313, 0.5),
    (0.5, -0.4187, -0.0813),
)

BLOCK = 8
_MACRO = 16  # one 8x8 chroma block spans 16x16 pixels after 2x decimation


def check_quality(quality: int) -> int:
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    return quality


def quantisation_tables(quality: int) -> tuple[Tensor, Tensor]:
    """The IJG luma and chroma tables for a quality 1..100 (float64 [8, 8]).

    Scale s = 5000 / q below 50, else 200 - 2 q; entries floor((s t + 50) / 100) clipped to
    [1, 255], as libjpeg's `jpeg_quality_scaling` and the official operator compute them.
    """
    check_quality(quality)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    tables = torch.tensor([LUMA_TABLE, CHROMA_TABLE], dtype=torch.float64)
    tables = torch.floor((scale * tables + 50) / 100).clamp(1, 255)
    return tables[0], tables[1]


@functools.lru_cache(maxsize=1)
def _libjpeg_tables() -> Tensor:
    """[100, 2, 8, 8]: the tables libjpeg writes for qualities 1..100. Unlike the official
    operator (`quantisation_tables`), libjpeg scales in integers: s = 5000 // q below 50."""
    base = torch.tensor([LUMA_TABLE, CHROMA_TABLE], dtype=torch.int64)
    scales = [5000 // q if q < 50 else 200 - 2 * q for q in range(1, 101)]
    return torch.stack([((s * base + 50) // 100).clamp(1, 255) for s in scales]).double()


def estimate_quality(tables: Sequence[Sequence[int]]) -> tuple[int, bool]:
    """The IJG quality 1..100 whose tables are nearest to a JPEG file's quantisation tables
    (natural order, luma first, as Pillow's `Image.quantization` gives them), and whether they
    match exactly (a file written by libjpeg, Pillow, OpenCV and much cameras' and editors'
    software at that quality). Other encoders' tables get the nearest quality by mean absolute
    difference, a fair guide to how hard the file was compressed."""
    if not tables or any(len(table) != BLOCK * BLOCK for table in tables):
        raise ValueError("JPEG quantisation tables hold 64 entries each")
    given = torch.tensor([list(table) for table in tables[:2]], dtype=torch.float64)
    candidates = _libjpeg_tables()[:, : len(given)]
    errors = (candidates - given.reshape(-1, BLOCK, BLOCK)).abs().mean(dim=(1, 2, 3))
    best = int(errors.argmin())
    return best + 1, bool(errors[best] == 0)


@functools.lru_cache(maxsize=1)
def dct_matrix() -> Tensor:
    """The orthonormal 8-point DCT-II matrix D (rows are frequencies): coefficients = D b D^T."""
    k = torch.arange(BLOCK, dtype=torch.float64)[:, None]
    n = torch.arange(BLOCK, dtype=torch.float64)[None, :]
    matrix = torch.cos(torch.pi * (2 * n + 1) * k / (2 * BLOCK)) * (2 / BLOCK) ** 0.5
    matrix[0] /= 2**0.5
    return matrix


def _quantise_blocks(plane: Tensor, table: Tensor) -> Tensor:
    """Round-trip [B, C, H, W] samples (H, W multiples of 8) through quantised block DCTs."""
    batch, channels, height, width = plane.shape
    blocks = (plane - 128).reshape(batch, channels, height // 8, 8, width // 8, 8)
    blocks = blocks.transpose(3, 4)  # [..., block row, block col, 8, 8]
    dct = dct_matrix().to(plane.device)
    coefficients = dct @ blocks @ dct.T
    # torch.round rounds half to even, as the official operator does.
    coefficients = torch.round(coefficients / table) * table
    blocks = dct.T @ coefficients @ dct
    return blocks.transpose(3, 4).reshape(batch, channels, height, width) + 128


def jpeg_numerical(x: Tensor, quality: int) -> Tensor:
    """The paper's `jpeg-<quality>` on [B, 3, H, W] in [-1, 1]; any H, W (see module notes)."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected a floating-point [B, 3, H, W] tensor, got {x.dtype} {x.shape}")
    luma_table, chroma_table = (t.to(x.device) for t in quantisation_tables(quality))
    height, width = x.shape[-2:]
    rows = reflect_index(torch.arange(-(-height // _MACRO) * _MACRO, device=x.device), height)
    cols = reflect_index(torch.arange(-(-width // _MACRO) * _MACRO, device=x.device), width)
    padded = x[..., rows, :][..., cols].to(torch.float64)

    to_ycc = torch.tensor(_RGB_TO_YCC, dtype=torch.float64, device=x.device)
    offset = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64, device=x.device)[:, None, None]
    ycc = torch.einsum("ij,bjhw->bihw", to_ycc, (padded + 1) / 2 * 255) + offset
    luma = _quantise_blocks(ycc[:, :1], luma_table)
    chroma = _quantise_blocks(ycc[:, 1:, ::2, ::2], chroma_table)
    chroma = chroma.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)

    decoded = torch.cat([luma, chroma], dim=1) - offset
    rgb = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_ycc), decoded)
    return (rgb / 255 * 2 - 1)[..., :height, :width].to(x.dtype)


def jpeg_real(x: Tensor, quality: int) -> Tensor:
    """A real JPEG round trip: 8-bit rounding, Pillow's encoder at `quality` with 4:2:0 chroma,
    then decoding; [B, 3, H, W] in [-1, 1] in and out, any size."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected a floating-point [B, 3, H, W] tensor, got {x.dtype} {x.shape}")
    check_quality(quality)
    levels = ((x.detach().cpu().double().clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8)
    decoded = []
    for picture in levels.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=quality, subsampling=2)
        with Image.open(buffer) as image:
            decoded.append(np.asarray(image.convert("RGB")))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return (out.to(torch.float64) / 255 * 2 - 1).to(dtype=x.dtype, device=x.device)


# Blind estimation of a decoded picture's JPEG quality from its luma DCT histograms: a quantised
# coefficient is a multiple of its step, so its histogram is periodic with that step (Fan & de
# Queiroz 2003, "Identification of bitmap compression history: JPEG detection and quantizer
# estimation", IEEE TIP 12(2)). The thresholds below were measured on Pillow and OpenCV JPEGs
# of textured and photographic pictures (80 to 741 pixels a side) at qualities 5..100, against
# never-compressed pictures and JPEGs resized by 0.5..2 or shifted off the 8x8 grid.
_MEASURED_POSITIONS = 27  # AC coefficients 1..27 in zigzag order; fewer leave 49/50, 74/75 tied
_MAX_STEP = 255  # the largest step of baseline (8-bit) tables
# By Cauchy-Schwarz a DCT basis row (unit norm, 8 entries) has L1 norm <= sqrt(8), so
# |coefficient| <= 8 * 128 for luma - 128 in [-128, 127].
_COEFFICIENT_LIMIT = 1024
_BIN_WIDTH = 0.25  # histogram resolution: blurs a step-1 lattice's score by sinc(0.25), ~10%
_MIN_BLOCKS = 64
_MIN_COUNT = 30  # coefficients a step's score must rest on
_CONFIDENT_SCORE = 0.3  # a step-2 position at quality 90 scores 0.3..0.5; no lattice, <= 0
_DIVISOR_RATIO = 0.8  # a multiple of the best-scoring step within this of its score wins
# Coefficients that reach only one or two multiples of a large step fix it to about 1%
# (quality 5's 120 reads as 121): a measured step within 2% of the table's agrees with it.
_STEP_TOLERANCE = 0.02
# Of the confident positions, the share the fitted table must agree with: a single compression
# agrees at >= 0.7 (a misread high frequency apart); resized, shifted and most doubly
# compressed pictures at about half.
_MIN_AGREEMENT = 0.7
# A single compression at quality <= 96 gives >= 0.21 (97: 0.08..0.9, 98: ~0.12); 3230 pictures
# never compressed, or resized or shifted after compression, stayed below 0.15 where the
# agreement test passed.
_MIN_EVIDENCE = 0.15


def _zigzag(count: int) -> tuple[Tensor, Tensor]:
    """Rows and columns of the AC coefficients 1..count in JPEG's zigzag order (ITU-T T.81
    figure A.6): anti-diagonals in turn, odd ones walked down-left, even ones up-right."""
    positions = sorted(
        ((row, col) for row in range(BLOCK) for col in range(BLOCK)),
        key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else -p[0]),
    )[1 : count + 1]
    return torch.tensor([p[0] for p in positions]), torch.tensor([p[1] for p in positions])


@functools.lru_cache(maxsize=1)
def _periodicity_kernels() -> tuple[Tensor, Tensor]:
    """[bins, steps] cos(2 pi c / q) for histogram bin centres c and candidate steps q, zero
    where |c| < q / 2, and the indicator of |c| >= q / 2. Coefficients that a step q rounds
    to zero say nothing about q (zero is a multiple of every step); left in, they would make
    every large step look right."""
    limit = round(_COEFFICIENT_LIMIT / _BIN_WIDTH)
    centres = torch.arange(-limit, limit + 1, dtype=torch.float64)[:, None] * _BIN_WIDTH
    steps = torch.arange(1, _MAX_STEP + 1, dtype=torch.float64)[None, :]
    counted = (centres.abs() >= steps / 2).double()
    return torch.cos(2 * torch.pi * centres / steps) * counted, counted


def _luma_blocks(pixels: Tensor) -> Tensor:
    """[N, 8, 8]: luma - 128 of the 8x8 blocks on the grid from (0, 0), as a JPEG encoder cuts
    them, leaving out blocks with a channel at 0 or 255 (the decoder's clipping moves them
    off the lattice). float32 holds 8-bit levels exactly and luma to ~1e-5, far below the
    histogram's bins, at a fraction of float64's time."""
    levels = pixels.float().clamp(-1, 1).add_(1).mul_(127.5).round_()
    height, width = (side // BLOCK * BLOCK for side in levels.shape[-2:])
    levels = levels[:, :height, :width]
    clipped = (levels.amin(dim=0) == 0) | (levels.amax(dim=0) == 255)
    clipped = clipped.reshape(height // 8, 8, width // 8, 8).any(dim=3).any(dim=1).flatten()
    # BT.601 full-range luma, JFIF's Y.
    weights = torch.tensor([0.299, 0.587, 0.114], device=pixels.device)
    luma = torch.tensordot(weights, levels, dims=1) - 128
    blocks = luma.reshape(height // 8, 8, width // 8, 8).transpose(1, 2).reshape(-1, 8, 8)
    return blocks[~clipped]


def _periodicity(coefficients: Tensor) -> tuple[Tensor, Tensor]:
    """For [K, N] coefficients, [K, steps] scores mean cos(2 pi c / q) over the coefficients
    that a step q does not round to zero, and [K, steps] how many those are. A lattice of step
    q scores near 1 at q and its divisors; a smooth histogram scores <= 0."""
    positions = coefficients.shape[0]
    limit = round(_COEFFICIENT_LIMIT / _BIN_WIDTH)
    bins = (coefficients / _BIN_WIDTH).round().long().clamp(-limit, limit) + limit
    bins = bins + torch.arange(positions, device=bins.device)[:, None] * (2 * limit + 1)
    histogram = torch.bincount(bins.flatten(), minlength=positions * (2 * limit + 1))
    histogram = histogram.reshape(positions, -1).double()
    cosines, counted = (k.to(coefficients.device) for k in _periodicity_kernels())
    counts = histogram @ counted
    return histogram @ cosines / counts.clamp(min=1), counts


def _measured_steps(scores: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """[K] steps and [K] their scores: per position the best-scoring step resting on enough
    coefficients, then its largest multiple scoring within _DIVISOR_RATIO of it (the true step's
    divisors score as high as it does)."""
    scores = torch.where(counts >= _MIN_COUNT, scores, -torch.inf)
    best, best_index = scores.max(dim=1)
    steps = torch.arange(1, _MAX_STEP + 1, device=scores.device)
    multiples = steps[None, :] % (best_index[:, None] + 1) == 0
    near = multiples & (scores >= _DIVISOR_RATIO * best[:, None])
    return torch.where(near, steps, 0).amax(dim=1), best


def blind_jpeg_quality(pixels: Tensor) -> int | None:
    """The IJG quality 1..100 a picture was JPEG-compressed at, from its pixels alone ([1, 3,
    H, W] or [3, H, W] in [-1, 1], 8-bit valued): for the first AC coefficients in zigzag order
    the quantisation step their histogram is periodic with, then the quality whose libjpeg
    luma table matches the most steps (ties: the least total |log ratio|, then the lowest
    quality). None when there is no JPEG grid to see: a picture never compressed, resized or
    cropped off the 8x8 grid after compression, flat, or under 64 blocks. A picture compressed
    twice on one grid gives the stronger compression's quality when the other was much
    lighter (75 then 95: 75; 90 then 50: 50), else often None."""
    if pixels.dim() == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.dim() != 3 or pixels.shape[0] != 3:
        raise ValueError(f"expected a [1, 3, H, W] or [3, H, W] picture, got {tuple(pixels.shape)}")
    blocks = _luma_blocks(pixels.detach())
    if len(blocks) < _MIN_BLOCKS:
        return None
    rows, cols = _zigzag(_MEASURED_POSITIONS)
    # Only the measured coefficients: row (u, v) of D kron D is the basis of D b D^T's (u, v).
    basis = torch.kron(dct_matrix(), dct_matrix())[rows * BLOCK + cols].float()
    coefficients = basis.to(blocks.device) @ blocks.reshape(-1, BLOCK * BLOCK).T
    scores, counts = _periodicity(coefficients)
    steps, best = _measured_steps(scores, counts)
    confident = best >= _CONFIDENT_SCORE
    if not confident.any():
        return None

    tables = _libjpeg_tables()[:, 0, rows, cols].to(blocks.device)  # [100, K]
    disagreements = (((tables - steps).abs() > _STEP_TOLERANCE * tables) & confident).sum(dim=1)
    log_error = ((tables.log() - steps.clamp(min=1).log()).abs() * confident).sum(dim=1)
    fitting = disagreements == disagreements.min()
    index = int(torch.where(fitting, log_error, torch.inf).argmin())
    if confident.sum() - disagreements[index] < _MIN_AGREEMENT * confident.sum():
        return None
    # The evidence: the fitted table's steps' scores over every measured position, weighted
    # by how many coefficients each rests on.
    table_index = tables[index].long()[:, None] - 1
    table_counts = counts.gather(1, table_index)
    weights = table_counts / table_counts.sum().clamp(min=1)
    evidence = (scores.gather(1, table_index) * weights).sum()
    return index + 1 if evidence >= _MIN_EVIDENCE else None
