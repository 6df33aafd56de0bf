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
# PRECISION=bf16 (default) runs every pass under bfloat16 autocast. Step times depend on the CPU
# (benchmarks/distill_step_time.py --batch 16, one process, one thread): on the machine the recipe was
# first timed on, CD 0.93 s/step against 2.25 in fp32; on the 2-core AMD EPYC (avx512_bf16) that trained
# the bundled CD, CD 1.70 against 2.64 and CTD (mean k = 2.5) 3.68 against 5.68. A training step adds the
# teacher's encode of its batch and the EMA updates (1.96 s/step for CD there, profiled), and 2 processes
# at global batch 32 (16 each) scale fully (1.98 s/step), so the bundled CD's 3500 steps took 1.8 h.
# The bundled CD ran 3500 steps because more than 2000 took its 4-step FAD from 1.60x the teacher's to
# 1.31x on the 120-clip card.
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
