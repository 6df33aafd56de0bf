"""One DITTO-2 intensity clip as the CLI runs it in a warm process: its wall time against its compute floor.

    python benchmarks/ditto2_floor.py [--student FILE] [--seeds 0 1 2 3] [--repeats 3] [--threads 2] \
        [--tol DB2] [--lr LR] [--refresh N] [--decode-steps N]

The floor is what the run cannot avoid at its settings, each piece timed on its own (median of
--repeats) in the same process:

    floor = K x (one-step surrogate forward + backward) + 1 surrogate forward (the last iterate)
          + decodes x decode + corrections x one-step forward + the final vocoder

where K, decodes and corrections are each run's own counts (with --tol they vary by seed). wall / floor above 1 is overhead:
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
    from dittomusic.control.defaults import resolve
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.distill.student import get_student, student_sampler
    from dittomusic.eval.control import METRIC, build_targets
    from dittomusic.generate import Pipeline, make_tags

    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default=None, help="a student of the bundled model [default: a stand-in]")
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's own]")
    ap.add_argument("--iters", type=int, default=None, help="K [default: the task's for ditto2]")
    ap.add_argument("--refresh", type=int, default=None)
    ap.add_argument("--decode-steps", type=int, default=None, help="[default: the task's]")
    ap.add_argument("--tol", type=float, default=None, help="stop once the decoded loss is at most this "
                    "[default: the task's for ditto2]")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="x_T seeds, one clip each")
    ap.add_argument("--lr", type=float, default=None, help="[default: the method's]")
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
    _, optim = resolve("intensity", "ditto2", a.iters, a.lr, a.tol)  # the CLI's defaults
    s = Settings(optim=optim, student=student,
                 decode="student", decode_steps=a.decode_steps, refresh=a.refresh)

    def run(seed):
        return run_control(pipe, "ditto2", ctrl, tags, seed=seed, settings=s, task="intensity")

    run(a.seeds[0])  # warm: the student is loaded and cached, as in the CLI's second clip
    medians = []
    for seed in a.seeds:
        runs = [run(seed) for _ in range(a.repeats)]
        medians.append(sorted(runs, key=lambda r: r.report["wall_s"])[len(runs) // 2])

    st, meta = get_student(student, backend.device)
    sample = student_sampler(st, meta)
    cond = backend.make_cond(tags, 1)
    x_T = backend.noise(1, backend.clip_frames, a.seeds[0])

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
            backend.decode(sample(x_T, cond, medians[0].report["decode_steps"]))

    mel = medians[0].mel
    t = {"surrogate_iteration": _timed(surrogate_iter, a.repeats),
         "surrogate_forward": _timed(surrogate_forward, a.repeats),
         "decode": _timed(decode, a.repeats),
         "vocoder": _timed(torch.no_grad()(lambda: backend.vocoder(mel)), a.repeats)}
    clips = []
    for seed, o in zip(a.seeds, medians):
        rep = o.report
        k, decodes = rep["iterations"], rep["decodes"]
        # every decode but the last re-corrects the surrogate (the last met --tol, or is the final scoring)
        corrections = max(decodes - 1, 0)
        parts = {"iterations": k * t["surrogate_iteration"], "last_forward": t["surrogate_forward"],
                 "decodes": decodes * t["decode"], "corrections": corrections * t["surrogate_forward"],
                 "vocoder": t["vocoder"]}
        floor = sum(parts.values())
        clips.append({"seed": seed, "wall_s": rep["wall_s"], "method_wall_s": rep["method_wall_s"], "iterations": k,
                      "decodes": decodes, "stopped": rep["stopped"], METRIC["intensity"]: rep["metrics"][METRIC["intensity"]],
                      "floor_parts_s": parts, "floor_s": floor, "wall_over_floor": rep["wall_s"] / floor})
    out = {"settings": {**vars(a), "iters": optim.iters, "lr": optim.lr, "tol": optim.tol,
                        "refresh": medians[0].report["refresh"], "decode_steps": medians[0].report["decode_steps"],
                        "threads": torch.get_num_threads(), "student": a.student or "stand-in (teacher weights, untrained)"},
           "clip_s": medians[0].clip_audio.shape[-1] / medians[0].sr, "piece_s": t,
           "wall_s_mean": statistics.mean(c["wall_s"] for c in clips), "wall_s_max": max(c["wall_s"] for c in clips),
           METRIC["intensity"] + "_mean": statistics.mean(c[METRIC["intensity"]] for c in clips),
           "wall_over_floor_max": max(c["wall_over_floor"] for c in clips), "clips": clips}
    print(json.dumps(out, indent=1))
    tmp.cleanup()


if __name__ == "__main__":
    main()
