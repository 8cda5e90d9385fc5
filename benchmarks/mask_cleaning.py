"""How `i2sb restore` should clean a mask painted in an image editor: the threshold and growth
that recover an exact hole from its soft, JPEG-compressed rendering (restoring/holes.py).

Exact holes (the centre box and free-form strokes of degrade/masks.py, object-sized blobs of
5-40 % and brush strokes 3-24 px wide drawn here, seeded) are rendered as an editor saves
them: a soft brush (a Gaussian blur of the hard edge, sigma 1 to 4 px, or none) saved as PNG
and as JPEG at quality 70 to 95. Each file is read back through the command's own reader
(read_image, mask_levels) and cleaned (MaskLevels.hole, dilate_mask) at every threshold and
growth of a grid.

What must be covered is measured twice. First each exact hole alone (a rim of the object would
show). Then the exact holes and the rims that objects of their shapes leave around them in JPEG
photos: each object (a flat random colour) pasted into photos (--photos, crops of --size),
saved as JPEG at PHOTO_QUALITIES with and without it; the rim is the pixels outside the hole
that differ by more than RIM_LEVELS in a channel (ringing and chroma subsampling carry the
object's colour past its outline), counted over all the holes. Printed for each: per threshold
and growth, the worst share left uncovered over the soft renderings (it must be ~0) and the
mean share of extra pixels marked (of the hole's area), and the least growth that covers
COVERED at each threshold. Then the choice (`choose`): the highest threshold that recovers
every exact hole whole with no growth, and the least growth that covers both; per rendering,
what that threshold leaves of the holes and rims, and what the defaults (cut_hole) do.

    python benchmarks/mask_cleaning.py [--size 512] [--seed 0] [--photos data/test]
"""

import argparse
import io
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from i2sb_cli.degrade.masks import center_mask, dilate_mask, freeform_mask
from i2sb_cli.pictures.files import mask_levels, read_image
from i2sb_cli.restoring.holes import cut_hole

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
GROWTHS = (0, 1, 2, 3, 4, 5, 6)
SIGMAS = (0, 1, 2, 3, 4)
"""The soft brush's blur in pixels (0: a hard edge)."""
QUALITIES = (None, 70, 80, 90, 95)
"""None: PNG; else JPEG at that quality."""
COVERED = 0.999
RIM_LEVELS = 32
"""A difference from the photo without the object that shows as a rim (8-bit levels): an
eighth of the range, a line one sees at once at 4x zoom."""
PHOTO_QUALITIES = (80, 90, 95)
"""The photos' JPEG qualities (phones and cameras save at 80 to 95; the issue's test photos
at 90)."""
PHOTOS = 3


@dataclass(frozen=True)
class Render:
    sigma: int
    quality: int | None

    @property
    def name(self) -> str:
        return f"sigma {self.sigma} " + ("PNG" if self.quality is None else f"JPEG q{self.quality}")

    @property
    def soft(self) -> bool:
        """Whether the rendering has levels between its two (all but a hard edge as PNG)."""
        return bool(self.sigma) or self.quality is not None


def blob(size: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """An object-sized hole: a star-shaped blob of about `fraction` of the picture, its radius
    a few random harmonics around its mean, anywhere (it may cross the border)."""
    radius = math.sqrt(fraction * size * size / math.pi)
    angles = np.linspace(0, 2 * math.pi, 256, endpoint=False)
    wobble = sum(
        rng.uniform(0, 0.15) * np.cos(k * angles + rng.uniform(0, 2 * math.pi)) for k in range(2, 6)
    )
    centre = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
    outline = radius * (1 + wobble)
    points = centre + outline[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    hole = np.zeros((size, size), np.uint8)
    cv2.fillPoly(hole, [np.round(points).astype(np.int32)], 1)
    return hole


def strokes(size: int, rng: np.random.Generator) -> np.ndarray:
    """Brush strokes over a wire or a date stamp: 1 to 3 polylines of 3 to 8 segments, each of
    one width from 3 to 24 px."""
    hole = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 4)):
        steps = rng.normal(0, size / 6, (rng.integers(3, 9), 2))
        points = np.clip(rng.uniform(0, size, 2) + np.cumsum(steps, 0), 0, size - 1)
        width = int(rng.integers(3, 25))
        cv2.polylines(hole, [np.round(points).astype(np.int32)], False, 1, width)
    return hole


