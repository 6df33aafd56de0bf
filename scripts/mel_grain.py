"""How grainy the base model's mels are next to real ones: frame-to-frame change over time.

Prints JSON: the mean |mel[t+1] - mel[t]| (scaled-dB units; 1 unit = 80 dB) of real test
clips and of default samples, split into steps that cross a 4-frame patch boundary of the
MelDiT and steps inside a patch, and the one-call denoiser's error on real clips at low noise
(x0 estimate's |dt| and MSE against the clean mel, next to the noisy input's MSE).

    python scripts/mel_grain.py --data data/full [--clips 5] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def _grain(m: torch.Tensor, patch: int) -> dict:
    d = (m[..., 1:] - m[..., :-1]).abs()
    j = torch.arange(d.shape[-1], device=d.device)
    cross = (j % patch) == patch - 1  # step j compares frames j and j + 1
    return {"dt": round(d.mean().item(), 4), "dt_across_patches": round(d[..., cross].mean().item(), 4),
            "dt_within_patches": round(d[..., ~cross].mean().item(), 4)}


def main() -> int:
    from dittomusic.errors import DittoError
    from dittomusic.eval.control import reference_clips
    from dittomusic.generate import Pipeline
    from dittomusic.sampling import model_output_to_x0_eps

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a dataset built by `dittomusic data build`")
    ap.add_argument("--model", default=None, help="model file [default: the bundled one]")
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        pipe = Pipeline(a.model)
        p = pipe.model.cfg.patch_frames
        real = torch.as_tensor(reference_clips(a.data, a.clips, a.seed)[0]).float().to(pipe.device)
        out = {"real": _grain(real, p)}
        with torch.no_grad():
            x_T = pipe.noise(a.clips, real.shape[-1] // pipe.model.frames_per_step, a.seed)
            out[f"generated (ddim {a.steps})"] = _grain(pipe.sample(x_T, None, steps=a.steps), p)
            ac = pipe.schedule.alphas_cumprod.float()
            g = torch.Generator().manual_seed(a.seed)
            drop = torch.ones(a.clips, dtype=torch.bool, device=pipe.device)
            den = {}
            for t in (9, 49, 99, 199):
                al = ac[t].to(pipe.device)
                eps = torch.randn(real.shape, generator=g).to(pipe.device)
                xt = al.sqrt() * real + (1 - al).sqrt() * eps
                x0, _ = model_output_to_x0_eps(pipe.model(xt, torch.tensor(float(t)), None, drop), xt, al.sqrt(),
                                               (1 - al).sqrt(), pipe.model.cfg.prediction)
                den[str(t)] = {"x0_dt": round(_grain(x0, p)["dt"], 4),
                               "x0_mse": round((x0 - real).square().mean().item(), 5),
                               "noisy_input_mse": round((xt / al.sqrt() - real).square().mean().item(), 5)}
            out["denoiser_on_real_by_t"] = den
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
