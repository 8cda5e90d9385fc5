#!/usr/bin/env bash
# A time-boxed `i2sb train` run on one CUDA GPU, for a session that is lent one for a few
# minutes: a short calibration run measures the step rate, then the real run gets as many
# steps as fit in MINUTES, so that its cosine learning-rate decay ends inside the budget.
#
#   bash scripts/gpu_train.sh OUTPUT MINUTES DATA [i2sb train options...]
#   bash scripts/gpu_train.sh "$OUT/jpeg.safetensors" 7 data/train-small \
#       --task jpeg-10 --task jpeg-real-10 --batch-size 64 --crop 128 --degrade-size 160
#
# DATA travels with the checkout, which the device takes only up to 64 MiB: make a capped copy
# of the training photos first (python scripts/shrink_photos.py data/train data/train-small
# --max-side 768: about 43 MB) and name it in the call's carry. OUTPUT's metrics go beside it
# (.jsonl). If the real run overruns by more than two minutes it is stopped with SIGTERM, which
# makes the trainer save its checkpoint (exit 130). DEVICE=cpu tries the script on a CPU. Paths
# inside the train options are taken from the repository root, where the script runs.
# Packages missing on the GPU machine can travel as wheels in .whl/ (scripts/device_env.sh).
set -uo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0"; exit 2; }
# Paths as given, before the cd to the repository root.
out=$(realpath -m "$1") minutes=$2 data=$(realpath -m "$3")
shift 3
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
. scripts/device_env.sh
if [ "$DEVICE" != cpu ]; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || exit 1
fi
calib=$(mktemp -d)
trap 'rm -rf "$calib"' EXIT

# Calibration: 60 steps; the rate is taken over the last 40, after cuDNN's autotuning.
"$PY" -m i2sb_cli train "$data" "$@" -o "$calib/c.safetensors" --device "$DEVICE" \
    --steps 60 --warmup-steps 10 --checkpoint-every 0 --log-every 20 \
    --metrics "$calib/c.jsonl" || exit 1
steps=$("$PY" - "$calib/c.jsonl" "$minutes" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
seconds = {r["step"]: r["seconds"] for r in rows if r["event"] == "train"}
rate = (60 - 20) / (seconds[60] - seconds[20])
# 10% of the budget is left for start-up, checkpoints and validation.
print(max(100, int(rate * float(sys.argv[2]) * 60 * 0.9)))
EOF
) || exit 1
echo "calibrated: $steps steps fit in $minutes minutes"

limit=$(( ${minutes%.*} * 60 + 120 ))
timeout --signal=TERM --kill-after=60 "$limit" \
    "$PY" -m i2sb_cli train "$data" "$@" -o "$out" --device "$DEVICE" --steps "$steps" \
    --metrics "${out%.safetensors}.jsonl"
