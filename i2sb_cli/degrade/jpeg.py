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
`estimate_quality` reads the quality back from a file's own quantisation tables.
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
def _dct_matrix() -> Tensor:
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
    dct = _dct_matrix().to(plane.device)
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
