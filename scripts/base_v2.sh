#!/usr/bin/env bash
# Base model v2: the bake-off of three routes at an equal CPU budget, then the winner's long run.
#
#   scripts/base_v2.sh ae          # (a) the mel VAE that latent diffusion works in (1 CPU-hour)
#   scripts/base_v2.sh latent      # (a) latent DiT in the VAE's latent       (0.5 CPU-hour; needs ae)
#   scripts/base_v2.sh ae_long     # (a') the same VAE trained 4x longer (10k steps, 1.3 CPU-hours): the
#                                  #      bake-off AE's val loss was still falling when its LR schedule ended
#   scripts/base_v2.sh cache       # ae_long's latents of the training crops, encoded once (EPOCHS crops per clip,
#                                  #      default 2): latent_long then skips the encoder, 12 % of a bf16 step
#                                  # TIMESTEPS=uniform|mixed: the denoiser's training timesteps (default lognormal, EDM's;
#                                  #      it gives t >= 0.8 T 8.5 % of the steps where uniform gives 20 %; mixed:
#                                  #      each sample from either, even odds)
#   scripts/base_v2.sh latent_long # (a') the winner's run in ae_long's latent: one session-sized phase, STEPS-step
#                                  #      LR schedule (default 4000), BUDGET CPU-hours (default 2.5), bf16 autocast
#   scripts/base_v2.sh continue    # the next phase: from the bundled v2 (--init; its own latent), STEPS steps at LR
#                                  #      (default 1.5e-4), into $RUNS/latent_cont; run folders do not outlive a machine.
#                                  #      Encodes the bundled autoencoder's latent cache first ($RUNS/latents_bundled;
#                                  #      EPOCHS=N: N crops per clip, in latents_bundled_eN). OUT=name: another run folder;
#                                  #      INIT=file: start from another release in the bundled latent (e.g. an earlier phase)
#   scripts/base_v2.sh ae_gan      # (a') ae_long's decoder fine-tuned with a mel PatchGAN, encoder frozen, so
#                                  #      latent_long's latents stay valid (1 CPU-hour); AE=ae_gan for eval
#   scripts/base_v2.sh ae_gan2     # the bundled decoder's GAN fine-tune continued (ADV weight, default 1.0; STEPS
#                                  #      default 6000), encoder frozen: the bundled diffusion model stays valid
#   scripts/base_v2.sh ae_wide     # the C2ST route of session 29: ae_long's recipe with 128 latent channels (5x
#                                  #      compression instead of 10x; the critic reads detail across frequency)
#   scripts/base_v2.sh ae_wide_gan # ae_wide's decoder + PatchGAN, encoder frozen (ae_gan's recipe)
#   scripts/base_v2.sh latent_wide # latent DiT in ae_wide_gan's latent (cache first), latent_long's recipe
#   scripts/base_v2.sh ae_post     # a 2-D post-net (16 ch, frequency dilations 1-16) on the bundled autoencoder,
#                                  #      encoder and decoder frozen, mel PatchGAN: detail across mel bins (0.75 CPU-h)
#   scripts/base_v2.sh ae_gen      # the bundled decoder fine-tuned against a mel PatchGAN whose fakes include decodes
#                                  #      of the bundled model's own generated latents (768, sampled first with
#                                  #      `autoencoder samples`), texture noise on (0.8 CPU-h); -> $RUNS/base_gen.safetensors.
#                                  #      VIEW=critic: the discriminators read the C2ST's floored view (ADV=1.0 in session 34)
#   scripts/base_v2.sh texnet      # a texture network (TEXCH channels, default 16) on the bundled autoencoder, all else
#                                  #      frozen, trained against a PatchGAN (VIEW, default mel) on real and generated
#                                  #      decodes (0.5 CPU-h); -> $RUNS/base_texnet[_VIEW].safetensors. NAME=run folder
#   scripts/base_v2.sh texture     # the decoder's texture noise calibrated on 480 training clips, written into a copy
#                                  #      of the bundled model ($RUNS/base_tex.safetensors; `cp` it over the bundled
#                                  #      one to ship it) with the sweep's default sampler (dpmpp_2m, guidance 2.0);
#                                  #      a recalibration ignores any texture the file already has
#   scripts/base_v2.sh sweep       # the bundled model's yardstick under other samplers / guidance scales
#   scripts/base_v2.sh recon NAME  # the autoencoder NAME's ceiling: benchmarks/ae_recon.py on 60 test clips
#   scripts/base_v2.sh unet        # (b) MelUNet, full time resolution         (0.5 CPU-hour)
#   scripts/base_v2.sh dit         # (c) MelDiT with 2-frame patches           (0.5 CPU-hour)
#   scripts/base_v2.sh eval NAME   # export a run and score it: `dittomusic eval model` with the realism block
#                                  # (NAME v1 or bundled: the bundled v1 or v2; PER_COLLECTION clips per collection, default 20;
#                                  #  AE=name embeds that autoencoder, e.g. a decoder fine-tune)
#   scripts/base_v2.sh table       # the bake-off table (benchmarks/base_bakeoff.py over every eval)
#
# Every route trains with EDM's log-normal noise levels (--timesteps lognormal), global batch 32,
# AdamW 3e-4 with 200 warm-up steps, and stops at its CPU budget (--max-cpu-hours counts every
# process and every resume, so a busy machine changes the wall time, not the budget). Each run is
# one process with one thread, so two routes can train side by side on 2 cores; rerunning a
# command resumes exactly where it stopped (a kill loses at most the last 5 minutes). The winner's
# run continues with a larger BUDGET on the same folder: its LR schedule (--steps) was sized for
# the long run from the start. NPROC=2 trains one run as 2 torchrun processes (for a run alone on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/full}
RUNS=${RUNS:-/work/runs}
BUDGET=${BUDGET:-}  # CPU-hours; default per route below
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
NPROC=${NPROC:-1}
if [ "$NPROC" -gt 1 ]; then RUN=(python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m dittomusic)
else RUN=(python3 -m dittomusic); fi
BUNDLED=src/dittomusic/assets/base.safetensors
COMMON=(--data "$DATA" --batch-size 32 --warmup 200 --lr "${LR:-3e-4}" --timesteps "${TIMESTEPS:-lognormal}" --val-every 500 --ckpt-minutes 5)

