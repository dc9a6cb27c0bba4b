#!/usr/bin/env bash
# Train the restoration recipe (nafunet) on a CUDA GPU for a number of minutes of wall time, writing weights
# and metrics to a folder:
#
#     scripts/train_gpu.sh DATA OUT [MINUTES] [more `deblurtool train` options...]
#
# DATA is a folder laid out as shared/data (real pairs, high-frame-rate clips, held-out scenes); OUT gets
# metrics.csv, best.safetensors, last.safetensors and state.pt; add --resume to continue a run (MINUTES is
# the run's total budget).
# MINUTES defaults to 10. On CUDA the recipe picks bf16 autocast where the GPU has it (else fp16), crops of
# 256 and batches of 16 made ahead in 8 threads; any option given after MINUTES overrides these.
# DEVICE=cpu runs the same command on the CPU (the tests do, with a budget of about a second).
set -euo pipefail
if [[ $# -lt 2 ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
data=$1
out=$2
minutes=${3:-10}
shift $(( $# >= 3 ? 3 : 2 ))
if command -v deblurtool >/dev/null 2>&1; then
    run=(deblurtool)
else
    run=(python -m deblurtool)
fi
exec "${run[@]}" train "$data" --out "$out" --arch nafunet --device "${DEVICE:-cuda}" --minutes "$minutes" \
    --eval-every-minutes "${EVAL_EVERY_MINUTES:-2}" "$@"
