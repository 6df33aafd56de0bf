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

import torch

# the measuring is the library's: `dittomusic eval paper` runs the same
from dittomusic.eval.baselines import METHODS, PAPER, baselines_checks, baselines_table, ms2c  # noqa: F401


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


def main() -> None:
    from dittomusic.control.base import BatchedControl
    from dittomusic.control.spec import get_task

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
    ctrls, _ = get_task("intensity").eval_targets(n, frames, None, backend.mel_cfg)
    ctrl = ctrls[0] if n == 1 else BatchedControl(ctrls)
    cond = backend.make_cond(None, n)
    x_T = backend.noise(n, frames, a.seed)
    report = lambda r: print(json.dumps({k: r[k] for k in ("method", "steps", "final_loss", "s_per_step",  # noqa: E731
                                                          "peak_saved_mib")}), flush=True)
    rows = baselines_table(backend, ctrl, cond, x_T, steps=a.steps, methods=a.methods.split(","), iters=iters,
                           lr=a.lr, guidance=a.guidance, tau=a.tau, on_row=report)
    checks = baselines_checks(rows)
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
