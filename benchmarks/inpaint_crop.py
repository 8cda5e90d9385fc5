"""How much context inpainting needs around a hole to give the picture that restoring the whole
picture gives (restoring/crop.py), and what restoring only that region saves.

Each photo of --photos (scaled to cover --size x --size, cropped at its centre, saved as JPEG
at quality 90) gets two masks painted as people paint them (benchmarks/mask_cleaning.py's
shapes, a soft brush of sigma 2 px, saved as JPEG at quality 90): one object-sized blob of 8 to
20 % of the picture and one set of brush strokes. Each is restored as `i2sb restore photo.jpg
--task inpaint --mask mask.jpg --nfe 10` restores it (the command's reader, hole and sampler,
in this process), once whole and once per context of CONTEXTS, from the same seed.

Printed per case, the PSNR of each context's crop against the whole picture in the hole; then
per context, over the pictures that it crops (a crop of more than crop.WHOLE_SHARE of the
picture restores it whole, identical; --whole-share 1 crops them all): the hole's PSNR between
the crop's restoration and the whole picture's (8-bit levels; mean, median, worst, and the share
of the pictures above PSNR_BAR dB or below LEVELS_BAR level of mean absolute difference), the
mean absolute difference in the hole (levels; mean and worst), how much closer to the photo
the crop's hole is than the whole picture's (dB), the share of the picture the network sees
(mean) and the sampling time against the whole picture's (this process, noisy on a loaded
machine). Then, for the chosen context (crop.CONTEXT), the share one box for all holes covers
against one box per connected group of holes.

    python benchmarks/inpaint_crop.py [--photos data/val --photos data/test] [--size 512]
        [--nfe 10] [--seed 0] [--backend torch] [--model inpaint-p4] [--whole-share 0.6]
"""

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from mask_cleaning import Render, blob, cover_crop, render, strokes  # benchmarks/ on sys.path
from PIL import Image

import i2sb_cli
from i2sb_cli.pictures.files import mask_levels, pixel_levels, read_image
from i2sb_cli.restoring import crop
from i2sb_cli.restoring.crop import CONTEXT, hole_box
from i2sb_cli.restoring.loop import Restorer, RestoreSettings

CONTEXTS = (16, 32, 64, 96, 128)
"""Pixels of context around the hole's bounding box; 128 is the bundled model's training crop."""
BRUSH = Render(sigma=2, quality=90)
PHOTO_QUALITY = 90
PSNR_BAR = 40.0
LEVELS_BAR = 1.0


@dataclass(frozen=True)
class Case:
    """One photo and mask: the photo and its hole, and per context (None: whole) the
    restoration (uint8 H x W x 3), the share of the picture restored and the sampling
    seconds."""

    name: str
    photo: np.ndarray
    hole: np.ndarray
    restored: dict[int | None, np.ndarray]
    share: dict[int | None, float]
    seconds: dict[int | None, float]


def photo(path: Path, size: int, folder: Path) -> Path:
    """`path` scaled to cover size x size, cropped at its centre, saved as a JPEG photo."""
    target = folder / f"{path.stem}.jpg"
    Image.fromarray(cover_crop(path, size)).save(target, quality=PHOTO_QUALITY)
    return target


def restore(restorers: dict[int | None, Restorer], source: Path, mask: Path, name: str) -> Case:
    """The photo at `source` with the hole painted in `mask`, restored by each restorer."""
    picture = read_image(source)
    levels = mask_levels(read_image(mask)).level
    item = restorers[None].prepare(picture, source.name, mask=levels)
    hole = item.mask[0, 0].bool().numpy()
    restored, share, seconds = {}, {}, {}
    for context, restorer in restorers.items():
        multiple = restorer.stages[0].model.size_multiple
        box = hole_box(item.mask[0], context=context, multiple=multiple)
        share[context] = box.size[0] * box.size[1] / hole.size
        if context is not None and share[context] == 1:
            # The whole picture, restored already: the same code, noise and pixels.
            restored[context], seconds[context] = restored[None], seconds[None]
            continue
        started = time.perf_counter()
        restored[context] = pixel_levels(restorer.sample([item]))
        seconds[context] = time.perf_counter() - started
    return Case(name, pixel_levels(picture.pixels), hole, restored, share, seconds)


def compare(case: Case, context: int) -> tuple[float, float]:
    """The hole's PSNR (dB) and mean absolute difference (levels) between the restoration
    with `context` and the whole picture's."""
    return hole_psnr(case, case.restored[context], case.restored[None]), float(
        np.mean(np.abs(case.restored[context].astype(np.float64) - case.restored[None])[case.hole])
    )


