"""Judging restorations: `metrics` (PSNR, SSIM, a perceptual distance where installed), the
classical answer to each task in `baselines`, and `score`, which scores a restored folder
against the originals `i2sb degrade` recorded (`i2sb evaluate`); `sweep` restores such a folder
at several NFE and `plot` draws the scores against NFE (`i2sb evaluate --nfe`)."""

from .baselines import baseline_name, classical_baseline
from .metrics import PSNR_CAP, Perceptual, load_perceptual, psnr, ssim
from .score import METHODS, Failure, Record, Scores, Summary, evaluate, read_manifest

__all__ = [
    "METHODS",
    "PSNR_CAP",
    "Failure",
    "Perceptual",
    "Record",
    "Scores",
    "Summary",
    "baseline_name",
    "classical_baseline",
    "evaluate",
    "load_perceptual",
    "psnr",
    "read_manifest",
    "ssim",
]
