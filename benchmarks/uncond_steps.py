"""How many sampler steps does the unconditional model need? Texture realism against sampler steps,
unconditional and tagged, and against the students' decodes (issue #21: rows a and c of `eval text`).

N test clips spread over the test split (the realism reference, as `eval text` picks it) give the
tags of the tagged rows; clip i's x_T comes from seed + i in every row. Each row prints one JSON line:
texture FAD against the reference, mean flatness as a multiple of real's, the background level
against real's (dB), and the paired-bootstrap ratio of its texture FAD to the same conditioning's
20-step DDIM row (95 % interval; `realism.texture_fad_ratio_ci`).

    python benchmarks/uncond_steps.py --data data/full
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 30, 50, 100], help="unconditional DDIM steps")
    ap.add_argument("--tagged-steps", type=int, nargs="+", default=[20, 50], help="tagged CFG DDIM steps")
    ap.add_argument("--students", nargs="*", default=["ctd", "cd"], help="bundled students' 4-step decodes")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()

    from dittomusic.data.dataset import MelDataset
    from dittomusic.distill.student import get_student, student_sampler
    from dittomusic.eval.realism import measures, spread_indices, texture_embedding, texture_fad_of, texture_fad_ratio_ci
    from dittomusic.eval.text import _noise
    from dittomusic.generate import Pipeline, Tags

    pipe = Pipeline(None, a.device)
    be = pipe.backend
    test = MelDataset(a.data, "test", random_crop=False)
    idx = spread_indices(len(test), a.clips)
    real = torch.stack([test[i]["mel"] for i in idx])
    ref, rm = texture_embedding(real), measures(real)
    rows = [test.rows[i] for i in idx]
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"]) for r in rows]
    n = len(idx)
    x_T = _noise(be, list(range(n)), be.frames_for(None), a.seed)
    base: dict[str, np.ndarray] = {}

    def report(name: str, cond: str, steps: int, fn) -> None:
        t0, mels = time.perf_counter(), []
        for s in range(0, n, a.batch):
            with torch.no_grad():
                mels.append(fn(x_T[s:s + a.batch], list(range(s, min(n, s + a.batch)))).float().cpu())
        mel = torch.cat(mels)
        emb, m = texture_embedding(mel), measures(mel)
        out = {"row": name, "conditioning": cond, "steps": steps, "clips": n,
               "texture_fad": round(texture_fad_of(ref, emb), 3),
               "flatness_x_real": round(m["flatness"]["mean"] / rm["flatness"]["mean"], 3),
               "background_vs_real_db": round(m["background_db"]["mean"] - rm["background_db"]["mean"], 2),
               "seconds": round(time.perf_counter() - t0, 1)}
        if cond not in base:
            base[cond] = emb  # the first row of a conditioning is its 20-step reference
        else:
            ci = texture_fad_ratio_ci(ref, emb, base[cond], seed=a.seed)
            out["vs_20_steps"] = {"ratio": round(ci["ratio"], 3), "ci95": [round(v, 3) for v in ci["ci95"]]}
        print(json.dumps(out), flush=True)

    def teacher(steps: int, tagged: bool):
        return lambda x, i: be.sample(x, be.make_cond([tags[j] for j in i] if tagged else None, len(i)),
                                      sampler="ddim", steps=steps, guidance=a.guidance)

    for steps in [20] + sorted(set(a.steps) - {20}):  # 20 first: the reference of the rows after it
        report(f"teacher DDIM {steps}", "unconditional", steps, teacher(steps, False))
    for steps in [20] + sorted(set(a.tagged_steps) - {20}):
        report(f"teacher DDIM {steps}, CFG {a.guidance:g}", "tagged", steps, teacher(steps, True))
    for kind in a.students:
        st, meta = get_student(kind, pipe.device)
        sample = student_sampler(st, meta)
        report(f"{kind} student, 4 steps", "unconditional", 4, lambda x, i: be.decode(sample(x, None, 4)))


if __name__ == "__main__":
    main()
