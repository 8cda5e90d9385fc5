"""Copy a folder of photos with every long side cut to at most --max-side pixels (Lanczos).

For carrying the training photos to a GPU machine that takes at most 64 MiB with the
checkout: the trainer already adds half-size copies of large photos, so a capped copy loses
little. Photos within the cap are copied unchanged; shrunk ones keep their format (JPEG
sources are saved again at quality 95, the others as PNG).

Usage: python scripts/shrink_photos.py data/train data/train-small [--max-side 768]
                                        [--downscale PREFIX:FACTOR ...]

The default, 768, brings data/train to about 43 MB (1024 leaves 82 MB, over the limit).

`--downscale gcompris:2` also shrinks every photo whose name starts with `gcompris` by 2 (area
averaging, before the cap): cleaner targets for deblurring and JPEG training. The GCompris
photographs were sharpened and stored as lossy WebP; fetch_photos.py halves them already, and
a second halving (4x in all) leaves their halos and blocks below a pixel.

    python scripts/shrink_photos.py data/train data/train-clean --max-side 100000 \
        --downscale gcompris:2
"""

import argparse
import shutil
from pathlib import Path

from PIL import Image

from i2sb_cli.pictures.inputs import collect_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--max-side", type=int, default=768)
    parser.add_argument(
        "--downscale",
        action="append",
        default=[],
        metavar="PREFIX:FACTOR",
        help="shrink photos whose name starts with PREFIX by FACTOR (area averaging)",
    )
    args = parser.parse_args()
    factors = {}
    for rule in args.downscale:
        prefix, _, factor = rule.rpartition(":")
        if not prefix or not factor.isdigit() or int(factor) < 1:
            parser.error(f"--downscale takes PREFIX:FACTOR, not {rule!r}")
        factors[prefix] = int(factor)
    shrunk = kept = 0
    for item in collect_inputs([str(args.source)], recursive=True):
        target = args.dest / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        factor = next((f for p, f in factors.items() if item.path.name.startswith(p)), 1)
        with Image.open(item.path) as image:
            if factor > 1:
                image = image.convert("RGB").reduce(factor)
            if factor == 1 and max(image.size) <= args.max_side:
                shutil.copyfile(item.path, target)
                kept += 1
                continue
            scale = min(1.0, args.max_side / max(image.size))
            size = (round(image.width * scale), round(image.height * scale))
            smaller = image.convert("RGB")
            if size != image.size:
                smaller = smaller.resize(size, Image.LANCZOS)
            if target.suffix.lower() in {".jpg", ".jpeg"}:
                smaller.save(target, quality=95)
            else:
                smaller.save(target.with_suffix(".png"))
            shrunk += 1
    print(f"{args.dest}: {kept} photos copied, {shrunk} shrunk (at most {args.max_side} px)")


if __name__ == "__main__":
    main()
