"""DITTO's Table 5 form: DITTO vs DOODL (x_T optimized through EDICT) vs the guidance baselines
Guidance Gradients and FreeDoM, at 20 and 50 sampling steps, side by side on the same intensity
targets and seeds in one run.

Per method and step count: the final control loss (intensity MSE, dB^2, on the decoded mel),
MS2C (mean optimization steps until the loss is below --tau, counting K + 1 for a clip that never
gets there, with the fraction that did), seconds per optimization step (MOS; for the one-pass
guidance methods the whole sample's seconds), model calls, and peak memory: the autograd-saved
tensors (any device; control/memory.py), plus on CUDA torch.cuda.max_memory_allocated above the
loaded model. Targets (issue #23): DOODL's memory flat from 20 to 50 steps, its s/step above DITTO's.

    python benchmarks/paper_baselines.py --quick              # a tiny random model, ~1 min on CPU
    python benchmarks/paper_baselines.py --device cuda        # the bundled model, K = 70, 3 targets
"""

from __future__ import annotations

import argparse
import json
import time

import torch

# DITTO Table 5 (intensity, K = 70, tau = 2 dB, one 40 GB A100)
PAPER = {("ditto", 20): {"mse": 4.758, "ms2c": 44.466, "s_per_step": 1.859, "gb": 5.002},
         ("doodl", 20): {"mse": 4.785, "ms2c": 49.203, "s_per_step": 4.177, "gb": 8.274},
         ("ditto", 50): {"mse": 7.640, "ms2c": 46.855, "s_per_step": 4.472, "gb": 5.094},
         ("doodl", 50): {"mse": 8.894, "ms2c": 47.834, "s_per_step": 10.036, "gb": 8.311}}
METHODS = ("ditto", "doodl", "gg", "freedom")
PRESETS = [("linear-rise", -38.0, -18.0), ("tanh-fall", -18.0, -36.0), ("cosine-rise", -36.0, -20.0)]


def tiny_backend(device):
    """A random MelDiT small enough for a CPU minute (the tests' tiny model)."""
    from dittomusic.backends import DenoiserBackend
    from dittomusic.data.arrange import FAMILIES, INSTRUMENTS, TEMPO_BUCKETS
    from dittomusic.models import MelDiT, ModelConfig

    vocab = {"collections": ["chorale", "Irish folk tune", "folk song"], "families": list(FAMILIES),
             "instruments": [i.name for i in INSTRUMENTS], "tempo_buckets": [b for b, _ in TEMPO_BUCKETS],
             "modes": ["major", "minor"]}
    torch.manual_seed(0)
    net = MelDiT(ModelConfig.for_vocab(vocab, width=32, depth=2, heads=2, patch_frames=8, denoise_head=64))
    for m in (net.patch_out, net.ada_out, net.head[-1], *[b.ada for b in net.blocks]):
        torch.nn.init.normal_(m.weight, std=0.05)
    net = net.to(device).eval().requires_grad_(False)
    return DenoiserBackend(net)


def ms2c(history: list[list[float]], tau: float) -> tuple[list[int], list[bool]]:
    """Per item: the first optimization step whose loss is below tau (len(history) if none)."""
    steps, reached = [], []
    for b in range(len(history[0])):
        k = next((k for k, h in enumerate(history) if h[b] < tau), None)
        steps.append(len(history) if k is None else k)
        reached.append(k is not None)
    return steps, reached


def measure(backend, method: str, steps: int, ctrl, cond, x_T, settings, tau: float) -> dict:
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


def main() -> None:
    from dittomusic.control import intensity_preset
    from dittomusic.control.base import BatchedControl, get_control
    from dittomusic.control.methods import Settings
    from dittomusic.control.optimize import OptimConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny random model, 1.5-s clips, K = 5, one target")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--iters", type=int, default=None, help="K [default: 70, 5 with --quick]")
    ap.add_argument("--targets", type=int, default=None, help="intensity targets [default: 3, 1 with --quick]")
    ap.add_argument("--tau", type=float, default=2.0, help="MS2C threshold on the loss (dB^2)")
    ap.add_argument("--seconds", type=float, default=None, help="clip length [default: the model's; 1.5 with --quick]")
    ap.add_argument("--lr", type=float, default=5e-3, help="Adam step of ditto and doodl (DITTO sec. 5.1, App. L)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    iters = a.iters if a.iters is not None else (5 if a.quick else 70)
    n = a.targets if a.targets is not None else (1 if a.quick else 3)
    if a.quick:
        backend = tiny_backend(device)
    else:
        from dittomusic.backends import open_backend

        backend = open_backend(None, device=device)
    frames = backend.frames_for(a.seconds if a.seconds is not None else (1.5 if a.quick else None))
    ctrls = [get_control("intensity", target=intensity_preset(p, frames, lo, hi), cfg=backend.mel_cfg)
             for p, lo, hi in PRESETS[:n]]
    ctrl = ctrls[0] if n == 1 else BatchedControl(ctrls)
    cond = backend.make_cond(None, n)
    x_T = backend.noise(n, frames, a.seed)
    with torch.no_grad():  # warm-up, so the first method timed does not pay for first-call setup
        backend.sample(x_T, cond, steps=2, guidance=a.guidance)
    rows = []
    for steps in a.steps:
        for method in a.methods.split(","):
            s = Settings(steps=steps, guidance=a.guidance, optim=OptimConfig(iters=iters, lr=a.lr))
            rows.append(measure(backend, method, steps, ctrl, cond, x_T, s, a.tau))
            print(json.dumps({k: rows[-1][k] for k in ("method", "steps", "final_loss", "s_per_step",
                                                        "peak_saved_mib")}), flush=True)
    by = {(r["method"], r["steps"]): r for r in rows}
    checks = {}
    if len(a.steps) > 1 and all(("doodl", st) in by for st in a.steps):
        lo, hi = (by[("doodl", st)]["peak_saved_mib"] for st in (min(a.steps), max(a.steps)))
        checks["doodl_memory_ratio_max_vs_min_steps"] = hi / lo
    for st in a.steps:
        if ("doodl", st) in by and ("ditto", st) in by:
            checks[f"doodl_vs_ditto_s_per_step_at_{st}"] = by[("doodl", st)]["s_per_step"] / by[("ditto", st)]["s_per_step"]
    print(json.dumps({
        "settings": {"quick": a.quick, "device": str(device), "steps": a.steps, "iters": iters, "targets": n,
                     "frames": frames, "tau": a.tau, "lr": a.lr, "guidance": a.guidance, "seed": a.seed,
                     "model": "tiny random MelDiT" if a.quick else "bundled"},
        "rows": rows, "checks": checks,
        "targets": {"doodl_memory_ratio_max_vs_min_steps": "<= 1.1 (flat)", "doodl_vs_ditto_s_per_step_at_N": "> 1"},
        "paper_table5": {f"{m}@{st}": v for (m, st), v in PAPER.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
