#!/usr/bin/env bash
# Distill the bundled base model into one-pass students (DITTO-2): CD and/or CTD.
#
#   scripts/distill.sh cd        # consistency distillation
#   scripts/distill.sh ctd       # consistency trajectory distillation
#   scripts/distill.sh both
#
# Two processes (torchrun, gloo) with one thread each use both cores. Each run checkpoints every
# 5 minutes and resumes where it stopped when rerun with the same settings (set MAX_MINUTES to
# stop cleanly after that long). Then the EMA student is exported as fp16 safetensors.
#
# Cost, measured with 1 thread on this machine (seconds per step): CD 1.6 (batch 8), 4.5 (32);
# CTD 2.3 / 7.2 with one teacher step, plus 0.4 / 1.9 per further teacher step (mean k = 2.5).
# With 2 processes at global batch 32 (16 each) expect roughly 2.5-3 s/step for CD (2000 steps:
# ~1.5 h) and 5-6 s/step for CTD (1500 steps: ~2.3 h).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/full}
RUNS=${RUNS:-/work/data/runs}
NPROC=${NPROC:-2}
MAX_MINUTES=${MAX_MINUTES:-}
STEPS=${STEPS:-}  # override the step count (and LR schedule length) of the chosen kind
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

run() {  # kind steps
  local kind=$1 steps=${STEPS:-$2}
  local extra=()
  if [ -n "$MAX_MINUTES" ]; then extra+=(--max-minutes "$MAX_MINUTES"); fi
  python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m dittomusic distill \
    --kind "$kind" --data "$DATA" --out "$RUNS/distill_$kind" \
    --steps "$steps" --batch-size 32 --lr 1e-4 --warmup 100 \
    --guidance 3.0 --grid-steps 20 --teacher-steps 4 --target-decay 0.95 \
    --val-every 250 --val-clips 16 --log-every 10 --ckpt-minutes 5 "${extra[@]}"
  python3 -m dittomusic distill export "$RUNS/distill_$kind" "$RUNS/student_$kind.safetensors"
}

case "${1:-}" in
  cd) run cd 2000 ;;
  ctd) run ctd 1500 ;;
  both) run cd 2000; run ctd 1500 ;;
  *) echo "usage: $0 cd|ctd|both" >&2; exit 2 ;;
esac
