"""DITTO vs DITTO-2 on the same targets and seeds, side by side in one run.

For each task (intensity, melody, structure) both methods steer the same x_T toward the same
targets; reported per task and method: wall seconds per clip, model calls, the control metric on
the vocoded waveform, and FAD (tag-classifier yardstick) of the clips against real test clips
when --data is given. DITTO-2 runs twice (its optimization is deterministic, so on the same x_T): decoded by the teacher's
sampler (by task; --ditto2-sampler, --ditto2-steps) and by the student's own multistep sampler
(--decode-steps), so the default decoder is chosen by measurement. Last, one intensity clip alone (batch 1) with the default decoder.
Targets (issue 20): DITTO-2 >= 20x faster with a metric at least as good (pool >= 10 clips per task with
benchmarks/ditto2_pool.py), one intensity clip <= 3 s wall (benchmarks/ditto2_floor.py times it alone).

    python benchmarks/ditto2_speed.py --data data/full [--targets 2] [--student FILE or cd/ctd]

--student takes a comma-separated list (e.g. cd,ctd) to compare students as surrogates in the same
run: DITTO runs once and each student adds its two DITTO-2 rows, named ditto2[KIND] and
ditto2[KIND]_student_decode (a single student keeps the plain names ditto2, ditto2_student_decode).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    from dittomusic.control import BatchedControl
    from dittomusic.control.defaults import resolve
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.spec import get_task, within_paper_scale
    from dittomusic.eval.control import METRIC, build_targets
    from dittomusic.generate import Pipeline, make_tags

    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default=None, help="comma-separated for several [default: the bundled student]")
    ap.add_argument("--tasks", default="intensity,melody,structure")
    ap.add_argument("--targets", type=int, default=2)
    ap.add_argument("--ditto2-iters", type=int, default=None, help="[default: the task's, as the CLI runs it]")
    ap.add_argument("--decode-steps", type=int, default=None, help="student decode steps [default: by task]")
    ap.add_argument("--ditto2-steps", type=int, default=None,
                    help="steps of DITTO-2's teacher decode [default: by task, TaskSpec.method_defaults['ditto2']]")
    ap.add_argument("--ditto2-sampler", default=None, choices=["ddim", "dpmpp_2m"],
                    help="sampler of DITTO-2's teacher decode [default: by task]")
    ap.add_argument("--refresh", type=int, default=None,
                    help="DITTO-2 re-decodes (and re-corrects its surrogate) every N iterations [default: by task "
                         "and decoder]")
    ap.add_argument("--data", default=None, help="dataset for FAD against real test clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()

    students = a.student.split(",") if a.student else [None]
    tag = (lambda st: "") if len(students) == 1 else (lambda st: f"[{st}]")
    pipe = Pipeline(device=a.device)
    real = clf = None
    if a.data:
        from dittomusic.data.dataset import MelDataset
        from dittomusic.eval.classifier import load_classifier, predict
        from dittomusic.models.loading import bundled_path

        clf, _ = load_classifier(bundled_path("classifier"), pipe.device)
        test = MelDataset(a.data, "test", random_crop=False)
        real = predict(clf, torch.stack([test[i]["mel"] for i in range(len(test))]))["embedding"].numpy()
    tags = [make_tags(pipe.vocab, collection=c) for c in pipe.vocab["collections"]]
    out = {"settings": vars(a), "tasks": {}}
    for task in [t for t in a.tasks.split(",") if t]:  # --tasks "": only the single-clip timing
        ctrls, names = build_targets(task, a.targets, pipe.backend.clip_frames, None, pipe.mel_cfg)
        control = BatchedControl(ctrls)
        rows = {}
        variants = [("ditto", "ditto", "teacher", None)]
        for st in students:
            variants += [(f"ditto2{tag(st)}", "ditto2", "teacher", st),
                         (f"ditto2{tag(st)}_student_decode", "ditto2", "student", st)]
        for name, method, decode, student in variants:
            # each method at the CLI's defaults for the task (TaskSpec.method_defaults)
            _, optim = resolve(task, method, a.ditto2_iters if method == "ditto2" else None)
            d2 = dict(refresh=a.refresh, teacher_steps=a.ditto2_steps, decode_sampler=a.ditto2_sampler) if method == "ditto2" else {}
            s = Settings(optim=optim, student=student, decode=decode, decode_steps=a.decode_steps, progress=True, **d2)
            o = run_control(pipe, method, control, [tags[i % len(tags)] for i in range(len(ctrls))], seed=a.seed,
                            settings=s, task=task)
            per = [it[METRIC[task]] for it in o.report["items"]]
            r = {"wall_per_clip_s": o.report["method_wall_s"] / len(ctrls), "model_calls": o.report["model_calls"],
                 "iterations": o.report["iterations"], METRIC[task]: o.report["metrics"][METRIC[task]],
                 "per_target": per, "within_paper_scale": sum(bool(within_paper_scale(task, v)) for v in per),
                 "decode": decode, "lr": optim.lr, "tol": optim.tol,
                 **{k: o.report[k] for k in ("decode_sampler", "decode_steps", "refresh") if k in o.report}}
            if real is not None:
                from dittomusic.eval.classifier import predict
                from dittomusic.eval.fad import fad

                e = predict(clf, o.mel)["embedding"].numpy()
                r["fad"] = fad(e, real)
            rows[name] = r
        better = np.greater_equal if get_task(task).higher_better else np.less_equal
        for name in [v[0] for v in variants[1:]]:
            rows[name]["speedup"] = rows["ditto"]["wall_per_clip_s"] / rows[name]["wall_per_clip_s"]
            rows[name]["metric_as_good_as_ditto"] = bool(better(rows[name][METRIC[task]], rows["ditto"][METRIC[task]]))
        out["tasks"][task] = rows
        print(json.dumps({task: rows}), flush=True)
    # one clip on its own, as a user runs it: the real-time target
    ctrls, _ = build_targets("intensity", 1, pipe.backend.clip_frames, None, pipe.mel_cfg)
    o = run_control(pipe, "ditto2", ctrls[0], tags[0], seed=a.seed, task="intensity",
                    settings=Settings(optim=resolve("intensity", "ditto2")[1], student=students[0]))
    out["single_intensity_clip"] = {"wall_s": o.report["wall_s"], "method_wall_s": o.report["method_wall_s"],
                                    "clip_s": o.clip_audio.shape[-1] / o.sr,
                                    METRIC["intensity"]: o.report["metrics"][METRIC["intensity"]]}
    from dittomusic.utils import machine_info

    out["machine"] = machine_info()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