def exact_holes(size: int, seed: int) -> Iterator[np.ndarray]:
    """Every exact hole measured, as a {0, 1} uint8 array."""
    made = [center_mask(size, size)] + [
        freeform_mask(size, size, band, seed=seed * 100 + k)
        for band in ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4))
        for k in range(2)
    ]
    for mask in made:
        yield mask[0, 0].numpy().astype(np.uint8)
    rng = np.random.default_rng(seed)
    for fraction in np.linspace(0.05, 0.4, 8):
        yield blob(size, float(fraction), rng)
    for _ in range(8):
        yield strokes(size, rng)


def render(hole: np.ndarray, how: Render, folder: Path) -> Path:
    """The hole as an editor saves it: white on black, its edge blurred, as PNG or JPEG (RGB,
    as editors write it)."""
    level = hole.astype(np.float32) * 255
    if how.sigma:
        level = cv2.GaussianBlur(level, (0, 0), how.sigma)
    image = Image.fromarray(np.round(level).clip(0, 255).astype(np.uint8)).convert("RGB")
    path = folder / ("mask.png" if how.quality is None else "mask.jpg")
    image.save(path, **({} if how.quality is None else {"quality": how.quality}))
    return path


def cover_crop(path: Path, size: int) -> np.ndarray:
    """The photo scaled to cover size x size and cropped at its centre (RGB uint8)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = size / min(image.size)
        image = image.resize((math.ceil(image.width * scale), math.ceil(image.height * scale)))
        left, top = (image.width - size) // 2, (image.height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)))


def photos(folder: Path, size: int) -> list[np.ndarray]:
    """The first PHOTOS pictures of `folder`, each a cover_crop."""
    crops = [cover_crop(path, size) for path in sorted(folder.glob("*"))[:PHOTOS]]
    if not crops:
        raise SystemExit(f"no photos in {folder}: give --photos DIR")
    return crops


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    """RGB pixels through a JPEG file of `quality`, as Pillow saves it (4:2:0), decoded."""
    file = io.BytesIO()
    Image.fromarray(pixels).save(file, "JPEG", quality=quality)
    with Image.open(file) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def rim(hole: np.ndarray, crops: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The pixels outside `hole` that an object of its shape (a random flat colour) changes by
    more than RIM_LEVELS in a JPEG photo (4:2:0, as cameras and editors save), over every
    photo and JPEG quality of PHOTO_QUALITIES."""
    found = np.zeros(hole.shape, bool)
    for photo in crops:
        with_object = photo.copy()
        with_object[hole > 0] = rng.integers(0, 256, 3)
        for quality in PHOTO_QUALITIES:
            difference = np.abs(_jpeg(with_object, quality) - _jpeg(photo, quality)).max(axis=2)
            found |= (difference > RIM_LEVELS) & (hole == 0)
    return found


def measure(
    size: int, seed: int, crops: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Render]]:
    """For each rendering and exact hole, at each threshold and growth [render, hole,
    threshold, growth]: the share of the hole left uncovered, the share of the extra pixels
    marked (of the hole's area) and the share of the hole and its photo rim left uncovered,
    over all the holes [render, threshold, growth]; what the defaults (cut_hole) give [render,
    (the share of the holes and rims uncovered, the mean extra, the least and most growth)];
    the renderings."""
    renders = [Render(s, q) for s in SIGMAS for q in QUALITIES]
    holes = list(exact_holes(size, seed))
    rng = np.random.default_rng(seed)
    wholes = [torch.from_numpy(rim(hole, crops, rng) | (hole > 0)) for hole in holes]
    total = sum(float(whole.sum()) for whole in wholes)
    shape = (len(renders), len(holes), len(THRESHOLDS), len(GROWTHS))
    uncovered, extra = np.zeros(shape), np.zeros(shape)
    with_rim = np.zeros((len(renders), len(THRESHOLDS), len(GROWTHS)))
    defaults = np.zeros((len(renders), 4))
    with tempfile.TemporaryDirectory() as folder:
        for r, how in enumerate(renders):
            growths, extras = [], []
            for h, hole in enumerate(holes):
                exact, whole = torch.from_numpy(hole > 0), wholes[h]
                area = float(exact.sum())
                mask = mask_levels(read_image(render(hole, how, Path(folder))))
                for t, threshold in enumerate(THRESHOLDS):
                    for g, growth in enumerate(GROWTHS):
                        cut = dilate_mask(mask.hole(threshold), growth)[0, 0].bool()
                        uncovered[r, h, t, g] = float((exact & ~cut).sum()) / area
                        extra[r, h, t, g] = float((cut & ~exact).sum()) / area
                        with_rim[r, t, g] += float((whole & ~cut).sum()) / total
                cut, rule = cut_hole(
                    mask, source="mask", threshold=None, dilate=None, feather=0, named="mask"
                )
                cut = cut[0, 0].bool()
                defaults[r, 0] += float((whole & ~cut).sum()) / total
                extras.append(float((cut & ~exact).sum()) / area)
                growths.append(rule.dilate)
            defaults[r, 1:] = np.mean(extras), min(growths), max(growths)
    return uncovered, extra, with_rim, defaults, renders


