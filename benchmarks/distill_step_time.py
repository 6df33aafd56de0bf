"""Seconds per distillation step of the bundled teacher on real clips, one CPU thread.

    python benchmarks/distill_step_time.py --data /work/data/full [--batch 8 32] [--repeats 2]

Times the pieces of a step separately: the teacher's guided DDIM step (CD takes one per step,
CTD k ~ U{1..teacher_steps}, mean 2.5 by default), and the rest (student forward/backward,
target, optimizer; CTD adds the stop-grad maps to CLEAN). A step = rest + k * teacher step.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dittomusic.data.dataset import MelDataset
    from dittomusic.distill import CLEAN, cd_loss, ctd_loss, student_from_teacher, teacher_step, time_grid
    from dittomusic.models.loading import load_model
    from dittomusic.train.base import cond_from_batch
    from dittomusic.train.common import adamw, optimizer_step

    teacher, _ = load_model(device="cpu")
    ds = MelDataset(args.data, "train", random_crop=False)
    grid = torch.tensor(time_grid(20), dtype=torch.float32)
    results = {}

    def timed(fn) -> float:
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        return (time.perf_counter() - t0) / args.repeats

    for bsz in args.batch:
        b = {k: torch.stack([ds[i][k] for i in range(bsz)]) for k in ("mel", "collection", "tempo", "mode",
                                                                      "instruments")}
        cond = cond_from_batch(b)
        noise = torch.randn(b["mel"].shape, generator=torch.Generator().manual_seed(0))
        i = torch.arange(bsz) % 19
        t, u, s = grid[i], grid[i + 1], torch.full((bsz,), float(CLEAN))
        with torch.no_grad():
            teacher_s = timed(lambda: teacher_step(teacher, b["mel"], t, u, cond, 3.0))
        row = {"teacher_cfg_ddim_step": teacher_s}
        for kind in ("cd", "ctd"):
            student = student_from_teacher(teacher, kind)
            target = student_from_teacher(teacher, kind).requires_grad_(False)
            opt = adamw(student, 1e-5, 0.0)
            if kind == "cd":
                step = lambda: optimizer_step(cd_loss(student, target, teacher, b["mel"], t, u, noise, cond, 3.0),
                                              student, opt, 1.0)
            else:  # k = 1 here; each further teacher step adds teacher_cfg_ddim_step
                step = lambda: optimizer_step(ctd_loss(student, target, teacher, b["mel"], torch.stack([t, u]), s,
                                                       noise, cond, 3.0), student, opt, 1.0)
            row[f"{kind}_step_k1"] = timed(step)
        row["cd_step"] = row["cd_step_k1"]
        row["ctd_step_mean_k2.5"] = row["ctd_step_k1"] + 1.5 * teacher_s
        results[bsz] = {k: round(v, 2) for k, v in row.items()}
        print(json.dumps({bsz: results[bsz]}), flush=True)


if __name__ == "__main__":
    main()
