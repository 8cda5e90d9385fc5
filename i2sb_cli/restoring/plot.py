"""The figure of quality against NFE (`i2sb evaluate --nfe ... --plot FILE`), drawn with
matplotlib, an optional extra (`pip install "i2sb[plot]"`), imported only when a plot is asked
for. No pyplot: a Figure of its own, so that nothing global (backends, open figures) is touched.
"""

import math
from pathlib import Path

from ..errors import UsageError
from ..pictures.files import atomic_write
from .sweep import NfePoint

# Each panel: the metric, its title, and which way is better.
PANELS = (
    ("psnr", "PSNR (dB)", "higher"),
    ("ssim", "SSIM", "higher"),
    ("stlpips", "ST-LPIPS", "lower"),
)


def require_matplotlib() -> None:
    """A one-line UsageError when matplotlib is missing (checked before any work is done)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError('--plot needs matplotlib: pip install "i2sb[plot]"') from None


def plot_nfe(points: list[NfePoint], path: Path, *, title: str, baseline: str) -> None:
    """One panel per metric against NFE (log axis): the restorations' mean, with the classical
    `baseline` and the degraded input as horizontal lines; written atomically as PNG. A metric
    that no picture has (all too small for it) gets no panel (PSNR always has one)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    means = [point.summary.means() for point in points]
    panels = [
        panel
        for panel in PANELS
        if any(m.get(panel[0], {}).get("restored") is not None for m in means)
    ]
    nfes = [point.nfe for point in points]
    figure = Figure(figsize=(3.6 * len(panels), 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (metric, label, better) in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        restored = [m[metric]["restored"] for m in means]
        axes.plot(nfes, [math.nan if v is None else v for v in restored], "o-", label="restored")
        # The references do not depend on the NFE: those of the first point with the metric.
        first = next(m[metric] for m in means if m[metric]["restored"] is not None)
        axes.axhline(first["baseline"], color="tab:orange", ls="--", label=baseline)
        axes.axhline(first["degraded"], color="grey", ls=":", label="degraded input")
        axes.set_xscale("log")
        axes.set_xticks(nfes, [str(n) for n in nfes])
        axes.minorticks_off()
        axes.set_xlabel("NFE")
        axes.set_title(f"{label}, {better} is better", fontsize="medium")
        axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.suptitle(title, fontsize="medium")
    atomic_write(path, lambda file: figure.savefig(file, format="png"))