def hole_psnr(case: Case, first: np.ndarray, second: np.ndarray) -> float:
    """The PSNR (dB) of `first` against `second` over the case's hole."""
    mse = float(np.mean((first.astype(np.float64) - second)[case.hole] ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def grouped_share(hole: np.ndarray, context: int, multiple: int) -> float:
    """The share of the picture that one box per connected group of holes (8-connected)
    would restore: the union of the groups' boxes, or the whole picture when that union
    covers more than crop.WHOLE_SHARE of it."""
    count, labels = cv2.connectedComponents(hole.astype(np.uint8), connectivity=8)
    covered = np.zeros(hole.shape, bool)
    for label in range(1, count):
        box = hole_box(torch.from_numpy(labels == label), context=context, multiple=multiple)
        covered[box.window[1:]] = True
    return 1.0 if covered.mean() > crop.WHOLE_SHARE else float(covered.mean())


def table(cases: list[Case]) -> None:
    print(
        f"{'context':>8} {'cropped':>8} {'PSNR mean':>10} {'median':>7} {'worst':>6} "
        f"{'>=bar':>6} {'|diff| mean':>12} {'worst':>6} {'vs photo':>9} {'seen':>5} {'time':>5}"
    )
    for context in CONTEXTS:
        cropped = [case for case in cases if case.share[context] < 1]
        seen = statistics.mean(case.share[context] for case in cases)
        time_share = sum(case.seconds[context] for case in cases) / sum(
            case.seconds[None] for case in cases
        )
        if not cropped:
            print(f"{context:>8} {0:>4}/{len(cases):<3}{'':>62} {seen:>5.2f} {time_share:>5.2f}")
            continue
        psnrs, diffs = zip(*(compare(case, context) for case in cropped), strict=True)
        passed = sum(p > PSNR_BAR or d < LEVELS_BAR for p, d in zip(psnrs, diffs, strict=True))
        gain = statistics.mean(
            hole_psnr(case, case.restored[context], case.photo)
            - hole_psnr(case, case.restored[None], case.photo)
            for case in cropped
        )
        print(
            f"{context:>8} {len(cropped):>4}/{len(cases):<3} {statistics.mean(psnrs):>10.2f} "
            f"{statistics.median(psnrs):>7.2f} {min(psnrs):>6.2f} {passed / len(cropped):>6.0%} "
            f"{statistics.mean(diffs):>12.3f} {max(diffs):>6.3f} {gain:>+9.3f} {seen:>5.2f} "
            f"{time_share:>5.2f}"
        )


def legend() -> None:
    print(
        f"cropped: pictures whose crop is at most {crop.WHOLE_SHARE:.0%} of the picture (the "
        "others restore whole, identical); PSNR (dB) and |diff| (8-bit levels) over their "
        "holes, the crop's restoration against the whole picture's; >=bar: the share above "
        f"{PSNR_BAR:g} dB or below {LEVELS_BAR:g} level; vs photo: the crop's hole PSNR against "
        "the photo minus the whole picture's (dB, mean); seen: the mean share of the picture "
        "the network sees (1 for a whole one); time: sampling seconds against the whole "
        "picture's (this process, noisy on a loaded machine)"
    )


def line(case: Case) -> str:
    """One case's hole and, per context, the PSNR of its crop against the whole picture."""
    results = [
        f"{context}: "
        + ("whole" if case.share[context] == 1 else f"{compare(case, context)[0]:.1f}")
        for context in CONTEXTS
    ]
    return f"{case.name}: hole {case.hole.mean():.1%}; " + ", ".join(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, action="append")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--model", default="inpaint-p4")
    parser.add_argument(
        "--whole-share",
        type=float,
        default=crop.WHOLE_SHARE,
        help="restore whole the pictures whose crop covers more than this share (1: crop all, "
        "to measure the crops that the command restores whole)",
    )
    args = parser.parse_args()
    crop.WHOLE_SHARE = args.whole_share
    folders = args.photos or [Path("data/val"), Path("data/test")]
    sources = sorted(path for folder in folders for path in folder.iterdir() if path.is_file())

    pipeline = i2sb_cli.load(args.model, backend=args.backend)
    first = pipeline.stages[0]
    stage = dataclasses.replace(first, sampling=dataclasses.replace(first.sampling, nfe=args.nfe))
    restorers = {
        context: Restorer([stage], RestoreSettings(seed=args.seed, hole_context=context))
        for context in (None, *CONTEXTS)
    }
    rng = np.random.default_rng(args.seed)
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        for path in sources:
            source = photo(path, args.size, Path(folder))
            holes = {
                "blob": blob(args.size, float(rng.uniform(0.08, 0.2)), rng),
                "strokes": strokes(args.size, rng),
            }
            for kind, hole in holes.items():
                mask = render(hole, BRUSH, Path(folder))
                cases.append(restore(restorers, source, mask, f"{path.stem} {kind}"))
                print(line(cases[-1]), flush=True)
    for kind, label in (("blob", "blobs"), ("strokes", "brush strokes")):
        print(f"\n{label} ({args.size}x{args.size}, NFE {args.nfe}, seed {args.seed}):")
        table([case for case in cases if case.name.endswith(kind)])
    print("\nall:")
    table(cases)
    legend()
    multiple = pipeline.stages[0].model.size_multiple
    one = statistics.mean(case.share[CONTEXT] for case in cases)
    groups = statistics.mean(grouped_share(case.hole, CONTEXT, multiple) for case in cases)
    print(
        f"\ncontext {CONTEXT}: one box for all holes covers {one:.1%} of the picture on average "
        f"(a whole picture counting 100%), one box per connected group {groups:.1%} "
        "(their union)"
    )


if __name__ == "__main__":
    main()
