"""Reusing optimized latents (DITTO App. I, J).

Table 10's form: DITTO optimizes x*_T through DDIM for a target; then B stochastic samples are
drawn from that one x*_T with DDPM, and with DDPM + FreeDoM guidance toward the same target,
under the prompt it was optimized with (fixed) or a random prompt per sample. Reported: the
mean loss over the B samples.

App. J's finding: a batch sharing one x_T (prompts varying) has a lower intra-batch variance of
every feature than a batch of independent x_T: low-frequency content is set early in sampling.

    rows = reuse_table(backend, {"intensity": ctrl, ...}, prompt, random_prompts, batch=10)
    rows = intra_batch_variance(backend, {"intensity": ctrl, ...}, random_prompts, sets=5)
"""

from __future__ import annotations

import numpy as np
import torch

# DITTO Table 10 (B = 10): feature -> sampler -> (random prompt, fixed prompt)
PAPER = {"intensity": {"ddpm": (24.5120, 13.8316), "ddpm+freedom": (16.9780, 11.2481)},
         "melody": {"ddpm": (2.7973, 2.7441), "ddpm+freedom": (1.8482, 1.8710)},
         "structure": {"ddpm": (0.2952, 0.2643), "ddpm+freedom": (0.0251, 0.0235)}}


def random_tags(vocab: dict, n: int, seed: int) -> list:
    """n random tag sets (collection, one instrument, tempo, mode) of a dittomusic model's vocab."""
    from dittomusic.generate import Tags

    rng = np.random.default_rng(seed)

    def pick(key):
        return str(rng.choice(vocab[key])) if vocab.get(key) else None

    return [Tags(pick("collections"), [pick("instruments")] if vocab.get("instruments") else [], pick("tempo_buckets"),
                 pick("modes")) for _ in range(n)]


def reuse_table(backend, controls: dict, prompt, random_prompts: list, *, batch: int = 10, steps: int = 20,
                guidance: float = 3.0, iters: int | None = None, lr: float | None = None, seed: int = 0,
                freedom_scale: float | None = None, progress: bool = False) -> list[dict]:
    """For each named control: optimize x*_T (DITTO, DDIM) under `prompt`, then `batch` samples
    from it with DDPM and DDPM + FreeDoM, under `prompt` and under random_prompts[:batch]. ->
    rows {feature, sampler, prompt: "fixed" | "random", loss (mean over the batch), per_sample,
    optimized_loss (DITTO's own, DDIM), paper (Table 10's value)}."""
    from dittomusic.control import BatchedControl
    from dittomusic.control.methods import FREEDOM_SCALE, Settings, default_lr, get_method
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.control.tasks import default_iters

    if len(random_prompts) < batch:
        raise ValueError(f"need {batch} random prompts, got {len(random_prompts)}")
    rows = []
    for name, ctrl in controls.items():
        frames = ctrl.frames or backend.clip_frames
        task = getattr(ctrl, "task", name)
        s = Settings(steps=steps, guidance=guidance, progress=progress, optim=OptimConfig(
            iters=default_iters(task) if iters is None else iters, lr=default_lr("ditto") if lr is None else lr))
        x0 = backend.noise(1, frames, seed)
        opt = get_method("ditto")(backend, ctrl, backend.make_cond(prompt, 1), x0, s)
        x_T = opt.x_T.expand(batch, *opt.x_T.shape[1:]).clone()
        many = BatchedControl([ctrl] * batch)
        for which, p in (("random", list(random_prompts[:batch])), ("fixed", prompt)):
            cond = backend.make_cond(p, batch)
            for sampler, method in (("ddpm", "default"), ("ddpm+freedom", "freedom")):
                ss = Settings(steps=steps, guidance=guidance, sampler="ddpm", noise_seed=seed + 1,
                              freedom_scale=FREEDOM_SCALE if freedom_scale is None else freedom_scale)
                res = get_method(method)(backend, many, cond, x_T, ss)
                with torch.no_grad():
                    per = many.loss(res.mel).float().cpu().tolist()
                paper = PAPER.get(task, {}).get(sampler)
                rows.append({"feature": name, "sampler": sampler, "prompt": which, "loss": float(np.mean(per)),
                             "per_sample": per, "optimized_loss": opt.optim.best_loss[0],
                             "paper": None if paper is None else paper[0 if which == "random" else 1]})
    return rows


def _variance(feature) -> float:
    f = torch.stack(feature) if isinstance(feature, list) else feature  # [B, ...] per item
    f = f.reshape(f.shape[0], -1).double()
    return float(f.var(dim=0).mean())


def intra_batch_variance(backend, controls: dict, prompts: list, *, sets: int = 5, steps: int = 20,
                         guidance: float = 3.0, sampler: str = "ddim", seed: int = 0) -> list[dict]:
    """Per feature, the mean over `sets` batches (one item per prompt) of the variance across the
    batch of the feature (per element, averaged): x_T shared by the batch vs independent x_T.
    -> rows {feature, fixed_x_T, random_x_T, ratio, per_set_fixed, per_set_random}."""
    from dittomusic.control.methods.baselines import noise_generator
    from dittomusic.control.methods import Settings

    b = len(prompts)
    if b < 2:
        raise ValueError("intra-batch variance needs a batch of at least 2 prompts")
    frames = next((c.frames for c in controls.values() if c.frames), None) or backend.clip_frames
    cond = backend.make_cond(list(prompts), b)
    out = {name: {"fixed": [], "random": []} for name in controls}
    for k in range(sets):
        starts = {"fixed": backend.noise(1, frames, seed + 2 * k).expand(b, *backend.latent_shape(frames)).clone(),
                  "random": backend.noise(b, frames, seed + 2 * k + 1)}
        for which, x_T in starts.items():
            gen = noise_generator(Settings(sampler=sampler, noise_seed=seed + k))
            with torch.no_grad():
                mel = backend.sample(x_T, cond, sampler=sampler, steps=steps, guidance=guidance, generator=gen)
                for name, ctrl in controls.items():
                    out[name][which].append(_variance(ctrl.feature(mel)))
    return [{"feature": name, "fixed_x_T": float(np.mean(v["fixed"])), "random_x_T": float(np.mean(v["random"])),
             "ratio": float(np.mean(v["fixed"]) / max(np.mean(v["random"]), 1e-30)),
             "per_set_fixed": v["fixed"], "per_set_random": v["random"]} for name, v in out.items()]


def reuse_markdown(rows: list[dict]) -> str:
    """Table 10's layout: feature, sampler, L (random prompt), L (fixed prompt), paper beside."""
    cell = {(r["feature"], r["sampler"], r["prompt"]): r for r in rows}
    keys = list(dict.fromkeys((r["feature"], r["sampler"]) for r in rows))
    lines = ["| Feature | Sampler | L (random prompt) | L (fixed prompt) |", "|---|---|---|---|"]
    for f, smp in keys:
        vals = []
        for which in ("random", "fixed"):
            r = cell.get((f, smp, which))
            vals.append("–" if r is None else f"{r['loss']:.4g}" + ("" if r["paper"] is None else f" ({r['paper']:.4g})"))
        lines.append(f"| {f} | {smp.upper().replace('FREEDOM', 'FreeDoM')} | {vals[0]} | {vals[1]} |")
    return "\n".join(lines) + "\n\nMean loss over the B samples from one optimized x*_T, ours (the paper's).\n"
