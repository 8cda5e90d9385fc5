"""Keeping a cleaned JPEG near what its file says for certain.

A JPEG file stores each 8x8 block's DCT coefficients as whole multiples k of its quantisation
steps q: the photograph's own coefficient lay within [(k - 1/2) q, (k + 1/2) q] (the
quantisation constraint set of Zakhor, "Iterative procedures for reduction of blocking effects
in transform image coding", IEEE TCSVT 2(1), 1992). A network that cleans the file knows this
only as well as it learnt it: it smooths texture the file holds and, on a file that was nearly
clean, drifts further from the photograph than the file is. `keep_near_file` clips each of the
result's coefficients to within `slack` steps of the file's, slack below 1/2 trusting the file
more than the constraint alone does.

How much: measured on 4 validation photos (512x512 crops, real JPEGs at quality 15 / 40 / 75,
jpeg-q's results, PSNR / ST-LPIPS against the photo), slack 1/2 changes little; tighter slack
trades PSNR for texture at quality 15 and gains both at 40 and above (quality 75: 0.5 gives
35.67 dB / 0.023, 0.1 gives 35.63 / 0.0065 against the file's 35.13 / 0.0066), and at quality 15
a slack of 0.1 lets the blocks show again. So the slack follows the file's quality:
SLACK_AT_LOW_QUALITY up to LOW_QUALITY, SLACK_AT_HIGH_QUALITY from HIGH_QUALITY, straight in
between.

The coefficients are the stored picture's (before its EXIF orientation), in the JFIF YCbCr of
every decoder, each component at its own sampling: chroma is box-averaged to its coded grid
and its correction spread back bilinearly, as decoders upsample it. The file's own steps k are
read back from the decoded picture by the same transform (exact for luma up to the decoder's
rounding; for subsampled chroma, whose decoder interpolated it, nearly so).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from ..degrade.jpeg import dct_matrix
from ..pictures.decode import JpegCoding

LOW_QUALITY, SLACK_AT_LOW_QUALITY = 20, 0.3
HIGH_QUALITY, SLACK_AT_HIGH_QUALITY = 60, 0.1
BAND_ROWS = 256
"""Stored rows clipped at a time, a multiple of every component's block height (8 rows times its
decimation, at most 4): a 12-megapixel photo in one piece took 2.4 GB more memory."""

# JFIF's exact YCbCr (ITU-R BT.601 full range), as libjpeg decodes.
_RGB_TO_YCC = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=torch.float64,
)
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC)
_CHROMA_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)[:, None, None]

# EXIF orientations as turns of the last two dimensions, and the one that undoes each.
_TURNS = {
    2: lambda t: t.flip(-1),
    3: lambda t: t.flip(-2, -1),
    4: lambda t: t.flip(-2),
    5: lambda t: t.transpose(-2, -1),
    6: lambda t: t.rot90(-1, (-2, -1)),
    7: lambda t: t.rot90(2, (-2, -1)).transpose(-2, -1),
    8: lambda t: t.rot90(1, (-2, -1)),
}
_UNDO = {6: 8, 8: 6}


def slack_for_quality(quality: int) -> float:
    """The slack, in quantisation steps, for a file of IJG quality `quality` (module notes)."""
    share = (quality - LOW_QUALITY) / (HIGH_QUALITY - LOW_QUALITY)
    share = min(max(share, 0.0), 1.0)
    return SLACK_AT_LOW_QUALITY + share * (SLACK_AT_HIGH_QUALITY - SLACK_AT_LOW_QUALITY)


def keep_near_file(restored: Tensor, decoded: Tensor, coding: JpegCoding, slack: float) -> Tensor:
    """`restored` [K, 3, H, W] (in [-1, 1], upright) with each DCT coefficient clipped to within
    `slack` quantisation steps of the one the JPEG file coded; `decoded` [1, 3, H, W] is the
    file's decoded picture, upright; float32 out, unclamped. Worked in bands of BAND_ROWS
    stored rows, each with a margin of whole blocks that its chroma's interpolation reads."""
    if not 0 <= slack <= 0.5:
        raise ValueError(f"slack is between 0 and 1/2 of a step, got {slack}")
    if restored.shape[-2:] != decoded.shape[-2:]:
        raise ValueError(f"restored {tuple(restored.shape)} and decoded {tuple(decoded.shape)}")
    undo = _UNDO.get(coding.orientation, coding.orientation)
    stored, file = _turn(restored, undo), _turn(decoded, undo)
    steps = [torch.tensor(table, dtype=torch.float64).reshape(8, 8) for table in coding.tables]
    margin = 8 * max(rows for rows, _ in coding.subsampling)
    kept = torch.empty(stored.shape, dtype=torch.float32)
    height = stored.shape[-2]
    for top in range(0, height, BAND_ROWS):
        start, stop = max(top - margin, 0), min(top + BAND_ROWS + margin, height)
        band = _keep_band(
            stored[..., start:stop, :], file[..., start:stop, :], steps, coding.subsampling, slack
        )
        rows = min(BAND_ROWS, height - top)
        kept[..., top : top + rows, :] = band[..., top - start : top - start + rows, :]
    return _turn(kept, coding.orientation)


