"""How fast DITTO-2's real decodes converge, per step size and refresh interval: what --tol would save.

    python benchmarks/ditto2_convergence.py [--task intensity] [--targets 6] [--seeds 0 1] \
        [--lrs 0.01 0.02] [--refreshes 5 10] [--iters 70] [--tols 0.5 1 2] [--student FILE]

Each (lr, refresh) runs every target from every seed as one batch for the full K, with the student
decode, and records the loss of each real decode (the report's decoded_history). For each --tol it
then reads, per clip, the first refresh whose decode is within it: the iterations and decodes a
run with that --tol would have spent before stopping, and the loss it would have returned (the
best decode so far). A clip that never meets a tolerance spends all K. Losses are on the decoded
mel (the optimizer's own loss, dB² for intensity), not on the vocoded waveform. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def first_meet(history: list, item: int, tol: float) -> tuple[int, int, float]:
    """(iterations, decodes, best loss so far) at the first decode of `item` within tol (else the end)."""
    best = float("inf")
    for n, (k, losses) in enumerate(history):
        best = min(best, losses[item])
        if best <= tol:
            return k, n + 1, best
    return history[-1][0], len(history), best


def main() -> None:
    from dittomusic.control import BatchedControl
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.eval.control import build_targets
    from dittomusic.generate import Pipeline, make_tags

    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="intensity")
    ap.add_argument("--targets", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-2, 2e-2])
    ap.add_argument("--refreshes", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--iters", type=int, default=70)
    ap.add_argument("--decode-steps", type=int, default=4)
    ap.add_argument("--tols", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    ap.add_argument("--student", default=None)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()

    pipe = Pipeline(device=a.device)
    ctrls, names = build_targets(a.task, a.targets, pipe.backend.clip_frames, None, pipe.mel_cfg)
    tags = [make_tags(pipe.vocab, collection=c) for c in pipe.vocab["collections"]]
    out = {"settings": vars(a), "targets": names, "runs": []}
    for lr in a.lrs:
        for refresh in a.refreshes:
            history, walls = [], []
            for seed in a.seeds:
                s = Settings(optim=OptimConfig(iters=a.iters, lr=lr), student=a.student, decode="student",
                             decode_steps=a.decode_steps, refresh=refresh)
                t0 = time.perf_counter()
                o = run_control(pipe, "ditto2", BatchedControl(ctrls), [tags[i % len(tags)] for i in range(len(ctrls))],
                                seed=seed, settings=s, task=a.task)
                walls.append(time.perf_counter() - t0)
                history.append(o.report["decoded_history"][:-1])  # the refreshes (the last entry: final scoring)
            items = [(h, i) for h in history for i in range(len(ctrls))]
            run = {"lr": lr, "refresh": refresh, "clips": len(items),
                   "full_k_best_loss_mean": float(np.mean([min(x[1][i] for x in h) for h, i in items])),
                   "wall_s": walls, "by_tol": {}}
            for tol in a.tols:
                meets = [first_meet(h, i, tol) for h, i in items]
                run["by_tol"][str(tol)] = {
                    "met": int(sum(m[2] <= tol for m in meets)),
                    "iterations_mean": float(np.mean([m[0] for m in meets])),
                    "decodes_mean": float(np.mean([m[1] for m in meets])),
                    "loss_mean": float(np.mean([m[2] for m in meets])),
                    "loss_median": float(np.median([m[2] for m in meets]))}
            out["runs"].append(run)
            print(json.dumps(run), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
