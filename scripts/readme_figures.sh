#!/usr/bin/env bash
# The figures of the README's "Seeing the bridge", made with the bundled sr4x model from a
# validation photo (scripts/fetch_photos.py puts it in data/val): the bridge's trajectory, four
# samples beside their spread map, and quality against NFE. Run from the repository root with
# the Python that has i2sb's requirements (and matplotlib: pip install -e ".[plot]"):
#     scripts/readme_figures.sh [PHOTO]
# Work files go to eval/ (git-ignored); the figures to docs/figures/, stored with 256 colours
# (a third of the bytes, no visible change at their size).
set -euo pipefail
photo=${1:-data/val/skimage-chelsea.png}
name=$(basename "${photo%.*}")
i2sb() { "${PYTHON:-python3}" -m i2sb_cli "$@"; }

rm -rf eval/bridge && mkdir -p docs/figures
i2sb degrade "$photo" -o eval/bridge/sr4x --task sr4x-bicubic
i2sb restore eval/bridge/sr4x/degraded -o eval/bridge/nfe10 --task sr4x --nfe 10 \
    --save-trajectory eval/bridge/trajectory
i2sb restore eval/bridge/sr4x/degraded -o eval/bridge/samples --task sr4x --nfe 10 --samples 4
i2sb compare eval/bridge/sr4x -o eval/bridge/samples.png --crop 100 --tile-width 200 \
    --column "sample 0=eval/bridge/samples/${name}_s0.png" \
    --column "sample 1=eval/bridge/samples/${name}_s1.png" \
    --column "sample 2=eval/bridge/samples/${name}_s2.png" \
    --column "sample 3=eval/bridge/samples/${name}_s3.png"
i2sb evaluate eval/bridge/sr4x --nfe 1,2,5,10,20 --plot eval/bridge/nfe.png --json \
    > eval/bridge/nfe.jsonl

"${PYTHON:-python3}" - "$name" <<'EOF'
import sys
from PIL import Image

name = sys.argv[1]
for source, target in [
    (f"eval/bridge/trajectory/{name}_trajectory.png", "trajectory.png"),
    ("eval/bridge/samples.png", "samples.png"),
    (f"eval/bridge/samples/{name}_spread.png", "spread.png"),
    ("eval/bridge/nfe.png", "nfe.png"),
]:
    with Image.open(source) as image:
        image.convert("RGB").quantize(256).save(f"docs/figures/{target}", optimize=True)
EOF
ls -l docs/figures