def _keep_band(
    stored: Tensor,
    file: Tensor,
    steps: list[Tensor],
    subsampling: tuple[tuple[int, int], ...],
    slack: float,
) -> Tensor:
    """keep_near_file on rows of the stored picture that start on a block row of every
    component; `steps` [8, 8] and `subsampling` per component."""
    ours, theirs = _ycc(stored.double()), _ycc(file.double())
    for component, (table, factors) in enumerate(zip(steps, subsampling, strict=True)):
        plane = _decimate(ours[:, component], factors)
        target = _block_dct(_decimate(theirs[:, component], factors) - 128)
        coefficients = _block_dct(plane - 128)
        k = torch.round(target / table)
        clipped = coefficients.clamp((k - slack) * table, (k + slack) * table)
        change = _block_idct(clipped - coefficients, plane.shape[-2:])
        ours[:, component] += _spread(change, factors, ours.shape[-2:])
    rgb = torch.einsum("ij,bjhw->bihw", _YCC_TO_RGB, ours - _CHROMA_OFFSET)
    return rgb / 127.5 - 1


def _turn(pixels: Tensor, orientation: int) -> Tensor:
    return _TURNS[orientation](pixels) if orientation in _TURNS else pixels


def _ycc(pixels: Tensor) -> Tensor:
    """[B, 3, H, W] in [-1, 1] -> YCbCr levels 0..255 (float64)."""
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YCC, (pixels + 1) * 127.5) + _CHROMA_OFFSET


def _decimate(plane: Tensor, factors: tuple[int, int]) -> Tensor:
    """[B, H, W] averaged over factors-sized cells (the edge repeated, as encoders pad)."""
    if factors == (1, 1):
        return plane
    rows, cols = factors
    padded = F.pad(plane[:, None], (0, -plane.shape[-1] % cols, 0, -plane.shape[-2] % rows),
                   mode="replicate")  # fmt: skip
    return F.avg_pool2d(padded, factors)[:, 0]


def _spread(change: Tensor, factors: tuple[int, int], size: torch.Size) -> Tensor:
    """A decimated plane's change [B, h, w] back at full size (bilinear, as decoders' "fancy"
    upsampling), cropped to `size`."""
    if factors == (1, 1):
        return change
    full = F.interpolate(change[:, None], scale_factor=factors, mode="bilinear",
                         align_corners=False)  # fmt: skip
    return full[:, 0, : size[0], : size[1]]


def _block_dct(plane: Tensor) -> Tensor:
    """[B, H, W] -> [B, H/8, W/8, 8, 8] coefficients; the edge repeated to whole blocks."""
    padded = F.pad(plane[:, None], (0, -plane.shape[-1] % 8, 0, -plane.shape[-2] % 8),
                   mode="replicate")[:, 0]  # fmt: skip
    batch, height, width = padded.shape
    blocks = padded.reshape(batch, height // 8, 8, width // 8, 8).transpose(2, 3)
    dct = dct_matrix()
    return dct @ blocks @ dct.T


def _block_idct(coefficients: Tensor, size: torch.Size) -> Tensor:
    """[B, h, w, 8, 8] coefficients -> [B, H, W] samples, cropped to `size`."""
    dct = dct_matrix()
    blocks = dct.T @ coefficients @ dct
    batch, rows, cols = blocks.shape[:3]
    plane = blocks.transpose(2, 3).reshape(batch, rows * 8, cols * 8)
    return plane[:, : size[0], : size[1]]
