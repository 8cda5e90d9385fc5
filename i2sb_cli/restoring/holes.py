"""An inpainting picture's hole, cut from a mask as people make them.

A mask marks each pixel as much hole as it is white, or transparent (`mask_levels` in
pictures/files.py). A mask of two levels, as programs write them, says exactly where its hole
ends. One painted in an image editor does not: an antialiased or feathered brush leaves a ramp
at the stroke's edge, JPEG rings around it, and along a thin stroke even the middle stays
below one half. Such a soft mask is cut at a low threshold, which finds all of the object, and
grown by a couple of pixels (a disc), which covers the rim that JPEG leaves around the object in
the photo; a two-level one is cut at the same threshold and not grown. --mask-threshold and
--mask-dilate override both, for any mask.

A mask of the picture's shape (aspect ratio within 1 %) but another size is resized to it
(nearest neighbour, with a note); one of another shape is refused, unless --mask-resize asks
to stretch it. A hole of no pixel, or of the whole picture once grown, is refused.
"""

from dataclasses import dataclass

from torch import Tensor

from ..degrade.masks import dilate_mask, resize_mask
from ..errors import ImageError
from ..pictures.files import MaskLevels

MASK_THRESHOLD = 0.25
SOFT_MASK_GROWTH = 2
"""The default threshold and growth for masks with soft edges, measured by `python
benchmarks/mask_cleaning.py` (512 x 512, seed 0): 23 exact holes (the centre box, free-form
strokes of 10-40 %, blobs of 5-40 %, brush strokes 3-24 px wide), each painted with a soft
brush (a Gaussian blur of sigma 1 to 4 px) or a hard one, saved as PNG or as JPEG at quality 70
to 95: 24 renderings with soft edges (all but the hard edge as PNG). Without growth, every
threshold up to 0.25 recovers every exact hole whole (0.3 leaves 0.006 % of a thin stroke
blurred at sigma 4, 0.5 leaves 1.4 %): the soft edge, cut low, lies outside the object. The
growth is for the photo: around an object, JPEG ringing and chroma subsampling change pixels
past its outline (the rim: more than 32 levels, in photos at quality 80 to 95). At 0.25,
growing 2 px leaves 0.07 % of the holes and their rims uncovered on the worst rendering (0 px:
2.9 %, 1 px: 0.5 %, 3 px: 0.04 %), and marks 17 % of the hole's area extra on average. A mask
of two levels is taken as exact, as programs write it, and not grown: were it painted around
an object in a JPEG photo, --mask-dilate 2 covers the rim it leaves."""

_SAME_SHAPE = 0.01
"""How far a mask's aspect ratio may differ from its picture's and still be resized to it."""


@dataclass(frozen=True)
class HoleRule:
    """How a picture's hole was cut from its mask: what the picture's line, its --json record
    and its output's metadata say of it."""

    marked_by: str
    """"white", "black", "transparency" or "opacity" (mask_levels)."""
    source: str
    """"mask" (a mask file or the Python API's mask) or "picture" (its own transparency)."""
    threshold: float
    dilate: int
    feather: int
    soft: bool
    """Whether the mask had soft edges (levels between its two extremes)."""

    def describe(self) -> str:
        """E.g. "mask: soft edges, hole >= 0.25 of white, grown 2 px"."""
        by = self.marked_by
        if by in ("transparency", "opacity"):
            by = f"the {self.source}'s {by}"
        grown = f"grown {self.dilate} px" if self.dilate else "not grown"
        feather = f", feathered {self.feather} px" if self.feather else ""
        edges = "soft" if self.soft else "hard"
        return f"mask: {edges} edges, hole >= {self.threshold:g} of {by}, {grown}{feather}"

    def record(self) -> dict[str, object]:
        """The picture's `mask` in its --json record."""
        return {
            "hole": self.marked_by,
            "source": self.source,
            "threshold": self.threshold,
            "dilate": self.dilate,
            "feather": self.feather,
            "soft_edges": self.soft,
        }

    def metadata(self) -> dict[str, str]:
        metadata = {
            "i2sb:mask-hole": f"{self.source} {self.marked_by}",
            "i2sb:mask-threshold": f"{self.threshold:g}",
            "i2sb:mask-dilate": str(self.dilate),
        }
        if self.feather:
            metadata["i2sb:mask-feather"] = str(self.feather)
        return metadata


@dataclass(frozen=True)
class Hole:
    """A picture's inpainting hole, how it was cut, and a note when its mask was resized."""

    mask: Tensor
    """[1, 1, H, W] of {0, 1}, 1 = hole."""
    rule: HoleRule
    note: str = ""


def fit_mask(
    mask: MaskLevels, size: tuple[int, int], *, stretch: bool, named: str
) -> tuple[MaskLevels, str]:
    """The mask at the picture's `size` (height, width), and a note when it was resized: by
    nearest neighbour, which keeps its levels; one of another shape only when `stretch`."""
    (mh, mw), (h, w) = mask.level.shape[-2:], size
    if (mh, mw) == (h, w):
        return mask, ""
    if not stretch and abs((mw * h) / (mh * w) - 1) > _SAME_SHAPE:
        raise ImageError(
            f"{named} is {mw}x{mh} pixels but the picture is {w}x{h}, another shape; give a "
            "mask of the picture's size, or --mask-resize to stretch it to the picture"
        )
    note = f"mask {mw}x{mh} resized to the picture's {w}x{h} (nearest neighbour)"
    return MaskLevels(resize_mask(mask.level, size), mask.marked_by), note


def cut_hole(
    mask: MaskLevels,
    *,
    source: str,
    threshold: float | None,
    dilate: int | None,
    feather: int,
    named: str,
) -> tuple[Tensor, HoleRule]:
    """The hole [1, 1, H, W] of a mask at its picture's size, and how it was cut (None: the
    defaults, a growth for soft masks only); `named` names the mask in refusals."""
    soft = mask.soft
    threshold = MASK_THRESHOLD if threshold is None else threshold
    if dilate is None:
        dilate = SOFT_MASK_GROWTH if soft else 0
    rule = HoleRule(mask.marked_by, source, threshold, dilate, feather, soft)
    hole = mask.hole(threshold)
    if not hole.any():
        raise ImageError(
            f"{named} marks no hole, so there is nothing to inpaint ({rule.describe()}); "
            "check --mask-threshold and --invert-mask"
        )
    hole = dilate_mask(hole, dilate)
    if hole.all():
        grown = f" once grown {dilate} px" if dilate else ""
        raise ImageError(
            f"{named} marks the whole picture as hole{grown}: no pixel is left to fill it "
            "from; mark only what to remove, or lower --mask-dilate"
        )
    return hole, rule