def table(title: str, uncovered: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Print the grid of the worst uncovered share (over the leading axes of `uncovered`:
    renderings, and holes or none) and the mean extra share [rendering, hole, threshold,
    growth], and the least growth covering COVERED at each threshold; the worst shares
    [threshold, growth]."""
    worst = uncovered.reshape(-1, len(THRESHOLDS), len(GROWTHS)).max(0)
    mean_extra = extra.mean(axis=(0, 1))
    print(f"\n{title}: worst % uncovered / mean % extra (of the hole)")
    print("threshold " + "".join(f"{f'grown {g}':>16}" for g in GROWTHS))
    for t, threshold in enumerate(THRESHOLDS):
        cells = "".join(
            f"{100 * worst[t, g]:>8.3f} /{100 * mean_extra[t, g]:>5.1f}"
            for g in range(len(GROWTHS))
        )
        print(f"{threshold:>9g} {cells}")
    for t, threshold in enumerate(THRESHOLDS):
        enough = [g for g in range(len(GROWTHS)) if worst[t, g] <= 1 - COVERED]
        least = f"{GROWTHS[enough[0]]} px" if enough else f"more than {GROWTHS[-1]} px"
        print(f"  threshold {threshold:g}: {least} covers {100 * COVERED:g} %")
    return worst


def choose(exact: np.ndarray, with_rim: np.ndarray) -> tuple[int, int] | None:
    """The defaults' (threshold, growth) indices: the highest threshold that recovers every
    exact hole whole without growth (the mask's own edge, however soft, is then found by the
    threshold alone), and the least growth at which COVERED of every exact hole, and of the
    holes and their photo rims, is covered (the growth is there for the photo's rim)."""
    whole = [t for t in range(len(THRESHOLDS)) if exact[t, 0] == 0]
    if not whole:
        return None
    t = whole[-1]
    enough = [g for g in range(len(GROWTHS)) if max(exact[t, g], with_rim[t, g]) <= 1 - COVERED]
    return (t, enough[0]) if enough else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=Path, default=Path("data/test"))
    args = parser.parse_args()
    crops = photos(args.photos, args.size)
    uncovered, extra, with_rim, defaults, renders = measure(args.size, args.seed, crops)
    soft = [r for r, how in enumerate(renders) if how.soft]
    print(
        f"{args.size}x{args.size}: {uncovered.shape[1]} exact holes x {len(soft)} soft "
        f"renderings; rims of more than {RIM_LEVELS} levels in {len(crops)} photos at JPEG "
        f"quality {', '.join(map(str, PHOTO_QUALITIES))}"
    )
    exact = table("the exact hole, worst hole", uncovered[soft], extra[soft])
    rims = table("the exact holes and their photo rims, all holes", with_rim[soft], extra[soft])
    chosen = choose(exact, rims)
    if chosen is None:
        print("\nno threshold and growth of the grid do it")
        return
    t, g = chosen
    mean_extra = extra[soft][..., t, g].mean()
    print(
        f"\nchosen: threshold {THRESHOLDS[t]:g}, grown {GROWTHS[g]} px "
        f"(mean extra {100 * mean_extra:.1f} % of the hole)"
    )
    print(f"\n% of the holes and rims uncovered per rendering at threshold {THRESHOLDS[t]:g},")
    print("and what the defaults do (uncovered, mean extra, growths chosen)")
    print(f"{'rendering':<18}" + "".join(f"{f'grown {g}':>9}" for g in GROWTHS) + "   defaults")
    for r, how in enumerate(renders):
        cells = "".join(f"{100 * with_rim[r, t, g]:>9.3f}" for g in range(len(GROWTHS)))
        missed, mean_extra, least, most = defaults[r]
        grown = f"{least:g}" if least == most else f"{least:g}-{most:g}"
        print(
            f"{how.name:<18}{cells}   {100 * missed:.3f} % left, {100 * mean_extra:.1f} % "
            f"extra, grown {grown} px"
        )


if __name__ == "__main__":
    main()
