"""Does the per-token denoising head help? x0 error at several noise levels, with and without it.

    python benchmarks/denoise_head.py --data data/full [--steps 250]

Trains two small MelDiTs (width 128, depth 4) identically on 16 fixed training clips
(same seeds, same draws) and prints the RMS x0 error at t in {10, 49, 100, 300, 700} as JSON.
"""

import argparse
import json
import time

import torch

from dittomusic.data.dataset import MelDataset
from dittomusic.models import MelDiT, ModelConfig
from dittomusic.sampling.schedule import NoiseSchedule
from dittomusic.train.base import cond_from_batch, diffusion_loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=250)
    args = ap.parse_args()
    ds = MelDataset(args.data, "train", random_crop=False)
    idx = list(range(0, len(ds), max(1, len(ds) // 16)))[:16]
    b = {k: torch.stack([ds[i][k] for i in idx]) for k in ("mel", "collection", "tempo", "mode", "instruments")}
    sched = NoiseSchedule.cosine()
    a = sched.alphas_cumprod.float()
    test_noise = torch.randn(b["mel"].shape, generator=torch.Generator().manual_seed(9))

    def x0_err(m, t):
        tt = torch.full((len(idx),), t)
        at = a[tt].view(-1, 1, 1)
        xt = at.sqrt() * b["mel"] + (1 - at).sqrt() * test_noise
        with torch.no_grad():
            x0 = sched.to_x0(m(xt, tt.float(), cond_from_batch(b)), xt, tt)
        return round((x0 - b["mel"]).square().mean().sqrt().item(), 4)

    rows = {}
    for head in (0, 1024):
        torch.manual_seed(0)
        m = MelDiT(ModelConfig(width=128, depth=4, heads=4, denoise_head=head))
        opt = torch.optim.AdamW(m.parameters(), 1e-3)
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            t = torch.randint(0, 1000, (len(idx),), generator=g)
            noise = torch.randn(b["mel"].shape, generator=g)
            loss = diffusion_loss(m, b["mel"], t, noise, cond_from_batch(b), None, sched, "v_prediction")
            opt.zero_grad()
            loss.backward()
            opt.step()
        rows[f"denoise_head={head}"] = {"params_M": round(m.num_params() / 1e6, 2),
                                        "train_s": round(time.perf_counter() - t0, 1),
                                        "x0_rms_error": {t: x0_err(m, t) for t in (10, 49, 100, 300, 700)}}
    print(json.dumps({"steps": args.steps, "clips": len(idx), **rows}, indent=2))


if __name__ == "__main__":
    main()
