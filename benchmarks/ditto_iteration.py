"""Wall time of one DITTO iteration (intensity, 20-step DDIM with CFG, per-step checkpointing) on the
bundled model against another, side by side in one run. Prints JSON.

    git show e73203f:src/dittomusic/assets/base_v1.safetensors > /tmp/base_v1.safetensors  # v1, from git
    python benchmarks/ditto_iteration.py --other /tmp/base_v1.safetensors

One iteration = (time of a run with 1 + N iterations - time with 1) / N, so model loading, the
initial sample and the final decode cancel. Issue 17's target: v2's iteration at most 1.25x v1's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dittomusic.backends import open_backend
from dittomusic.control.methods import run_control
from dittomusic.control.runs import run_settings
from dittomusic.control.tasks import TaskOptions, build_control


def per_iteration(model, iters: int, device: str) -> float:
    backend = open_backend(None, model=model, device=device)
    prompt = backend.parse_prompt(collection="chorale")
    ctrl = build_control("intensity", backend.frames_for(None), TaskOptions(preset="tanh-rise"), backend.mel_cfg,
                         multiple=backend.frame_multiple)

    def run(k):
        _, settings = run_settings("intensity", "ditto", k, steps=20, guidance=3.0, checkpoint=True, progress=False)
        t0 = time.perf_counter()
        run_control(backend, "ditto", ctrl, prompt, seed=0, settings=settings, task="intensity")
        return time.perf_counter() - t0

    run(1)  # warm-up
    return (run(1 + iters) - run(1)) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", required=True, help="The model file to compare with.")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    bundled = per_iteration(None, args.iters, args.device)
    other = per_iteration(args.other, args.iters, args.device)
    from dittomusic.utils import machine_info

    print(json.dumps({"machine": machine_info(), "bundled_s_per_iter": round(bundled, 3), f"{Path(args.other).stem}_s_per_iter": round(other, 3),
                      "ratio": round(bundled / other, 2), "target_ratio": 1.25, "meets_target": bundled / other <= 1.25,
                      "torch_threads": torch.get_num_threads(), "iters": args.iters}, indent=1))


if __name__ == "__main__":
    main()
