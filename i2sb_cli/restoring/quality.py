"""The JPEG quality a restore tells a network that asks for it (checkpoint condition
"jpeg-quality", models/condition.py), and where that quality came from.

In order: the user's --jpeg-quality; the quality the JPEG file declares in its quantisation
tables (degrade.jpeg.estimate_quality, exact for libjpeg's files); the quality the pixels show,
for a picture that was a JPEG once and is now a PNG or a screenshot (blind_jpeg_quality, which
finds the tables' steps in the 8x8 block DCT); else UNKNOWN_JPEG_QUALITY, the middle of what
the network was trained on.
"""

from dataclasses import dataclass

from ..degrade.jpeg import blind_jpeg_quality
from ..errors import UsageError
from ..models.condition import UNKNOWN_JPEG_QUALITY
from ..pictures.files import Picture

SOURCES = {
    "option": "--jpeg-quality",
    "file": "the file's tables",
    "pixels": "estimated from the pixels",
    "unknown": "unknown: the middle of the trained range",
}
"""Where a told quality came from, and how the picture's line says it."""


@dataclass(frozen=True)
class ToldQuality:
    quality: int
    source: str
    """A key of SOURCES."""

    def describe(self) -> str:
        return f"told JPEG quality {self.quality} ({SOURCES[self.source]})"


def has_jpeg_history(told: ToldQuality | None) -> bool:
    """Whether a picture was a JPEG, as far as anyone can tell: its file, its pixels or the user
    says a quality."""
    return told is not None and told.source != "unknown"


def check_jpeg_quality(quality: int | None) -> None:
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"--jpeg-quality takes an IJG quality from 1 to 100, not {quality}")


def told_quality(picture: Picture, option: int | None) -> ToldQuality:
    """What a jpeg-quality network is told about `picture`."""
    if option is not None:
        return ToldQuality(option, "option")
    if picture.jpeg_quality is not None:
        return ToldQuality(picture.jpeg_quality, "file")
    estimated = blind_jpeg_quality(picture.pixels)
    if estimated is not None:
        return ToldQuality(estimated, "pixels")
    return ToldQuality(UNKNOWN_JPEG_QUALITY, "unknown")
