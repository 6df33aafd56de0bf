"""DITTO Table 7's form: how closely each way of finding x_T regenerates real clips (mel MSE),
across CFG scales, plus App. D's use of an inversion: the same x_T resampled under other tags.

    out = inversion_table(backend, test_mels, tags, guidances=(0, 1, 4, 7.5), iters=70)
    print(out["markdown"])
"""

from __future__ import annotations

import torch
from torch import Tensor

from dittomusic.errors import DittoError

GUIDANCES = (0.0, 1.0, 4.0, 7.5)
METHODS = ("naive_noising", "ddim_inversion", "ditto_invert")
LABELS = {"naive_noising": "Naive", "ddim_inversion": "DDIM", "ditto_invert": "DITTO"}
# DITTO Table 7, 6-s model, MusicCaps (w -> MSE); null-text inversion is not reproduced here
PAPER = {"naive_noising": {0.0: 0.0678, 1.0: 0.0668, 4.0: 0.0714, 7.5: 0.0787},
         "ddim_inversion": {0.0: 0.0115, 1.0: 0.0072, 4.0: 0.0192, 7.5: 0.0334},
         "ditto_invert": {0.0: 0.0011, 1.0: 0.0010, 4.0: 0.0025, 7.5: 0.0075}}


def inversion_controls(backend, ref_mels: Tensor):
    from dittomusic.control import BatchedControl, get_control

    if ref_mels.dim() != 3 or ref_mels.shape[0] < 1:
        raise DittoError(f"reference mels must be [N, n_mels, frames], got {tuple(ref_mels.shape)}")
    ctrls = [get_control("invert", target=r, cfg=backend.mel_cfg) for r in ref_mels.cpu()]
    return ctrls[0] if len(ctrls) == 1 else BatchedControl(ctrls)


def inversion_table(backend, ref_mels: Tensor, tags=None, *, guidances=GUIDANCES, methods=METHODS, steps: int = 20,
                    iters: int = 70, lr: float | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Every method at every CFG scale on the same clips and starting noise. -> {"rows": [{method,
    guidance, mse, per_clip, wall_s, model_calls}], "mels": {(method, w): [N, n_mels, F]},
    "markdown": the table with the paper's value beside each}. tags: what make_cond takes (one
    per clip, or one for all; None: unconditional)."""
    import time

    from dittomusic.control.methods import Settings, default_lr, get_method
    from dittomusic.control.optimize import OptimConfig

    ctrl = inversion_controls(backend, ref_mels)
    n, frames = ref_mels.shape[0], ref_mels.shape[-1]
    x_T = backend.noise(n, frames, seed)
    cond = backend.make_cond(tags, n)
    rows, mels = [], {}
    for w in guidances:
        for m in methods:
            s = Settings(steps=steps, guidance=float(w), progress=progress,
                         optim=OptimConfig(iters=iters, lr=default_lr(m) if lr is None else lr))
            t0 = time.perf_counter()
            res = get_method(m)(backend, ctrl, cond, x_T, s)
            with torch.no_grad():
                per = ctrl.loss(res.mel).float().cpu().tolist()
            rows.append({"method": m, "guidance": float(w), "mse": sum(per) / n, "per_clip": per,
                         "wall_s": time.perf_counter() - t0, "model_calls": res.model_calls})
            mels[(m, float(w))] = res.mel.detach().cpu()
    return {"rows": rows, "mels": mels, "markdown": inversion_markdown(rows)}


def inversion_markdown(rows: list[dict]) -> str:
    """Table 7's layout: a row per method, a column per w, ours (paper's) in each cell."""
    ws = sorted({r["guidance"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["guidance"]): r["mse"] for r in rows}
    lines = ["| Method | " + " | ".join(f"w={w:g}" for w in ws) + " |", "|---" * (len(ws) + 1) + "|"]
    for m in methods:
        vals = []
        for w in ws:
            p = PAPER.get(m, {}).get(w)
            vals.append(f"{cell[(m, w)]:.4f}" + (f" ({p:.4f})" if p is not None else ""))
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n\nMel MSE on scaled log-mels, ours (the paper's 6-s MusicCaps value).\n"


def edit_tags(backend, ref_mel: Tensor, source_tags, target_tags, *, steps: int = 20, guidance: float = 3.0,
              iters: int = 70, lr: float | None = None, seed: int = 0, progress: bool = False) -> dict:
    """App. D's use: invert a clip under source_tags (ditto_invert), then sample the optimized x_T
    under target_tags. -> {"x_T", "inverted", "edited" (mels [1, n_mels, F]), "mse_inverted",
    "mse_edited" (each against the reference)}."""
    from dittomusic.control.methods import Settings, default_lr, get_method
    from dittomusic.control.optimize import OptimConfig

    ctrl = inversion_controls(backend, ref_mel.reshape(1, *ref_mel.shape[-2:]))
    x_T = backend.noise(1, ref_mel.shape[-1], seed)
    s = Settings(steps=steps, guidance=guidance, progress=progress,
                 optim=OptimConfig(iters=iters, lr=default_lr("ditto_invert") if lr is None else lr))
    inv = get_method("ditto_invert")(backend, ctrl, backend.make_cond(source_tags, 1), x_T, s)
    with torch.no_grad():
        edited = backend.sample(inv.x_T, backend.make_cond(target_tags, 1), steps=steps, guidance=guidance)
        return {"x_T": inv.x_T, "inverted": inv.mel, "edited": edited,
                "mse_inverted": float(ctrl.loss(inv.mel)[0]), "mse_edited": float(ctrl.loss(edited)[0])}


def inversion_realism(mels: dict, real: Tensor) -> list[dict]:
    """The realism yardstick (eval/realism.py, no C2ST: a few clips cannot train its critic) on
    each inversion's regenerated mels against real clips. mels: {(method, w): [N, n_mels, F]}
    (inversion_table's). -> rows {method, guidance, grain_ratio, flatness_ratio, texture_fad
    (None under 2 clips: no covariance)}."""
    from dittomusic.eval.realism import compare, measures, texture_fad

    real_m = measures(real)
    rows = []
    for (m, w), mel in mels.items():
        ratio, _ = compare(real_m, measures(mel))
        rows.append({"method": m, "guidance": float(w), "grain_ratio": ratio["grain"],
                     "flatness_ratio": ratio["flatness_mean"],
                     "texture_fad": texture_fad(real, mel) if mel.shape[0] > 1 else None})
    return rows
