"""Training-step time of MelDiT against a 2-D conv UNet of similar size, side by side. Prints JSON.

    python benchmarks/arch_step_time.py [--batch 8] [--repeats 3]

The UNet is diffusers' UNet2DModel on the mel as a 1-channel image (the papers' base model
is a 2-D conv UNet). It has fewer parameters than MelDiT (4.1 M vs 11.7 M), so the
comparison favours the UNet.
"""

import argparse
import json
import os
import statistics
import time

import torch

from dittomusic.models import MelDiT, ModelConfig


def step_time(fn, params, repeats):
    opt = torch.optim.AdamW(params, 1e-4)

    def one():
        loss = fn()
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    from diffusers import UNet2DModel

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    b = args.batch
    x = torch.randn(b, 160, 512)
    t = torch.randint(0, 1000, (b,))
    dit = MelDiT(ModelConfig())
    unet = UNet2DModel(sample_size=(160, 512), in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(32, 64, 128, 128), norm_num_groups=16,
                       down_block_types=("DownBlock2D",) * 4, up_block_types=("UpBlock2D",) * 4)
    t_dit = step_time(lambda: dit(x, t.float()).square().mean(), dit.parameters(), args.repeats)
    t_unet = step_time(lambda: unet(x[:, None], t).sample.square().mean(), unet.parameters(), args.repeats)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    from dittomusic.utils import machine_info

    print(json.dumps({
        "machine": machine_info(), "batch": b, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "meldit": {"params_M": round(n(dit) / 1e6, 2), "step_s": round(t_dit, 3)},
        "unet2d": {"params_M": round(n(unet) / 1e6, 2), "step_s": round(t_unet, 3)},
        "unet_over_meldit": round(t_unet / t_dit, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
