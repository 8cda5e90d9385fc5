"""Copy a folder of photos with every long side cut to at most --max-side pixels (Lanczos).

For carrying the training photos to a GPU machine that takes at most 64 MiB with the
checkout: the trainer already adds half-size copies of large photos, so a capped copy loses
little. Photos within the cap are copied unchanged; shrunk ones keep their format (JPEG
sources are saved again at quality 95, the others as PNG).

Usage: python scripts/shrink_photos.py data/train data/train-small [--max-side 768]

The default, 768, brings data/train to about 43 MB (1024 leaves 82 MB, over the limit).
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
    args = parser.parse_args()
    shrunk = kept = 0
    for item in collect_inputs([str(args.source)], recursive=True):
        target = args.dest / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(item.path) as image:
            if max(image.size) <= args.max_side:
                shutil.copyfile(item.path, target)
                kept += 1
                continue
            scale = args.max_side / max(image.size)
            size = (round(image.width * scale), round(image.height * scale))
            smaller = image.convert("RGB").resize(size, Image.LANCZOS)
            if target.suffix.lower() in {".jpg", ".jpeg"}:
                smaller.save(target, quality=95)
            else:
                smaller.save(target.with_suffix(".png"))
            shrunk += 1
    print(f"{args.dest}: {kept} photos copied, {shrunk} shrunk to at most {args.max_side} px")


if __name__ == "__main__":
    main()
