"""CPU time of one latent-diffusion training step, side by side: fp32 against bf16 autocast, and the
autoencoder's encode (which `train --latent-cache` removes from the step). Prints JSON.

    python benchmarks/latent_step_time.py [--batch 32] [--repeats 4]

The latent DiT is base model v2's (width 256, depth 8, 1-frame patches over a 64 x 128 latent);
networks are randomly initialised (timing only). CPU time of this process, so a busy machine
changes it less than wall time would; run with OMP_NUM_THREADS=1 to match training.
"""

import argparse
import json
import os
import statistics
import time

import torch

from dittomusic.models import ARCHS, build_denoiser
from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder
from dittomusic.sampling.schedule import NoiseSchedule
from dittomusic.train.base import autocast, diffusion_loss

VOCAB = {"collections": [f"c{i}" for i in range(6)], "instruments": [f"i{i}" for i in range(40)],
         "families": [f"f{i}" for i in range(8)], "tempo_buckets": ["slow", "moderate", "fast"], "modes": ["major", "minor"]}


def cpu_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    torch.manual_seed(0)
    B = args.batch
    ae = MelAutoencoder(AutoencoderConfig()).eval().requires_grad_(False)
    mcfg = ARCHS["dit"][0].for_vocab(VOCAB, n_mels=64, clip_frames=128, sigma_data=1.0, patch_frames=1)
    net = build_denoiser(mcfg)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    sched = NoiseSchedule.cosine()
    x0 = torch.randn(B, 64, 128)
    mel = torch.rand(B, 160, 512) * 2 - 1

    def step(precision):
        def one():
            with autocast(precision, "cpu"):
                loss = diffusion_loss(net, x0, torch.randint(0, 1000, (B,)), torch.randn_like(x0), None, None, sched,
                                      "v_prediction")
            opt.zero_grad()
            loss.backward()
            opt.step()
        return one

    def encode():
        with torch.no_grad():
            ae.encode(mel)

    fp32, bf16, enc = cpu_time(step("fp32"), args.repeats), cpu_time(step("bf16"), args.repeats), \
        cpu_time(encode, args.repeats)
    from dittomusic.utils import machine_info

    print(json.dumps({
        "machine": machine_info(), "batch": B, "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "params_m": round(net.num_params() / 1e6, 2),
        "step_fp32_cpu_s": round(fp32, 3), "step_bf16_cpu_s": round(bf16, 3), "encode_cpu_s": round(enc, 3),
        "bf16_speedup": round(fp32 / bf16, 2),
        "uncached_fp32_over_cached_bf16": round((fp32 + enc) / bf16, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
