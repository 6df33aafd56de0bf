"""One DITTO-2 intensity clip as the CLI runs it in a warm process: its wall time against its compute floor.

    python benchmarks/ditto2_floor.py [--student FILE] [--repeats 3] [--threads 2] [--tol DB2]

The floor is what the run cannot avoid at its settings, each piece timed on its own (median of
--repeats) in the same process:

    floor = K x (one-step surrogate forward + backward) + 1 surrogate forward (the last iterate)
          + decodes x decode + corrections x one-step forward + the final vocoder

where K, decodes and corrections are the run's own counts. wall / floor above 1 is overhead:
Python, the optimizer, metrics on the waveform, allocation. Prints JSON. A student is needed
whose teacher is the bundled model (--student; without it the teacher's own weights are copied
into an untrained student of the bundled model's architecture, which times the same network).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stand_in_student(pipe, folder: Path) -> Path:
    """The teacher's weights as an untrained CD student of it: the student network, for timing only."""
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid

    st = student_from_teacher(pipe.model, "cd")
    info = {"kind": "cd", "guidance": 3.0, "grid": time_grid(20), "teacher_sha1": pipe.backend.model_digest}
    path = folder / "stand_in_cd.safetensors"
    save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": info["grid"], "distill": info,
                                         "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    return path


def main() -> None:
    from dittomusic.control.methods import Settings, default_lr, run_control
    from dittomusic.control.methods.ditto2 import REFRESH
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.control.tasks import default_iters
    from dittomusic.distill.student import get_student, student_sampler
    from dittomusic.eval.control import METRIC, build_targets
    from dittomusic.generate import Pipeline, make_tags

    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default=None, help="a student of the bundled model [default: a stand-in]")
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's own]")
    ap.add_argument("--iters", type=int, default=None, help="K [default: the task's]")
    ap.add_argument("--refresh", type=int, default=None)
    ap.add_argument("--decode-steps", type=int, default=4)
    ap.add_argument("--tol", type=float, default=None, help="stop once the decoded loss is at most this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    pipe = Pipeline(a.model, a.device)
    tmp = tempfile.TemporaryDirectory()
    student = a.student or str(_stand_in_student(pipe, Path(tmp.name)))
    backend = pipe.backend
    ctrl = build_targets("intensity", 1, backend.clip_frames, None, pipe.mel_cfg)[0][0]
    tags = make_tags(pipe.vocab, collection="chorale")
    iters = default_iters("intensity") if a.iters is None else a.iters
    s = Settings(optim=OptimConfig(iters=iters, lr=default_lr("ditto2"), tol=a.tol), student=student,
                 decode="student", decode_steps=a.decode_steps, refresh=a.refresh)

    def run():
        return run_control(pipe, "ditto2", ctrl, tags, seed=a.seed, settings=s, task="intensity")

    run()  # warm: the student is loaded and cached, as in the CLI's second clip
    runs = [run() for _ in range(a.repeats)]
    walls = [o.report["wall_s"] for o in runs]
    o = sorted(runs, key=lambda r: r.report["wall_s"])[len(runs) // 2]
    rep = o.report

    st, meta = get_student(student, backend.device)
    sample = student_sampler(st, meta)
    cond = backend.make_cond(tags, 1)
    x_T = backend.noise(1, backend.clip_frames, a.seed)

    def one_step(x):
        return backend.decode(sample(x, cond, 1))

    def surrogate_iter():
        x = x_T.clone().requires_grad_(True)
        ctrl.loss(one_step(x)).sum().backward()

    def surrogate_forward():
        with torch.no_grad():
            ctrl.loss(one_step(x_T))

    def decode():
        with torch.no_grad():
            backend.decode(sample(x_T, cond, a.decode_steps))

    mel = o.mel
    t = {"surrogate_iteration": _timed(surrogate_iter, a.repeats),
         "surrogate_forward": _timed(surrogate_forward, a.repeats),
         "decode": _timed(decode, a.repeats),
         "vocoder": _timed(torch.no_grad()(lambda: backend.vocoder(mel)), a.repeats)}
    k, decodes = rep["iterations"], rep["decodes"]
    corrections = max(decodes - 1, 0)  # every refresh but the final scoring re-corrects the surrogate
    parts = {"iterations": k * t["surrogate_iteration"], "last_forward": t["surrogate_forward"],
             "decodes": decodes * t["decode"], "corrections": corrections * t["surrogate_forward"],
             "vocoder": t["vocoder"]}
    floor = sum(parts.values())
    wall = rep["wall_s"]
    out = {"settings": {**vars(a), "iters": iters, "refresh": rep["refresh"], "threads": torch.get_num_threads(),
                        "student": a.student or "stand-in (teacher weights, untrained)"},
           "clip_s": o.clip_audio.shape[-1] / o.sr, "wall_s": wall, "walls_s": walls,
           "method_wall_s": rep["method_wall_s"], "iterations": k, "decodes": decodes, "stopped": rep["stopped"],
           METRIC["intensity"]: rep["metrics"][METRIC["intensity"]],
           "piece_s": t, "floor_parts_s": parts, "floor_s": floor, "wall_over_floor": wall / floor}
    print(json.dumps(out, indent=1))
    tmp.cleanup()


if __name__ == "__main__":
    main()
