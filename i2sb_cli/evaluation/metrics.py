"""Picture quality: PSNR, SSIM, and a perceptual distance where stlpips-pytorch is installed.

Every metric compares two [1, 3, H, W] pictures in [-1, 1] of the same size, on RGB.
- PSNR: 10 log10(peak^2 / MSE) over all pixels and channels, the peak being the full range
  (255 in 8-bit terms); identical pictures give `PSNR_CAP` instead of infinity.
- SSIM (Wang et al. 2004): per RGB channel in [0, 1] with an 11 x 11 Gaussian window of
  sigma 1.5, K1 = 0.01, K2 = 0.03, local statistics weighted by the window (no sample-size
  correction), averaged over the positions where the window fits and over the channels. This is
  scikit-image's `structural_similarity(..., channel_axis=-1, data_range=1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`. Colour rather than luma: the
  restorations change colour as well (JPEG chroma, inpainting), and RGB is what PSNR sees too.
  A picture smaller than the window gets the largest odd window that fits; below `SSIM_MIN_SIDE`
  pixels a side it is not defined (a 1-pixel window has no variance, so SSIM would be the
  luminance term alone).
- Perceptual: shift-tolerant LPIPS (AlexNet) from the optional `stlpips-pytorch` package
  (extra `perceptual`); lower is closer. Its values rank methods; they are not published LPIPS.
  Not defined below `PERCEPTUAL_MIN_SIDE` pixels a side.

A metric not defined for a picture's size raises `MetricUnavailable`, checked before any work.
"""

import contextlib
import math
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

PSNR_CAP = 100.0
_WINDOW, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03
SSIM_MIN_SIDE = 3
PERCEPTUAL_MIN_SIDE = 21
"""Measured on stlpips-pytorch 0.0.2 (sizes 1 to 140): below 21 pixels a side, the reflect
padding of the network's blur-pooling is larger than its feature map and torch refuses it."""


class MetricUnavailable(ValueError):
    """A metric that is not defined for pictures of this size; the message says why."""


def _require_side(a: Tensor, minimum: int, metric: str, why: str) -> None:
    height, width = a.shape[-2:]
    if min(height, width) < minimum:
        raise MetricUnavailable(
            f"{metric} needs at least {minimum}x{minimum} pixels ({why}); "
            f"the picture is {width}x{height}"
        )


Perceptual = Callable[[Tensor, Tensor], float]
"""distance(a, b) for two [1, 3, H, W] pictures in [-1, 1]; MetricUnavailable where it is not
defined for their size."""


def _check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(
            f"expected two [1, 3, H, W] pictures of one size, got {a.shape}, {b.shape}"
        )


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two pictures in [-1, 1] (peak 2, i.e. 255 at 8 bits)."""
    _check(a, b)
    mse = float((a.double() - b.double()).square().mean())
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(4 / mse))


def _gaussian_window(size: int) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-0.5 * (x / _SIGMA) ** 2)
    return taps / taps.sum()


def ssim(a: Tensor, b: Tensor) -> float:
    """Mean structural similarity of two pictures in [-1, 1] (see the module notes)."""
    _check(a, b)
    _require_side(a, SSIM_MIN_SIDE, "SSIM", "a 1-pixel window has no contrast to compare")
    # A picture smaller than the window gets the largest odd window that fits.
    size = min(_WINDOW, *(s - (s + 1) % 2 for s in a.shape[-2:]))
    taps = _gaussian_window(size)
    x = ((a.double() + 1) / 2).reshape(3, 1, *a.shape[-2:])
    y = ((b.double() + 1) / 2).reshape(3, 1, *b.shape[-2:])

    def local_mean(v: Tensor) -> Tensor:  # separable Gaussian, valid positions only
        return F.conv2d(F.conv2d(v, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x.square()
    var_y = local_mean(y * y) - mu_y.square()
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = _K1**2, _K2**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    )
    return float(index.mean())


def load_perceptual(device: torch.device | str = "cpu") -> tuple[Perceptual | None, str]:
    """The shift-tolerant LPIPS distance, or None and the reason it is not available."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            from stlpips_pytorch import stlpips

            # verbose=False: its "Setting up..." lines are noise that `-q` must not print.
            model = stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False)
            model = model.to(device).eval()
    except Exception as exc:  # ImportError, or torchvision failing inside its import
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (
            f"stlpips-pytorch is not usable ({reason}); install the extra: "
            "pip install 'i2sb[perceptual]'"
        )

    def distance(a: Tensor, b: Tensor) -> float:
        _check(a, b)
        _require_side(a, PERCEPTUAL_MIN_SIDE, "ST-LPIPS", "its network's padding")
        # The package prints while it works; stdout belongs to --json.
        with torch.inference_mode(), contextlib.redirect_stdout(sys.stderr):
            return float(model(a.float().to(device), b.float().to(device)).mean())

    return distance, ""
