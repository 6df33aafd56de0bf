#!/usr/bin/env bash
# Train the neural vocoder on re-rendered audio of the dataset, then export, benchmark and card it.
#
#   scripts/vocoder.sh pairs    # re-render HOURS of train pieces (+ 3 min of val) next to the dataset
#   scripts/vocoder.sh train    # torchrun, 2 processes x 1 thread; resumable: rerun to continue
#   scripts/vocoder.sh export   # EMA weights -> fp16 $RUNS/vocoder.safetensors
#   scripts/vocoder.sh bench    # benchmarks/vocoder.py on 24 test clips -> $RUNS/vocoder_bench.json
#   scripts/vocoder.sh card     # docs/vocoder/README.md from that report and the run's loss curve
#   scripts/vocoder.sh install  # copy the export to src/dittomusic/assets/vocoder.safetensors (the default)
#   scripts/vocoder.sh all      # pairs, train, export, bench, card (not install: listen first)
#
# Every stage resumes: pairs skips finished renders, train continues from its checkpoint (written
# every 5 minutes, and when MAX_MINUTES have passed) with bit-identical results.
#
# Cost, measured on one thread while other jobs shared the machine: a step at batch 16 x 64 frames
# took 0.64 s with the per-frame (Vocos) head at a quiet moment, and the default recurrent head adds
# ~17 % (1.08 vs 0.92 s side by side under load). Two processes (batch 8 each) should make
# ~0.4-0.5 s/step, so MAX_MINUTES=175 (5.8 CPU-hours on 2 processes) fits ~21-26k steps; the LR
# schedule is 22k steps (if it stops earlier, the LR has decayed to ~15 % of its peak). Re-rendering
# 8 h takes ~10 minutes with 2 workers and 1.3 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/full}
AUDIO=${AUDIO:-$DATA/audio}
RUNS=${RUNS:-/work/data/runs}
HOURS=${HOURS:-8}
NPROC=${NPROC:-2}
STEPS=${STEPS:-22000}
MAX_MINUTES=${MAX_MINUTES:-175}  # per call (a session); rerun to resume
MAX_CPU_HOURS=${MAX_CPU_HOURS:-6}  # the whole run, over every process and resume (issue 18's budget)
EXTRA=${EXTRA:-}  # more train options, e.g. EXTRA="--phase direct" for the Vocos head
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

pairs() {
  python3 -m dittomusic vocoder pairs --data "$DATA" --out "$AUDIO" --hours "$HOURS" --val-minutes 3 --workers "$NPROC"
}

train() {
  python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m dittomusic vocoder train \
    --data "$DATA" --audio "$AUDIO" --out "$RUNS/vocoder" --steps "$STEPS" --batch-size 16 --segment-frames 128 \
    --lr 1e-3 --warmup 300 --val-every 500 --val-clips 32 --log-every 10 --ckpt-minutes 5 \
    --max-minutes "$MAX_MINUTES" --max-cpu-hours "$MAX_CPU_HOURS" $EXTRA
}

export_() { python3 -m dittomusic vocoder export "$RUNS/vocoder" "$RUNS/vocoder.safetensors"; }

bench() {
  python3 benchmarks/vocoder.py --data "$DATA" --weights "$RUNS/vocoder.safetensors" --clips 24 --threads 2 \
    > "$RUNS/vocoder_bench.json.tmp"
  mv "$RUNS/vocoder_bench.json.tmp" "$RUNS/vocoder_bench.json"
}

card() {
  python3 -m dittomusic vocoder card --data "$DATA" --weights "$RUNS/vocoder.safetensors" \
    --report "$RUNS/vocoder_bench.json" --loss-png "$RUNS/vocoder/loss.png" --out docs/vocoder
}

install() { cp "$RUNS/vocoder.safetensors" src/dittomusic/assets/vocoder.safetensors; }

case "${1:-}" in
  pairs) pairs ;;
  train) train ;;
  export) export_ ;;
  bench) bench ;;
  card) card ;;
  install) install ;;
  all) pairs; train; export_; bench; card ;;
  *) echo "usage: $0 pairs|train|export|bench|card|install|all" >&2; exit 2 ;;
esac
