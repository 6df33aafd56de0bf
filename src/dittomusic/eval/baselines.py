"""DITTO's Table 5 form: DITTO vs DOODL vs Guidance Gradients vs FreeDoM at 20 and 50 sampling
steps, on the same targets, tags and x_T. Shared by `benchmarks/paper_baselines.py` and
`dittomusic eval paper`.

Per method and step count: the final control loss (on the decoded mel), MS2C (mean optimization
steps until the loss is below tau, counting K + 1 for a clip that never gets there, with the
fraction that did), seconds per optimization step (MOS; for the one-pass guidance methods None:
their `wall_s` is the whole sample), model calls, and peak memory: the autograd-saved tensors (any
device; control/memory.py), plus on CUDA torch.cuda.max_memory_allocated above the loaded model.

    rows = baselines_table(backend, ctrl, cond, x_T, steps=(20, 50), iters=70)
    print(baselines_markdown(rows))
"""

from __future__ import annotations

import time

import torch

# DITTO Table 5 (intensity, K = 70, tau = 2 dB, one 40 GB A100)
PAPER = {("ditto", 20): {"mse": 4.758, "ms2c": 44.466, "s_per_step": 1.859, "gb": 5.002},
         ("doodl", 20): {"mse": 4.785, "ms2c": 49.203, "s_per_step": 4.177, "gb": 8.274},
         ("ditto", 50): {"mse": 7.640, "ms2c": 46.855, "s_per_step": 4.472, "gb": 5.094},
         ("doodl", 50): {"mse": 8.894, "ms2c": 47.834, "s_per_step": 10.036, "gb": 8.311}}
METHODS = ("ditto", "doodl", "gg", "freedom")  # the rows Table 5 and sec. 6.4 compare


def ms2c(history: list[list[float]], tau: float) -> tuple[list[int], list[bool]]:
    """Per item: the first optimization step whose loss is below tau (len(history) if none)."""
    steps, reached = [], []
    for b in range(len(history[0])):
        k = next((k for k, h in enumerate(history) if h[b] < tau), None)
        steps.append(len(history) if k is None else k)
        reached.append(k is not None)
    return steps, reached


def measure(backend, method: str, steps: int, ctrl, cond, x_T, settings, tau: float) -> dict:
    """One method at one step count: loss, MS2C, s/step, model calls and peak memory."""
    from dittomusic.control.memory import SavedTensorMeter
    from dittomusic.control.methods import get_method

    cuda = backend.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    with SavedTensorMeter() as meter:
        res = get_method(method)(backend, ctrl, cond, x_T, settings)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        loss = ctrl.loss(res.mel).float().cpu().tolist()
    row = {"method": method, "steps": steps, "final_loss": sum(loss) / len(loss), "per_target": loss,
           "wall_s": wall, "model_calls": res.model_calls, "peak_saved_mib": meter.peak_bytes / 2 ** 20,
           "peak_cuda_mib": (torch.cuda.max_memory_allocated() - base) / 2 ** 20 if cuda else None}
    if res.optim is not None:
        o = res.optim
        k, ok = ms2c(o.history, tau)
        row.update(iterations=o.iters, s_per_step=o.wall_s / max(1, o.evaluations),
                   ms2c=sum(k) / len(k), reached=sum(ok) / len(ok))
    else:  # a guidance method is one sampling pass: no optimization steps
        row.update(iterations=0, s_per_step=None, ms2c=None, reached=None)
    return row


def baselines_table(backend, ctrl, cond, x_T, *, steps=(20, 50), methods=METHODS, iters: int = 70,
                    lr: float = 5e-3, guidance: float = 3.0, tau: float = 2.0, on_row=None) -> list[dict]:
    """Every method at every step count (same lr for ditto and doodl: App. L). on_row(row) after each."""
    from dittomusic.control.methods import Settings, get_method
    from dittomusic.control.optimize import OptimConfig

    for m in methods:
        get_method(m)
    with torch.no_grad():  # warm-up, so the first method timed does not pay for first-call setup
        backend.sample(x_T, cond, steps=2, guidance=guidance)
    rows = []
    for st in steps:
        for m in methods:
            s = Settings(steps=st, guidance=guidance, optim=OptimConfig(iters=iters, lr=lr))
            rows.append(measure(backend, m, st, ctrl, cond, x_T, s, tau))
            if on_row is not None:
                on_row(rows[-1])
    return rows


def baselines_checks(rows: list[dict]) -> dict:
    """Issue #23's targets: DOODL's saved-tensor peak flat from the fewest to the most steps
    (ratio), its s/step over DITTO's at each step count (ratio, > 1 as in Table 5)."""
    by = {(r["method"], r["steps"]): r for r in rows}
    steps = sorted({r["steps"] for r in rows})
    checks = {}
    if len(steps) > 1 and all(("doodl", st) in by for st in steps):
        lo, hi = (by[("doodl", st)]["peak_saved_mib"] for st in (steps[0], steps[-1]))
        checks["doodl_memory_ratio_max_vs_min_steps"] = hi / lo
    for st in steps:
        if ("doodl", st) in by and ("ditto", st) in by:
            doodl, ditto = by[("doodl", st)]["s_per_step"], by[("ditto", st)]["s_per_step"]
            checks[f"doodl_vs_ditto_s_per_step_at_{st}"] = doodl / ditto
    return checks


def _cell(x, fmt: str, paper=None) -> str:
    s = "–" if x is None else format(x, fmt)
    return s + ("" if paper is None else f" ({format(paper, fmt)})")


def baselines_markdown(rows: list[dict], paper_steps: dict[int, int] | None = None) -> str:
    """Table 5's layout, ours (the paper's value at the same step count, or at paper_steps[ours]:
    a shortened run still shows the row it stands for)."""
    paper_steps = paper_steps or {}
    lines = ["| Method | Sampling steps | MSE ↓ | MS2C ↓ (steps) | MOS ↓ (s/step) | saved-tensor peak MiB | "
             "CUDA peak MiB (paper: GB) | model calls |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = PAPER.get((r["method"], paper_steps.get(r["steps"], r["steps"])), {})
        cuda = "–" if r["peak_cuda_mib"] is None else f"{r['peak_cuda_mib']:.0f}"
        if p:
            cuda += f" ({p['gb']:g} GB)"
        lines.append(f"| {r['method']} | {r['steps']} | {_cell(r['final_loss'], '.3f', p.get('mse'))} | "
                     f"{_cell(r['ms2c'], '.2f', p.get('ms2c'))} | "
                     f"{_cell(r['s_per_step'], '.3f', p.get('s_per_step'))} | "
                     f"{r['peak_saved_mib']:.1f} | {cuda} | {r['model_calls']} |")
    checks = baselines_checks(rows)
    if checks:
        lines += ["", "Checks (issue #23): " + "; ".join(f"{k} = {v:.2f}" for k, v in checks.items())
                  + " (targets: memory ratio ≤ 1.1, flat; DOODL/DITTO s/step > 1)."]
    return "\n".join(lines) + "\n"
