"""Validate the realism yardstick (`dittomusic.eval.realism`) before trusting it. Prints JSON.

    python benchmarks/realism.py --data data/full [--clips 120] [--model FILE] [--out realism.json]

Every condition is scored against the same real test clips (an equal number per collection):

- ``validation``: real validation clips, untouched (should be C2ST ~0.5, ratios ~1);
- ``*_mild``, ``*_moderate``: the same validation clips with broadband noise, per-bin jitter or a
  time-frequency smear (`realism.degrade`; strengths in ``settings.degradations``), from barely
  measurable to small but clear;
- ``*_heavy``: clearly degraded validation clips;
- ``v1``: the model's clips (bundled by default) generated with the tags of the real test
  clips, 20-step DDIM, guidance 3, as `dittomusic eval model` does.

Degrading validation clips (not the test clips themselves) keeps the degradation the only
difference from the ``validation`` row. The C2ST keeps each piece's clips on one side of its
train / held-out split, so it cannot win by recognising pieces. The check asked of the
yardstick: real < every mild degradation < v1 on C2ST, and v1 far from real.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

DEGRADATIONS = {  # name: (kind, strength), see dittomusic.eval.realism.degrade
    "noise_mild": ("noise", -64.0),       # broadband noise 64 dB below the clip's loudest mel bin
    "jitter_mild": ("jitter", 1.0),       # 1 dB Gaussian jitter per bin and frame
    "smear_mild": ("smear", 0.3),         # Gaussian blur of mel power, std 0.3 bin x 0.3 frame
    "noise_moderate": ("noise", -60.0),
    "jitter_moderate": ("jitter", 1.5),
    "smear_moderate": ("smear", 0.5),
    "noise_heavy": ("noise", -30.0),
    "jitter_heavy": ("jitter", 6.0),
    "smear_heavy": ("smear", 3.0),
}


def _short(r: dict) -> dict:
    c = r.get("c2st", {})
    return {"c2st": round(c.get("accuracy", float("nan")), 3), "c2st_se": round(c.get("se", float("nan")), 3),
            "c2st_clip_accuracy": round(c.get("clip_accuracy", float("nan")), 3),
            "c2st_ci95": [round(x, 3) for x in c.get("ci95") or []],
            **{f"ratio_{k}": round(v, 3) for k, v in r["ratio"].items()},
            **{f"delta_{k}": round(v, 2) for k, v in r["delta"].items()},
            "texture_fad": round(r["texture_fad"], 2)}


def main() -> int:
    from dittomusic.data.dataset import MelDataset
    from dittomusic.errors import DittoError
    from dittomusic.eval.base_model import generate_mels, pick_clips
    from dittomusic.eval.realism import degrade, measures, plot_side_by_side, realism_report
    from dittomusic.generate import Pipeline, Tags

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a dataset built by `dittomusic dataset build`")
    ap.add_argument("--clips", type=int, default=120, help="clips per set (split evenly over collections)")
    ap.add_argument("--model", default=None, help="model file [default: the bundled one]")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--c2st-steps", type=int, default=None)
    ap.add_argument("--conditions", default=None, help="comma-separated subset of the rows [default: all]")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="also write the full JSON (every measure of every set) here")
    ap.add_argument("--figure", default=None, help="PNG: real | v1 spectrograms, one row per collection")
    ap.add_argument("--generated-cache", default=None,
                    help=".pt file of the generated mels: loaded if it exists (and matches), else written")
    a = ap.parse_args()
    t0 = time.time()
    try:
        test = MelDataset(a.data, "test", random_crop=False)
        val = MelDataset(a.data, "val", random_crop=False)
        ncoll = len(test.vocab.collections)
        per = max(1, a.clips // ncoll)
        idx = pick_clips(test, per, a.seed)
        vidx = pick_clips(val, per, a.seed)
        n = min(len(idx), len(vidx))
        idx, vidx = idx[:n], vidx[:n]
        real = torch.stack([test[i]["mel"] for i in idx])
        vmel = torch.stack([val[i]["mel"] for i in vidx])
        want = set(a.conditions.split(",")) if a.conditions else None
        sets = {"validation": vmel}
        for k, (kind, s) in DEGRADATIONS.items():
            if want is None or k in want:
                sets[k] = degrade(vmel, kind, s, seed=a.seed)
        gen_s = None
        if want is None or "v1" in want:
            pipe = Pipeline(a.model, a.device)
            tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"])
                    for r in (test.rows[i] for i in idx)]
            t1 = time.time()
            key = [a.model, a.steps, a.guidance, a.seed, [test.rows[i]["clip_id"] for i in idx]]
            cached = torch.load(a.generated_cache) if a.generated_cache and os.path.exists(a.generated_cache) else None
            if cached is not None and cached["key"] == key:
                sets["v1"] = cached["mels"]
            else:
                sets["v1"] = generate_mels(pipe, tags, n, a.seed, 16, sys.stderr.isatty(), sampler="ddim",
                                       steps=a.steps, guidance=a.guidance)
                gen_s = round(time.time() - t1, 1)
                if a.generated_cache:
                    torch.save({"key": key, "mels": sets["v1"]}, a.generated_cache)
            if a.figure:
                first = {}
                for j, i in enumerate(idx):
                    first.setdefault(test.rows[i]["collection"], j)
                js = list(first.values())
                plot_side_by_side(real[js], sets["v1"][js], list(first), a.figure, pipe.mel_cfg,
                                  title="real test clips | v1 generated with their tags")
        sets = {k: v for k, v in sets.items() if want is None or k in want}
        rm = measures(real)
        g_real = [test.rows[i]["piece_id"] for i in idx]
        g_val = [val.rows[i]["piece_id"] for i in vidx]
        full, rows = {}, {}
        for k, m in sets.items():
            r = realism_report(real, m, seed=a.seed, device=a.device, real_measures=rm,
                               c2st_kwargs={"steps": a.c2st_steps, "groups": (g_real, None if k == "v1" else g_val)})
            full[k], rows[k] = r, _short(r)
            print(json.dumps({k: rows[k], "seconds": r["seconds"]}), file=sys.stderr, flush=True)
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    acc = {k: v["c2st"] for k, v in rows.items()}
    mild = [k for k in acc if k.endswith("_mild")]
    checks = {}
    if "validation" in acc and mild:
        checks["c2st_real_below_every_mild"] = all(acc["validation"] < acc[k] for k in mild)
    if "v1" in acc and mild:
        checks["c2st_every_mild_below_v1"] = all(acc[k] < acc["v1"] for k in mild)
        light = [k for k in rows if k.endswith(("_mild", "_moderate"))]
        checks["texture_fad_every_mild_and_moderate_below_v1"] = all(
            rows[k]["texture_fad"] < rows["v1"]["texture_fad"] for k in light)
        checks["grain_ratio_every_mild_and_moderate_below_v1"] = all(
            rows[k]["ratio_grain"] < rows["v1"]["ratio_grain"] for k in light)
    if "v1" in acc and "validation" in acc:
        checks["c2st_v1_minus_real"] = round(acc["v1"] - acc["validation"], 3)
    out = {"settings": {"clips_per_set": n, "per_collection": per, "reference": "real test clips",
                        "degraded_clips": "the validation clips",
                        "degradations": {k: {"kind": kd, "strength": s} for k, (kd, s) in DEGRADATIONS.items()},
                        "model": a.model or "bundled", "sampler": f"ddim {a.steps}", "guidance": a.guidance,
                        "seed": a.seed, "generation_s": gen_s, "total_s": round(time.time() - t0, 1)},
           "real": {"grain": round(rm["grain"], 4), "grain_audible": round(rm["grain_audible"], 4),
                    "flatness_mean": round(rm["flatness"]["mean"], 5),
                    "flatness_median": round(rm["flatness"]["p50"], 6),
                    "prominence_db_mean": round(rm["prominence_db"]["mean"], 2),
                    "stability_mean": round(rm["stability"]["mean"], 3),
                    "background_db_mean": round(rm["background_db"]["mean"], 2), "flux_db": round(rm["flux_db"], 3),
                    "onset_concentration_mean": round(rm["onset_concentration"]["mean"], 3),
                    "active_frames": round(rm["active_frames"], 3)},
           "conditions": rows, "checks": checks}
    if a.out:
        with open(a.out, "w") as f:
            json.dump({**out, "full": full}, f, indent=1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
