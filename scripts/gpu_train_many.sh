#!/usr/bin/env bash
# Several time-boxed `i2sb train` runs at once on one lent GPU (scripts/gpu_train.sh each: a
# calibration run, then as many steps as fit in MINUTES), and what comes back from them in a
# form the device tool returns (files of at most 16 MiB): each model's weights in float16
# (OUTDIR/NAME.safetensors, the EMA weights `i2sb train` writes, halved) and one archive of
# the logs and metrics (OUTDIR/logs.tar.gz).
#
#   bash scripts/gpu_train_many.sh OUTDIR MINUTES DATA RECIPES
#   bash scripts/gpu_train_many.sh "$OUT" 6 data/train-768 scripts/gpu_recipes/s8-first.txt
#
# RECIPES has one run per line: a name, then its i2sb train options (shell words; # starts a
# comment line). The runs share the machine's cores equally (OMP_NUM_THREADS). DEVICE=cpu
# tries the whole thing on a CPU.
set -uo pipefail
[ $# -eq 4 ] || { sed -n '2,13p' "$0"; exit 2; }
outdir=$(realpath -m "$1") minutes=$2 data=$3 recipes=$4
cd "$(dirname "$0")/.."
mkdir -p "$outdir"
work=$(mktemp -d)
. scripts/device_env.sh  # the wheels once, before the runs that each source it again
mapfile -t lines < <(grep -v '^\s*\(#\|$\)' "$recipes")
[ ${#lines[@]} -gt 0 ] || { echo "$recipes names no run" >&2; exit 2; }
threads=$(( $(nproc) / ${#lines[@]} ))
pids=()
for line in "${lines[@]}"; do
    eval "words=($line)"
    name=${words[0]}
    OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 )) bash scripts/gpu_train.sh \
        "$work/$name.safetensors" "$minutes" "$data" "${words[@]:1}" --name "$name" \
        > "$work/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
for line in "${lines[@]}"; do
    eval "words=($line)"
    name=${words[0]}
    tail -n 3 "$work/$name.log"
    [ -f "$work/$name.safetensors" ] || { echo "$name: no checkpoint" >&2; status=1; continue; }
    "$PY" - "$work/$name.safetensors" "$outdir/$name.safetensors" <<'EOF' || status=1
import sys
from pathlib import Path

import torch
from i2sb_cli.models.checkpoint import load_checkpoint, save_checkpoint
net, meta = load_checkpoint(Path(sys.argv[1]))
save_checkpoint(Path(sys.argv[2]), net.state_dict(), meta, dtype=torch.float16)
EOF
done
tar -czf "$outdir/logs.tar.gz" -C "$work" $(cd "$work" && ls ./*.log ./*.jsonl 2>/dev/null)
rm -rf "$work"
exit "$status"