case "${1:-}" in
  ae)
    python3 -m dittomusic autoencoder train --data "$DATA" --out "$RUNS/ae" --steps 2500 --batch-size 32 \
      --crop-frames 128 --max-cpu-hours "${BUDGET:-1.0}" --val-every 250
    python3 -m dittomusic autoencoder export "$RUNS/ae" --out "$RUNS/ae.safetensors" ;;
  ae_long)
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_long" --steps 10000 --batch-size 32 \
      --crop-frames 128 --max-cpu-hours "${BUDGET:-1.3}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_long" --out "$RUNS/ae_long.safetensors" ;;
  ae_wide)
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_wide" --steps 10000 --batch-size 32 \
      --latent-channels 128 --crop-frames 128 --max-cpu-hours "${BUDGET:-1.3}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_wide" --out "$RUNS/ae_wide.safetensors" ;;
  ae_wide_gan)
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_wide_gan" --init "$RUNS/ae_wide.safetensors" \
      --freeze-encoder --adversarial --steps 4000 --batch-size 16 --lr 1e-4 --crop-frames 128 \
      --max-cpu-hours "${BUDGET:-1.0}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_wide_gan" --out "$RUNS/ae_wide_gan.safetensors" ;;
  latent_wide)
    python3 -m dittomusic autoencoder cache --ae "$RUNS/ae_wide_gan.safetensors" --data "$DATA" \
      --out "$RUNS/latents_ae_wide" --epochs "${EPOCHS:-2}"
    "${RUN[@]}" train "${COMMON[@]}" --out "$RUNS/latent_wide" --steps "${STEPS:-10000}" \
      --autoencoder "$RUNS/ae_wide_gan.safetensors" --latent-cache "$RUNS/latents_ae_wide" --patch-frames 1 \
      --precision bf16 --max-cpu-hours "${BUDGET:-2.5}" ;;
  cache)
    python3 -m dittomusic autoencoder cache --ae "$RUNS/ae_long.safetensors" --data "$DATA" \
      --out "$RUNS/latents_ae_long" --epochs "${EPOCHS:-2}" ;;
  latent_long)
    "${RUN[@]}" train "${COMMON[@]}" --out "$RUNS/latent_long" --steps "${STEPS:-4000}" \
      --autoencoder "$RUNS/ae_long.safetensors" --latent-cache "$RUNS/latents_ae_long" --patch-frames 1 \
      --precision bf16 --max-cpu-hours "${BUDGET:-2.5}" ;;
  continue)
    LR=${LR:-1.5e-4}; COMMON[7]=$LR  # a gentler peak for a model that has trained before
    CACHE=$RUNS/latents_bundled${EPOCHS:+_e$EPOCHS}  # more epochs = more distinct crops for a later phase
    python3 -m dittomusic autoencoder cache --ae "$BUNDLED" --data "$DATA" --out "$CACHE" \
      --epochs "${EPOCHS:-2}"
    "${RUN[@]}" train "${COMMON[@]}" --out "$RUNS/${OUT:-latent_cont}" --steps "${STEPS:-4000}" \
      --init "${INIT:-$BUNDLED}" --autoencoder "$BUNDLED" --latent-cache "$CACHE" --patch-frames 1 \
      --precision bf16 --max-cpu-hours "${BUDGET:-2.5}" ;;
  ae_gan2)
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_gan2" --init "$BUNDLED" \
      --freeze-encoder --adversarial --adv-weight "${ADV:-1.0}" --steps "${STEPS:-6000}" --batch-size 16 --lr 1e-4 \
      --crop-frames 128 --max-cpu-hours "${BUDGET:-0.6}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_gan2" --out "$RUNS/ae_gan2.safetensors" ;;
  ae_post)
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_post" --init "$BUNDLED" --freeze-encoder \
      --freeze-decoder --post-channels 16 --adversarial --adv-weight 1.0 --steps "${STEPS:-3000}" --batch-size 16 \
      --lr 2e-4 --crop-frames 128 --max-cpu-hours "${BUDGET:-0.75}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_post" --out "$RUNS/ae_post.safetensors" ;;
  ae_gen)
    [ -f "$RUNS/gen_latents.safetensors" ] || python3 -m dittomusic autoencoder samples --data "$DATA" \
      --out "$RUNS/gen_latents.safetensors" --clips 768
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_gen" --init "$BUNDLED" --freeze-encoder \
      --adversarial --adv-weight "${ADV:-0.5}" --disc-view "${VIEW:-mel}" --adv-texture \
      --gen-latents "$RUNS/gen_latents.safetensors" --gen-batch 16 --steps "${STEPS:-4000}" --batch-size 16 \
      --lr 1e-4 --crop-frames 128 --max-cpu-hours "${BUDGET:-0.8}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_gen" --out "$RUNS/ae_gen.safetensors"
    # the bundled model with this decoder (and the bundled texture noise it trained under)
    python3 -m dittomusic autoencoder swap "$BUNDLED" "$RUNS/ae_gen.safetensors" --out "$RUNS/base_gen.safetensors" ;;
  texnet)
    [ -f "$RUNS/gen_latents.safetensors" ] || python3 -m dittomusic autoencoder samples --data "$DATA" \
      --out "$RUNS/gen_latents.safetensors" --clips 768
    name="${NAME:-texnet_${VIEW:-mel}}"
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/$name" --init "$BUNDLED" --freeze-encoder \
      --adversarial --texture-gan --texture-channels "${TEXCH:-16}" --disc-view "${VIEW:-mel}" \
      --gen-latents "$RUNS/gen_latents.safetensors" --gen-batch 12 --steps "${STEPS:-3000}" --batch-size 12 \
      --lr "${LR:-2e-4}" --crop-frames 64 --max-cpu-hours "${BUDGET:-0.5}" --val-every 1000
    python3 -m dittomusic autoencoder export "$RUNS/$name" --out "$RUNS/$name.safetensors"
    python3 -m dittomusic autoencoder swap "$BUNDLED" "$RUNS/$name.safetensors" --out "$RUNS/base_$name.safetensors" ;;
  texture)
    python3 -m dittomusic autoencoder texture "$BUNDLED" --data "$DATA" --out "$RUNS/base_tex.safetensors"
    # the sampler and guidance that generation uses when none is named: the sweep's choice
    python3 -c 'import sys; from dittomusic.checkpoint import set_sampling as s; s(sys.argv[1], sys.argv[1], "dpmpp_2m", 2.0, sys.argv[2])' \
      "$RUNS/base_tex.safetensors" "sweep (docs/base_model/v2/sweep): FAD/validation 1.49 vs 2.13 for ddim at 3.0" ;;
  sweep)
    mkdir -p "$RUNS/sweep"
    for cfg in "ddim 2.0" "ddim 1.5" "ddpm 3.0" "dpmpp_2m 2.0"; do
      set -- $cfg
      python3 -m dittomusic eval model --model "$BUNDLED" --data "$DATA" --per-collection "${PER_COLLECTION:-20}" \
        --sampler "$1" --guidance "$2" --out "$RUNS/sweep/eval_$1_g$2.json"
    done ;;
  ae_gan)
    "${RUN[@]}" autoencoder train --data "$DATA" --out "$RUNS/ae_gan" --init "$RUNS/ae_long.safetensors" \
      --freeze-encoder --adversarial --steps 4000 --batch-size 16 --lr 1e-4 --crop-frames 128 \
      --max-cpu-hours "${BUDGET:-1.0}" --val-every 500
    python3 -m dittomusic autoencoder export "$RUNS/ae_gan" --out "$RUNS/ae_gan.safetensors" ;;
  recon)
    name=${2:?give an autoencoder name: ae, ae_long, ae_gan}
    python3 benchmarks/ae_recon.py --ae "$RUNS/$name.safetensors" --data "$DATA" --clips 60 \
      --png "$RUNS/recon_$name.png" > "$RUNS/recon_$name.json"
    cat "$RUNS/recon_$name.json" ;;
  latent)
    python3 -m dittomusic train "${COMMON[@]}" --out "$RUNS/latent" --steps 15000 --autoencoder "$RUNS/ae.safetensors" \
      --patch-frames 1 --max-cpu-hours "${BUDGET:-0.5}" ;;
  unet)
    python3 -m dittomusic train "${COMMON[@]}" --out "$RUNS/unet" --steps 8000 --arch unet1d \
      --channels 192,256,320,384 --blocks 1 --max-cpu-hours "${BUDGET:-0.5}" ;;
  dit)
    python3 -m dittomusic train "${COMMON[@]}" --out "$RUNS/dit_p2" --steps 15000 --patch-frames 2 \
      --max-cpu-hours "${BUDGET:-0.5}" ;;
  eval)
    name=${2:?give a run name: latent, unet, dit_p2, or v1 for the bundled model}
    if [ "$name" = v1 ]; then  # v1 left the package in issue 20; git keeps it
      model="$RUNS/base_v1.safetensors"; git show e73203f:src/dittomusic/assets/base_v1.safetensors > "$model"
    elif [ "$name" = bundled ]; then model=$BUNDLED; else
      model="$RUNS/$name.safetensors"
      python3 -m dittomusic export "$RUNS/$name" --out "$model" ${AE:+--autoencoder "$RUNS/$AE.safetensors"}
    fi
    python3 -m dittomusic eval model --model "$model" --data "$DATA" --per-collection "${PER_COLLECTION:-20}" \
      --out "$RUNS/eval_$name.json" ;;
  table)
    python3 benchmarks/base_bakeoff.py "$RUNS"/eval_*.json ;;
  *)
    sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 2 ;;
esac
