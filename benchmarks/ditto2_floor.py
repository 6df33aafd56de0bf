"""One DITTO-2 intensity clip as the CLI runs it in a warm process: its wall time against its compute floor.

    python benchmarks/ditto2_floor.py [--student FILE] [--seeds 0 1 2 3] [--repeats 3] [--threads 2] \
        [--tol DB2] [--lr LR] [--refresh N] [--decode-steps N]

The floor is what the run cannot avoid at its settings, each piece timed on its own in the same
process, three calls right after every run, so that each run is set against a floor measured in the
same stretch of time (each seed reports its median run; piece_s is the median over all runs). On a
shared VM the speed drifts by up to 1.4x between measurements a minute apart, and a floor timed apart
from its runs made wall / floor read 0.96-1.23 for the same settings:

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


def _timed(fn, calls: int = 3) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


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

    warm = run(a.seeds[0])  # warm: the student is loaded and cached, as in the CLI's second clip

    st, meta = get_student(student, backend.device)
    sample = student_sampler(st, meta)
    cond = backend.make_cond(tags, 1)
    x_T = backend.noise(1, backend.clip_frames, a.seeds[0])

    def one_step(x):
        return backend.decode(sample(x, cond, 1))

    def surrogate_iter():
        x = x_T.clone().requires_grad_(True)
        ctrl.loss(one_step(x)).sum().backward()

    @torch.no_grad()
    def surrogate_forward():
        ctrl.loss(one_step(x_T))

    @torch.no_grad()
    def decode():
        backend.decode(sample(x_T, cond, warm.report["decode_steps"]))

    pieces = {"surrogate_iteration": surrogate_iter, "surrogate_forward": surrogate_forward, "decode": decode,
              "vocoder": torch.no_grad()(lambda: backend.vocoder(warm.mel))}
    for fn in pieces.values():
        fn()  # warm-up

    def floor_parts(rep, t):
        k, decodes = rep["iterations"], rep["decodes"]
        # every decode but the last re-corrects the surrogate (the last met --tol, or is the final scoring)
        corrections = max(decodes - 1, 0)
        return {"iterations": k * t["surrogate_iteration"], "last_forward": t["surrogate_forward"],
                "decodes": decodes * t["decode"], "corrections": corrections * t["surrogate_forward"],
                "vocoder": t["vocoder"]}

    times = {name: [] for name in pieces}
    clips, medians = [], []
    for seed in a.seeds:
        runs = []
        for _ in range(a.repeats):
            o = run(seed)
            t_run = {name: _timed(fn) for name, fn in pieces.items()}  # this run's floor, timed right after it
            for name, v in t_run.items():
                times[name].append(v)
            parts = floor_parts(o.report, t_run)
            runs.append((o, parts, sum(parts.values())))
        o, parts, floor = sorted(runs, key=lambda r: r[0].report["wall_s"])[len(runs) // 2]
        medians.append(o)
        rep = o.report
        clips.append({"seed": seed, "wall_s": rep["wall_s"], "method_wall_s": rep["method_wall_s"],
                      "iterations": rep["iterations"], "decodes": rep["decodes"], "stopped": rep["stopped"],
                      METRIC["intensity"]: rep["metrics"][METRIC["intensity"]], "floor_parts_s": parts,
                      "floor_s": floor, "wall_over_floor": rep["wall_s"] / floor,
                      "wall_over_floor_runs": sorted(r[0].report["wall_s"] / r[2] for r in runs)})
    t = {name: statistics.median(v) for name, v in times.items()}
    out = {"settings": {**vars(a), "iters": optim.iters, "lr": optim.lr, "tol": optim.tol,
                        "refresh": medians[0].report["refresh"], "decode_steps": medians[0].report["decode_steps"],
                        "threads": torch.get_num_threads(), "student": a.student or "stand-in (teacher weights, untrained)"},
           "clip_s": medians[0].clip_audio.shape[-1] / medians[0].sr, "piece_s": t,
           "piece_spread": {name: max(v) / min(v) for name, v in times.items()},
           "wall_s_mean": statistics.mean(c["wall_s"] for c in clips), "wall_s_max": max(c["wall_s"] for c in clips),
           METRIC["intensity"] + "_mean": statistics.mean(c[METRIC["intensity"]] for c in clips),
           "wall_over_floor_max": max(c["wall_over_floor"] for c in clips), "clips": clips}
    from dittomusic.utils import machine_info

    out["machine"] = machine_info()
    print(json.dumps(out, indent=1))
    tmp.cleanup()


if __name__ == "__main__":
    main()
