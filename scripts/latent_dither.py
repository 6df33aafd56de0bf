"""Are the bundled latent model's samples too clean in the latent? A diagnosis and a cheap test.

1. Encodes real test clips and compares their latents with generated ones: per-channel std and the
   std of frame-to-frame differences (how much fine temporal detail the latent carries).
2. Decodes the same generated latents with added Gaussian noise (`--scales`, in latent units:
   the latent has unit std), or with the VAE posterior's own noise (`posterior`: each channel's
   mean posterior std on real clips, times the scale), and scores each with the realism block
   (C2ST, grain, flatness, texture FAD) against the same real clips. Decoding here skips the
   decoder's texture noise (models/autoencoder.py), which this diagnosis led to.

Prints one JSON object (also written to --out).
    python scripts/latent_dither.py --data data/full --out docs/base_model/v2/latent_dither.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dittomusic.data.dataset import MelDataset
from dittomusic.eval.base_model import pick_clips, realism_block, stack_clips
from dittomusic.generate import Pipeline, Tags
from dittomusic.sampling.samplers import get_sampler


def latent_stats(z: torch.Tensor) -> dict:
    d = z.diff(dim=-1)
    return {"std": round(float(z.std()), 4), "channel_std_mean": round(float(z.std(dim=(0, 2)).mean()), 4),
            "diff_std": round(float(d.std()), 4), "diff_over_std": round(float(d.std() / z.std()), 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--per-collection", type=int, default=20)
    ap.add_argument("--scales", default="0,0.1,0.2,0.35,0.5")
    ap.add_argument("--posterior-scales", default="1,2")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(a.seed)
    pipe = Pipeline(a.model)
    b, ae = pipe.backend, pipe.model.ae
    test = MelDataset(a.data, "test", random_crop=False)
    idx = pick_clips(test, a.per_collection, a.seed)
    real = stack_clips(test, idx, "mel")
    groups = [test.rows[i].get("piece_id", i) for i in idx]
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"]) for r in (test.rows[i] for i in idx)]
    with torch.no_grad():
        z_real = torch.cat([ae.encode(real[s:s + 16]) for s in range(0, len(real), 16)])
        logvar = torch.cat([ae.posterior(real[s:s + 16])[1] for s in range(0, len(real), 16)])
        post_std = ((0.5 * logvar).exp().mean(dim=(0, 2)) * ae.cfg.latent_scale).view(1, -1, 1)
        z_gen = []
        for s in range(0, len(idx), 16):
            k = min(16, len(idx) - s)
            x_T = b.noise(k, b.clip_frames, a.seed + s)
            fn = b.model_fn(b.make_cond(tags[s:s + k], k), a.guidance)
            z_gen.append(get_sampler(a.sampler)(fn, x_T, b.schedule, a.steps, prediction=b.prediction))
        z_gen = torch.cat(z_gen)
    report = {"settings": vars(a), "n": len(idx),
              "latents": {"real": latent_stats(z_real), "generated": latent_stats(z_gen)},
              "posterior_std_mean": round(float(post_std.mean()), 4), "variants": {}}
    g = torch.Generator().manual_seed(a.seed + 7)
    eps = torch.randn(z_gen.shape, generator=g)
    variants = [(f"gaussian_{s}", float(s) * eps) for s in map(float, a.scales.split(","))]
    variants += [(f"posterior_{s}", float(s) * post_std * eps) for s in map(float, a.posterior_scales.split(","))]
    variants += [("real_latents_decoded", None)]
    for name, noise in variants:
        with torch.no_grad():
            z = z_real if noise is None else z_gen + noise
            # the mean decoder: this measures what the latent carries, before any texture noise
            mel = torch.cat([ae.decode(z[s:s + 16], texture=False).clamp(-1, 1) for s in range(0, len(z), 16)])
        r = realism_block(real, mel, seed=a.seed, c2st_repeats=a.repeats, real_groups=groups)
        report["variants"][name] = {"c2st": round(r["c2st"]["accuracy"], 3), "texture_fad": round(r["texture_fad"], 3),
                                    "grain": round(r["ratio"]["grain"], 3),
                                    "grain_audible": round(r["ratio"]["grain_audible"], 3),
                                    "flatness_mean": round(r["ratio"]["flatness_mean"], 3),
                                    "background_db": round(r["delta"].get("background_db_mean", float("nan")), 2)}
        print(name, report["variants"][name], flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
