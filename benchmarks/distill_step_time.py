"""Seconds per distillation step of the bundled teacher on real clips, one CPU thread.

    python benchmarks/distill_step_time.py --data /work/data/full [--batch 8 32] [--repeats 2] [--precision fp32 bf16]

Each precision is timed in the same run, side by side (bf16: every pass under bfloat16 autocast,
as `dittomusic distill --precision bf16` trains; a latent teacher encodes its clips first).

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
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dittomusic.data.dataset import MelDataset
    from dittomusic.distill import CLEAN, cd_loss, ctd_loss, student_from_teacher, teacher_step, time_grid
    from dittomusic.models.loading import load_model
    from dittomusic.train.base import autocast, cond_from_batch
    from dittomusic.train.common import adamw, optimizer_step
    from dittomusic.utils import machine_info

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

    clip = teacher.ae is None  # the pipeline clips a mel teacher's x0 only
    for bsz in args.batch:
        b = {k: torch.stack([ds[i][k] for i in range(bsz)]) for k in ("mel", "collection", "tempo", "mode",
                                                                      "instruments")}
        cond = cond_from_batch(b)
        with torch.no_grad():
            x0 = teacher.encode(b["mel"])
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        i = torch.arange(bsz) % 19
        t, u, s = grid[i], grid[i + 1], torch.full((bsz,), float(CLEAN))
        for prec in args.precision:
            with torch.no_grad(), autocast(prec, "cpu"):
                teacher_s = timed(lambda: teacher_step(teacher, x0, t, u, cond, 3.0, clip=clip))
            row = {"teacher_cfg_ddim_step": teacher_s}
            for kind in ("cd", "ctd"):
                student = student_from_teacher(teacher, kind)
                target = student_from_teacher(teacher, kind).requires_grad_(False)
                opt = adamw(student, 1e-5, 0.0)

                def step(kind=kind, student=student, target=target, opt=opt):
                    with autocast(prec, "cpu"):
                        if kind == "cd":
                            loss = cd_loss(student, target, teacher, x0, t, u, noise, cond, 3.0, clip=clip)
                        else:  # k = 1 here; each further teacher step adds teacher_cfg_ddim_step
                            loss = ctd_loss(student, target, teacher, x0, torch.stack([t, u]), s, noise, cond, 3.0,
                                            clip=clip)
                    optimizer_step(loss, student, opt, 1.0)
                row[f"{kind}_step_k1"] = timed(step)
            row["cd_step"] = row["cd_step_k1"]
            row["ctd_step_mean_k2.5"] = row["ctd_step_k1"] + 1.5 * teacher_s
            results[f"{bsz}_{prec}"] = {k: round(v, 2) for k, v in row.items()}
            print(json.dumps({"batch": bsz, "precision": prec, "machine": machine_info(), **results[f"{bsz}_{prec}"]}), flush=True)

if __name__ == "__main__":
    main()
