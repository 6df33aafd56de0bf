"""One DITTO-2 surrogate iteration (student one-step + decode + intensity loss, forward and backward)
under the execution options issue 20 lists, side by side in one process. Prints JSON.

    python benchmarks/ditto2_surrogate_variants.py [--student ctd] [--repeats 20] [--compile]

Rows: fp32 eager at 1 and 2 threads, bf16 autocast over the student (2 threads), and with --compile
torch.compile of the student and the decoder (its compile time is reported apart, the iteration
is timed warm). The iteration is the floor's K term (benchmarks/ditto2_floor.py), so a row that
beats fp32 eager lowers the floor by K x the difference.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ditto2_floor import _timed  # benchmarks/ is on sys.path when a script in it runs


def main() -> None:
    from dittomusic.distill.student import get_student, student_sampler
    from dittomusic.eval.control import build_targets
    from dittomusic.generate import Pipeline, make_tags

    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default=None, help="[default: the bundled student]")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()

    pipe = Pipeline(device=a.device)
    backend = pipe.backend
    st, meta = get_student(a.student, backend.device)
    ctrl = build_targets("intensity", 1, backend.clip_frames, None, pipe.mel_cfg)[0][0]
    cond = backend.make_cond(make_tags(pipe.vocab, collection="chorale"), 1)
    x_T = backend.noise(1, backend.clip_frames, 0)

    def iteration(sample, decode, bf16: bool = False):
        def fn():
            x = x_T.clone().requires_grad_(True)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                z = sample(x, cond, 1)
            ctrl.loss(decode(z.float())).sum().backward()
        return fn

    eager = iteration(student_sampler(st, meta), backend.decode)
    rows = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows[f"fp32_eager_{threads}_threads"] = _timed(eager, a.repeats)
    rows["bf16_autocast_2_threads"] = _timed(iteration(student_sampler(st, meta), backend.decode, True), a.repeats)
    out = {"settings": vars(a), "device": str(backend.device), "iteration_s": rows}
    if a.compile:
        ae = backend.model.ae
        sample_c = student_sampler(torch.compile(st), meta)
        dec_c = torch.compile(ae.decode) if ae is not None else (lambda z: z)

        def decode_c(z):
            return dec_c(z).clamp(-1, 1)

        fn = iteration(sample_c, decode_c)
        t0 = time.perf_counter()
        fn()
        out["compile_s"] = time.perf_counter() - t0
        rows["fp32_compiled_2_threads"] = _timed(fn, a.repeats)
    base = rows["fp32_eager_2_threads"]
    out["over_fp32_eager_2_threads"] = {k: v / base for k, v in rows.items()}
    from dittomusic.utils import machine_info

    out["machine"] = machine_info()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
