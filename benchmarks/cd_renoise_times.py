"""Where should a CD student re-noise? Multistep consistency sampling (Song et al. 2023, Alg. 1)
leaves the re-noise timesteps free; `eval student` uses the DDIM trailing grid (4 steps:
999, 749, 499, 249), on which the bundled CD student's FAD grows with every step (issue #20).

This samples the same 120 test tags and x_T as the student card, with the teacher's 20-step
DDIM once, then the CD student on each --times schedule (comma-separated, falling, first = 999),
and prints one JSON line per schedule: FAD and its ratio to the teacher's, MSE to the teacher's
sample, collection accuracy and (with --realism) C2ST, grain and flatness against real clips.

    python benchmarks/cd_renoise_times.py --data data/full --times 999,749,499,249 999,500,250,100

--oracle replaces the student by the teacher's guided 20-step DDIM from each time to the clean end,
the consistency function a perfect CD student learns: it separates the sampler's own cost (re-noising a
guided sample and guiding again) from the student's error. Its 1-step sample is the teacher's exactly.

    python benchmarks/cd_renoise_times.py --data data/full --oracle --times 999 999,499 999,749,499,249
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--student", default="cd")
    ap.add_argument("--times", nargs="+", required=True, help="comma-separated timesteps per schedule")
    ap.add_argument("--per-collection", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--realism", action="store_true", help="also C2ST / grain / flatness (slower)")
    ap.add_argument("--deterministic", action="store_true",
                    help="re-noise with the student's own noise estimate (a DDIM jump between the times, then to "
                         "CLEAN) instead of fresh noise")
    ap.add_argument("--oracle", action="store_true",
                    help="f = the teacher's own CFG DDIM from each time to CLEAN on the 20-step grid (the map a perfect "
                         "CD student learns) instead of the student: how much of the multistep FAD is the student's error")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()

    from dittomusic.data.dataset import MelDataset
    from dittomusic.distill.consistency import CLEAN, alpha_sigma, consistency_sample, jump, teacher_ode, time_grid
    from dittomusic.distill.student import get_student
    from dittomusic.eval.base_model import generate_mels
    from dittomusic.eval.classifier import load_classifier, predict, tag_metrics
    from dittomusic.eval.fad import fad
    from dittomusic.eval.realism import measures, realism_report
    from dittomusic.eval.student import card_clips
    from dittomusic.generate import Pipeline
    from dittomusic.models.loading import bundled_path

    pipe = Pipeline(None, a.device)
    st, meta = get_student(a.student, pipe.device)
    if meta["kind"] != "cd":
        raise SystemExit("--student must be a CD student (a CTD student samples deterministically)")
    clf, _ = load_classifier(bundled_path("classifier"), pipe.device)
    test = MelDataset(a.data, "test", random_crop=False)
    cs = card_clips(test, clf, pipe.device, a.per_collection, a.seed)  # the student card's clips
    n, coll, fams, tags, ref, real, groups = (cs[k] for k in ("n", "coll", "fams", "tags", "ref", "real", "groups"))
    real_m = measures(real) if a.realism else None

    def score(mels: torch.Tensor, teacher: torch.Tensor | None) -> dict:
        p = {k: v.cpu() for k, v in predict(clf, mels.to(pipe.device)).items()}
        m = tag_metrics(p, coll, fams, test.vocab.collections)
        out = {"fad": fad(p["embedding"].numpy(), ref), "collection_accuracy": m["collection_accuracy"]}
        if teacher is not None:
            out["mse_to_teacher"] = float(((mels - teacher) ** 2).mean())
        if a.realism:
            r = realism_report(real, mels, seed=a.seed, device=pipe.device, real_measures=real_m,
                               c2st_kwargs={"groups": (groups, None), "repeats": 5})
            out.update(c2st=r["c2st"]["accuracy"], grain_ratio=r["ratio"]["grain"],
                       flatness_ratio=r["ratio"]["flatness_mean"])
        return out

    if a.oracle:  # f(x, t): the teacher's ODE from t to CLEAN, as distill's teacher steps it
        def oracle(x, t, cond, grid=time_grid(20), net=pipe.model):
            return teacher_ode(net, x, t, cond, meta["guidance"], grid, clip=net.ae is None)

    teacher = generate_mels(pipe, tags, n, a.seed, a.batch, True, sampler="ddim", steps=20, guidance=meta["guidance"])
    base = score(teacher, None)
    print(json.dumps({"schedule": "teacher DDIM 20", **base}), flush=True)
    for spec in a.times:
        times = [int(t) for t in spec.split(",")]
        k = len(times)
        t0, out = time.perf_counter(), []
        for s in range(0, n, a.batch):  # the card's x_T, decode noise and fixed re-noise draws
            b = min(a.batch, n - s)
            x_T = pipe.noise(b, pipe.model.cfg.clip_frames, a.seed + s)
            g = torch.Generator().manual_seed(0)
            noise = [torch.randn(x_T.shape, generator=g).to(x_T) for _ in range(k - 1)]
            with torch.no_grad():
                cond = pipe.cond(tags[s:s + b], b)
                if a.deterministic:  # x <- alpha_s f(x) + sigma_s eps_hat(x): no fresh noise between jumps
                    x0 = x_T
                    for t, u in zip(times, times[1:] + [CLEAN]):
                        x0 = jump(st, x0, t, u, cond)
                elif a.oracle:  # Alg. 1 with the teacher's ODE as f, the same re-noise draws
                    x0 = oracle(x_T, times[0], cond)
                    for t, z in zip(times[1:], noise):
                        al, sg = alpha_sigma(torch.full((b,), t), x0)
                        x0 = oracle(al * x0 + sg * z, t, cond)
                else:
                    x0 = consistency_sample(st, x_T, cond, k, noise=noise, times=times)
                out.append(pipe.backend.decode(x0, torch.Generator().manual_seed(a.seed + s + 1)).cpu())
        r = score(torch.cat(out), teacher)
        r["fad_over_teacher"] = r["fad"] / base["fad"]
        print(json.dumps({"schedule": times, "steps": k, "deterministic": a.deterministic, "oracle": a.oracle, "seconds": round(time.perf_counter() - t0, 1), **r}), flush=True)


if __name__ == "__main__":
    main()
