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
# The teacher is the bundled base model (v2: a latent model, so the students work in its latent).
# PRECISION=bf16 (default) runs every pass under bfloat16 autocast: on v2 with 1 thread at batch 16,
# CD 0.93 s/step against 2.25 in fp32, CTD (mean k = 2.5) 1.94 against 3.9
# (benchmarks/distill_step_time.py --batch 16). With 2 processes at global batch 32 (16 each) expect
# ~1 s/step for CD and ~2 s/step for CTD (1500 steps: ~50 min). The bundled CD ran 3500 steps (more than
# 2000 took its 4-step FAD from 1.60x the teacher's to 1.31x); on a machine at ~1.9 s/step that is ~1.8 h.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/full}
RUNS=${RUNS:-/work/data/runs}
NPROC=${NPROC:-2}
MAX_MINUTES=${MAX_MINUTES:-}
STEPS=${STEPS:-}  # override the step count (and LR schedule length) of the chosen kind
PRECISION=${PRECISION:-bf16}
TARGET_DECAY=${TARGET_DECAY:-0.95}  # 0: theta^- = theta (iCT, Song & Dhariwal 2023)
EMA_DECAY=${EMA_DECAY:-0.999}  # the exported student's largest EMA decay (the warm-up (1+n)/(10+n) reaches 0.999 at step 8990)
LR=${LR:-1e-4}
INIT=${INIT:-}  # continue from this student (release or run folder) with a fresh schedule of STEPS steps at LR;
                # give a new RUNS too (the run folder and the exported release are named by kind)
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

run() {  # kind steps
  local kind=$1 steps=${STEPS:-$2}
  local extra=()
  if [ -n "$MAX_MINUTES" ]; then extra+=(--max-minutes "$MAX_MINUTES"); fi
  if [ -n "$INIT" ]; then extra+=(--init "$INIT"); fi
  python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m dittomusic distill \
    --kind "$kind" --data "$DATA" --out "$RUNS/distill_$kind" \
    --steps "$steps" --batch-size 32 --lr "$LR" --warmup 100 \
    --guidance 3.0 --grid-steps 20 --teacher-steps 4 --target-decay "$TARGET_DECAY" --ema-decay "$EMA_DECAY" \
    --precision "$PRECISION" --val-every 250 --val-clips 16 --log-every 10 --ckpt-minutes 5 "${extra[@]}"
  python3 -m dittomusic distill export "$RUNS/distill_$kind" "$RUNS/student_$kind.safetensors"
}

if [ -n "$INIT" ] && [ "${1:-}" = both ]; then echo "INIT continues one student: give cd or ctd" >&2; exit 2; fi
case "${1:-}" in
  cd) run cd 3500 ;;
  ctd) run ctd 1500 ;;
  both) run cd 3500; run ctd 1500 ;;
  *) echo "usage: $0 cd|ctd|both" >&2; exit 2 ;;
esac
