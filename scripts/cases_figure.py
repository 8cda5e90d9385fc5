"""The README's figure of issue 29's cases: one side-by-side per case, from the sheets that
`benchmarks/user_cases.py` wrote (its first photo's row), each row headed by the case and its
columns.

    python benchmarks/user_cases.py data/val -o eval/cases --limit 4
    python scripts/cases_figure.py eval/cases -o docs/figures/cases.png \
        --case thumbnail --case phone --case grainy --case jpeg15 --case jpeg75

Columns that are the degraded picture itself (the "input" and "jpeg" answers) are left out:
the row shows degraded | classical answers | i2sb | original. Saved with 256 colours.
"""

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

AS_IS = {"input", "jpeg"}
"""Answers that are the degraded picture unchanged."""
NOT_ANSWERS = {"seconds", "model", "failed"}
TITLES = {
    "thumbnail": "web thumbnail (4x LANCZOS, JPEG 75), --task sr4x",
    "clean-sr": "clean 4x bicubic downscale, --task sr4x",
    "phone": "phone shot (blur r=1.5, noise 3/255, JPEG 90), --task deblur",
    "grainy": "sharp grainy photo (noise 3/255, JPEG 90), --task deblur",
    **{f"jpeg{q}": f"real JPEG of quality {q}, --task jpeg" for q in (15, 25, 40, 55, 75, 90)},
}
HEADER = 16


def case_row(folder: Path, case: str, scores: dict) -> Image.Image:
    """The first photo's row of the case's sheet, without the as-is columns, with its header."""
    answers = [name for name in scores[case] if name not in NOT_ANSWERS]
    columns = ["degraded", *answers, "original"]
    with Image.open(folder / f"{case}.png") as image:
        sheet = image.convert("RGB")
    tile = sheet.width // len(columns)
    kept = [i for i, name in enumerate(columns) if name not in AS_IS]
    row = Image.new("RGB", (len(kept) * tile, tile + HEADER), "white")
    draw = ImageDraw.Draw(row)
    draw.text((2, 2), TITLES.get(case, case), fill="black")
    for place, index in enumerate(kept):
        row.paste(sheet.crop((index * tile, 0, (index + 1) * tile, tile)), (place * tile, HEADER))
        name = "Real-ESRGAN" if columns[index] == "realesrgan" else columns[index]
        draw.text((place * tile + 2, HEADER + 2), name, fill="white", stroke_width=1,
                  stroke_fill="black")  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="user_cases.py's output folder")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/figures/cases.png"))
    parser.add_argument("--case", action="append", required=True)
    args = parser.parse_args()
    scores = json.loads((args.folder / "scores.json").read_text())
    missing = [case for case in args.case if case not in scores]
    if missing:
        raise SystemExit(f"{args.folder} has no scores for {', '.join(missing)}: run them first")
    rows = [case_row(args.folder, case, scores) for case in args.case]
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        figure.paste(row, (0, top))
        top += row.height
    figure.quantize(256).save(args.output)
    print(f"wrote {args.output} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
