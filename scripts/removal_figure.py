"""The README's removal example: the shuttle model taken out of scikit-image's astronaut photo
(a validation photo, NASA, public domain; scripts/fetch_photos.py puts it in data/val).

The photo is saved as a JPEG at quality 90 and the mask is painted as people paint one: a
polygon around the object with a soft brush (Gaussian blur, sigma 2 px), saved as a JPEG. The
command restores it exactly as the README shows; OpenCV's Telea gets the exact hole (the
polygon), its best case. The figure (photo | mask | Telea | i2sb) goes to
docs/figures/removal.png, with 256 colours. Run from the repository root:
    python scripts/removal_figure.py [--photo data/val/skimage-astronaut.png]
Work files go to eval/removal/ (git-ignored).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# The shuttle model and its stand, as a polygon in the 512 x 512 photo's pixels.
SHUTTLE = [
    (390, 0), (445, 0), (460, 40), (463, 190), (470, 235), (470, 290),
    (355, 290), (333, 240), (335, 210), (360, 150), (372, 90), (387, 45),
]  # fmt: skip
WORK = Path("eval/removal")
FIGURE = Path("docs/figures/removal.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=Path("data/val/skimage-astronaut.png"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    with Image.open(args.photo) as image:
        photo = image.convert("RGB")
    photo.save(WORK / "photo.jpg", quality=90)
    exact = Image.new("L", photo.size, 0)
    ImageDraw.Draw(exact).polygon(SHUTTLE, fill=255)
    exact.filter(ImageFilter.GaussianBlur(2)).save(WORK / "mask.jpg", quality=90)

    command = ["restore", str(WORK / "photo.jpg"), "--task", "inpaint"]
    command += ["--mask", str(WORK / "mask.jpg"), "--nfe", "10"]
    subprocess.run(
        [sys.executable, "-m", "i2sb_cli", *command, "-o", str(WORK / "i2sb.png"), "--overwrite"],
        check=True,
    )
    print("i2sb " + " ".join(command).replace(str(WORK) + "/", ""))

    with Image.open(WORK / "photo.jpg") as decoded:
        bgr = cv2.cvtColor(np.asarray(decoded.convert("RGB")), cv2.COLOR_RGB2BGR)
    telea = cv2.inpaint(bgr, np.asarray(exact), 5, cv2.INPAINT_TELEA)
    telea_image = Image.fromarray(cv2.cvtColor(telea, cv2.COLOR_BGR2RGB))

    with Image.open(WORK / "mask.jpg") as mask, Image.open(WORK / "i2sb.png") as ours:
        tiles = [photo, mask.convert("RGB"), telea_image, ours.convert("RGB")]
        # The upper right quarter holds the object: shown at full resolution.
        box = (256, 0, 512, 320)
        strip = Image.new("RGB", (4 * (box[2] - box[0]) + 3 * 4, box[3] - box[1]), "white")
        for k, tile in enumerate(tiles):
            strip.paste(tile.crop(box), (k * (box[2] - box[0] + 4), 0))
    strip.quantize(256).save(FIGURE, optimize=True)
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
