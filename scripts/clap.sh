#!/usr/bin/env bash
# Train the domain CLAP (text-audio contrastive model behind text control), then export, eval and card it.
#
#   scripts/clap.sh captions  # captions for every clip + their MiniLM embeddings (once) -> $RUNS/clap_captions
#   scripts/clap.sh train     # one process x 1 thread, at most CPU_HOURS CPU-hours; resumable: rerun to continue
#   scripts/clap.sh export    # EMA weights -> fp16 $RUNS/clap.safetensors
#   scripts/clap.sh eval      # retrieval and zero-shot numbers on the test pieces -> $RUNS/clap_eval.json
#   scripts/clap.sh card      # docs/clap/README.md from that report and the run's loss curve
#   scripts/clap.sh install   # copy the export to src/dittomusic/assets/clap.safetensors (the default scorer)
#   scripts/clap.sh all       # captions, train, export, eval, card (not install: read the card first)
#
# The second-opinion CLAP (issue #21: a text-control result steered by the first CLAP is judged by
# one the optimizer never saw): another seed and the conv2d audio tower, on the same captions.
#   scripts/clap.sh train2    # -> $RUNS/clap2 (resumable), then export2, eval2, install2 (assets/clap2.safetensors)
#   scripts/clap.sh all2      # train2, export2, eval2
# Cost: the conv2d tower at 64 channels took 0.39 CPU-s per batch of 32 448-frame crops (forward +
# backward, one busy thread) against 0.15 for the default conv1d tower, so STEPS2=2000 at batch 256
# (~1.7 CPU-h) keeps it within the same 2 CPU-hours (the budget guard stops it earlier otherwise).
#
# Cost, measured on one thread with two other training jobs on the machine's two cores (smoke run on a
# 1,200-clip subset of data/full): a step of the default tower (128 channels, 2 transformer layers, 2.2 M
# parameters) over 448-frame crops took 0.72 CPU-s at batch 128 and 1.45 CPU-s at batch 256 (1.1 / 2.3 s
# wall). The caption step reads every clip's mel once (20 s) and embeds ~47.7k distinct captions with
# MiniLM at ~12 ms each (~10 CPU-minutes). So captions + CPU_HOURS=1.8 of training (STEPS=4200 at batch
# 256, ~1.7 CPU-h, ~66 epochs of the 16k train clips) stay within 2 CPU-hours; the budget guard stops
# training early (with a checkpoint) if the machine is slower.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/full}
RUNS=${RUNS:-/work/data/runs}
CAPS=${CAPS:-$RUNS/clap_captions}
STEPS=${STEPS:-4200}
CPU_HOURS=${CPU_HOURS:-1.8}
EXTRA=${EXTRA:-}  # more train options, e.g. EXTRA="--channels 96"
STEPS2=${STEPS2:-2000}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

captions() {
  if [ -f "$CAPS/text_embeddings.safetensors" ]; then echo "captions: $CAPS exists"; return; fi
  python3 -m dittomusic clap captions --data "$DATA" --out "$CAPS"
}

train() {
  python3 -m dittomusic clap train --data "$DATA" --captions "$CAPS" --out "$RUNS/clap" --steps "$STEPS" \
    --batch-size 256 --crop-frames 448 --lr 1e-3 --warmup 200 --val-every 250 --val-clips 256 --log-every 10 \
    --ckpt-minutes 5 --max-cpu-hours "$CPU_HOURS" $EXTRA
}

train2() {
  python3 -m dittomusic clap train --data "$DATA" --captions "$CAPS" --out "$RUNS/clap2" --steps "$STEPS2" \
    --batch-size 256 --crop-frames 448 --lr 1e-3 --warmup 200 --val-every 250 --val-clips 256 --log-every 10 \
    --ckpt-minutes 5 --max-cpu-hours "$CPU_HOURS" --audio-tower conv2d --channels 64 --seed 1 $EXTRA
}

export_() { python3 -m dittomusic clap export "$RUNS/clap" "$RUNS/clap.safetensors"; }

export2() { python3 -m dittomusic clap export "$RUNS/clap2" "$RUNS/clap2.safetensors"; }

eval_() {
  python3 -m dittomusic clap eval --data "$DATA" --captions "$CAPS" --weights "$RUNS/clap.safetensors" \
    --out "$RUNS/clap_eval.json"
}

eval2() {
  python3 -m dittomusic clap eval --data "$DATA" --captions "$CAPS" --weights "$RUNS/clap2.safetensors" \
    --out "$RUNS/clap2_eval.json"
}

install() { cp "$RUNS/clap.safetensors" src/dittomusic/assets/clap.safetensors; }

install2() { cp "$RUNS/clap2.safetensors" src/dittomusic/assets/clap2.safetensors; }

card() { python3 -m dittomusic clap card --report "$RUNS/clap_eval.json" --loss-png "$RUNS/clap/loss.png" --out docs/clap; }

case "${1:-}" in
  captions) captions ;;
  train) train ;;
  export) export_ ;;
  eval) eval_ ;;
  card) card ;;
  install) install ;;
  all) captions; train; export_; eval_; card ;;
  train2) train2 ;;
  export2) export2 ;;
  eval2) eval2 ;;
  install2) install2 ;;
  all2) captions; train2; export2; eval2 ;;
  *) echo "usage: $0 captions|train|export|eval|card|install|all|train2|export2|eval2|install2|all2" >&2; exit 2 ;;
esac
