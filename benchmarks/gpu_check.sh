#!/usr/bin/env bash
# GPU figures for issue 6: torch fp32 / bf16 / compiled and ONNX Runtime CUDA on the official
# adm256 network (random weights: speed does not depend on their values) at 256x256, batch 1
# and 16, NFE 10. Writes benchmarks/gpu-*.json, one per part, and benchmarks/gpu.md (a table).
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a CUDA machine
#
# It runs i2sb from this checkout without installing it (PYTHONPATH). i2sb needs platformdirs
# beside torch, typer, rich, pillow, opencv, safetensors and numpy; where the GPU machine lacks a
# package and cannot reach an index, put its wheel into .whl/ (e.g. `pip download --no-deps
# platformdirs -d .whl`) and this script installs it into /tmp/site first. ONNX Runtime's CUDA
# provider needs onnxruntime-gpu (a 256 MB wheel); where only the CPU onnxruntime is
# installed, that part is skipped and says so in gpu.md. Each part has its own time limit, so
# one that fails or hangs leaves the others' figures. About 6-10 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${DEST:-benchmarks}
. scripts/device_env.sh
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

COMMON=(--preset adm256 --size 256 --batch 1 --batch 16 --nfe 10 --device cuda)
skipped=()

part() {  # part NAME SECONDS ARGS...: one benchmark run into $DEST/gpu-NAME.json
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    if ! timeout "$limit" "$PY" -m i2sb_cli benchmark "${COMMON[@]}" "$@" \
        -o "$DEST/gpu-$name.json"; then
        skipped+=("$name (failed or over ${limit} s; see the log above)")
    fi
}

# Eager fp32 both ways (TF32 convolutions are cuDNN's default), then bf16, whose tensor-core
# kernels want channels_last (the default for bf16 on CUDA).
part eager 240 --backend torch+nchw --backend torch+cl --warmup 2 --repeat 5
part bf16 180 --backend torch --precision bf16 --warmup 2 --repeat 5
# torch.compile with CUDA graphs: the first calls compile (minutes), hence the long warm-up.
part compiled 420 --backend torch+compile --precision bf16 --warmup 3 --repeat 5
if "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
    # Export (on the CPU, with its parity check) and run on the CUDA provider, fp32 and fp16.
    part onnxruntime 420 --backend onnxruntime --precision fp32 --precision fp16 --warmup 2 --repeat 5
else
    skipped+=("onnxruntime (no CUDA execution provider: onnxruntime-gpu is not installed)")
fi

reports=()
for f in "$DEST"/gpu-eager.json "$DEST"/gpu-bf16.json "$DEST"/gpu-compiled.json "$DEST"/gpu-onnxruntime.json; do
    [ -f "$f" ] && reports+=("$f")
done
{
    echo "# GPU benchmark: adm256 preset (random weights), 256x256, NFE 10"
    echo
    echo "Made by benchmarks/gpu_check.sh."
    echo
    if [ ${#reports[@]} -gt 0 ]; then "$PY" benchmarks/summarize.py "${reports[@]}"; fi
    for s in "${skipped[@]}"; do echo; echo "Not measured: $s"; done
} > "$DEST/gpu.md"
cat "$DEST/gpu.md"
