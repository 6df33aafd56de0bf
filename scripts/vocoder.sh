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
# Cost, measured on this machine while other jobs shared it: the default model (3.7 M parameters)
# takes ~0.65 s per step at batch 16 x 64 frames on one thread; two processes (8 each) should
# make ~0.35 s/step, so MAX_MINUTES=175 (5.8 CPU-hours on 2 processes) fits ~24k steps and the
# LR schedule is set to that length. Re-rendering 8 h takes a few minutes with 2 workers and
# 1.3 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/full}
AUDIO=${AUDIO:-$DATA/audio}
RUNS=${RUNS:-/work/data/runs}
HOURS=${HOURS:-8}
NPROC=${NPROC:-2}
STEPS=${STEPS:-24000}
MAX_MINUTES=${MAX_MINUTES:-175}
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

pairs() {
  python3 -m dittomusic vocoder pairs --data "$DATA" --out "$AUDIO" --hours "$HOURS" --val-minutes 3 --workers "$NPROC"
}

train() {
  python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m dittomusic vocoder train \
    --data "$DATA" --audio "$AUDIO" --out "$RUNS/vocoder" --steps "$STEPS" --batch-size 16 --segment-frames 64 \
    --lr 5e-4 --warmup 500 --val-every 500 --val-clips 32 --log-every 10 --ckpt-minutes 5 \
    --max-minutes "$MAX_MINUTES"
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
