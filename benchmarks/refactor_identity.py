"""Bit-identity check for refactors: runs every CLI command that makes audio (generate with each
sampler, each control task with each method) on fixed seeds with few steps and iterations, and
prints JSON of sha256 digests of what each wrote: the wav, the saved latent (x_T, best x_T,
Adam moments) and the report's numbers (losses, metrics, seams, model calls; no wall times).

    python benchmarks/refactor_identity.py --out before.json
    python benchmarks/refactor_identity.py --out after.json --compare before.json

Commands run in-process (click's CliRunner) on one thread with Griffin-Lim, so a run is
deterministic on one machine; digests are not comparable across machines or torch versions.
--only NAME,NAME runs a subset (names as printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

FAST = ["--seconds", "2", "--steps", "4", "--vocoder", "griffinlim", "--no-png"]
ITERS = ["--iters", "3"]


def commands(tmp: str) -> dict[str, list[str]]:
    ref = f"{tmp}/ref.wav"
    c: dict[str, list[str]] = {
        # the reference the painting tasks continue / fill in; generated first
        "generate_ref": ["generate", "--seconds", "4", "--seed", "11", "--steps", "4", "--vocoder", "griffinlim",
                         "--no-png", "--collection", "chorale", "--out", ref],
    }
    for s in ("ddim", "ddpm", "dpmpp_2m", "euler", "heun"):
        c[f"generate_{s}"] = ["generate", "--caption", "a lively Irish reel on fiddle", "--sampler", s, "--seed", "3",
                              *FAST]
    c["generate_batch2"] = ["generate", "--batch", "2", "--seed", "5", *FAST]
    targets = {
        "intensity": ["--preset", "tanh-rise", "--low-db", "-40", "--high-db", "-20"],
        "melody": ["--target-notes", "C5:0.5 E5:0.5 G5:0.5 C6:0.5"],
        "structure": ["--target-pattern", "ABAB"],
        "intensity+melody": ["--target-notes", "C5:0.5 E5:0.5 G5:0.5 C6:0.5"],
        "outpaint": ["--reference", ref, "--overlap", "0.6"],
        "inpaint": ["--reference", ref, "--gap", "1.0"],
        "loop": ["--reference", ref, "--overlap", "0.5"],
        "loop_self": ["--overlap", "0.5"],
    }
    methods = {
        "intensity": ["default", "ditto", "freedom", "ditto2"],
        "melody": ["ditto", "freedom", "ditto2"],
        "structure": ["ditto", "freedom", "ditto2"],
        "intensity+melody": ["ditto", "ditto2"],
        "outpaint": ["ditto_draft", "ditto", "freedom", "naive", "multidiffusion", "multidiffusion50", "ditto2"],
        "inpaint": ["ditto_draft", "freedom", "naive", "ditto2"],
        "loop": ["ditto_draft", "naive", "multidiffusion"],
        "loop_self": ["ditto_draft", "naive", "multidiffusion"],
    }
    for task, ms in methods.items():
        for m in ms:
            c[f"control_{task}_{m}"] = ["control", task.removesuffix("_self"), "--method", m, "--seed", "2",
                                        "--collection", "folk song", *targets[task], *FAST, *ITERS]
    # the DITTO-2 refresh inside the run (every 2 iterations), both decoders
    for dec in ("student", "teacher"):
        c[f"control_intensity_ditto2_refresh2_{dec}"] = ["control", "intensity", "--method", "ditto2", "--decode", dec,
                                                         "--refresh", "2", "--iters", "5", "--seed", "4",
                                                         *targets["intensity"], *FAST]
    c["control_intensity_ditto_batch2"] = ["control", "intensity", "--batch", "2", "--seed", "6", *FAST, *ITERS]
    c["control_intensity_ditto_resume"] = ["control", "intensity", "--seed", "7", *FAST, *ITERS,
                                           "--init-latent", f"{tmp}/control_intensity_ditto.latent.safetensors"]
    return c


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:16]


def _report_numbers(rep: dict) -> dict:
    """Everything in a report that a refactor must not change: no wall times."""
    drop = ("wall_s", "method_wall_s")
    return {k: v for k, v in rep.items() if k not in drop}


def run_one(cli, name: str, args: list[str], tmp: str) -> dict:
    from click.testing import CliRunner

    out = Path(tmp) / f"{name}.wav"
    args = list(args)
    if "--out" not in args:
        args += ["--out", str(out)]
    else:
        out = Path(args[args.index("--out") + 1])
    lat = Path(tmp) / f"{name}.latent.safetensors"
    rep = Path(tmp) / f"{name}.json"
    if args[0] == "control":
        args += ["--report", str(rep), "--save-latent", str(lat)]
    t0 = time.perf_counter()
    r = CliRunner().invoke(cli, args, catch_exceptions=True)
    res: dict = {"wall_s": round(time.perf_counter() - t0, 2), "exit": r.exit_code}
    if r.exit_code != 0:
        res["error"] = (r.output or "")[-500:] + (repr(r.exception) if r.exception else "")
        return res
    wavs = sorted(out.parent.glob(f"{out.stem}*.wav"))
    res["wav"] = _sha(b"".join(p.read_bytes() for p in wavs))
    if lat.exists():
        from safetensors.torch import load_file

        t = load_file(str(lat))
        res["latent"] = {k: _sha(t[k].contiguous().numpy().tobytes()) for k in sorted(t)}
    if rep.exists():
        d = json.loads(rep.read_text())
        res["report"] = _sha(json.dumps(_report_numbers(d), sort_keys=True).encode())
        res["final_loss"] = d.get("final_loss")
        res["metrics"] = d.get("metrics")
        if "surrogate_loss" in d:
            res["surrogate_loss"] = d["surrogate_loss"]
            res["decoded_best_iter"] = d.get("decoded_best_iter")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="write the JSON here too")
    ap.add_argument("--compare", default=None, help="a previous run's JSON: print which digests differ")
    ap.add_argument("--only", default=None, help="comma-separated command names")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from dittomusic.cli import cli

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(tmp)
        only = set(a.only.split(",")) if a.only else None
        for name, args in cmds.items():
            if only and name not in only and name != "generate_ref" and not (
                    name == "control_intensity_ditto" and "control_intensity_ditto_resume" in only):
                continue
            results[name] = run_one(cli, name, args, tmp)
            print(f"{name}: {results[name].get('wall_s')} s {'ok' if results[name]['exit'] == 0 else 'FAILED'}",
                  file=sys.stderr)
    out = {"torch": torch.__version__, "results": results}
    if a.compare:
        old = json.loads(Path(a.compare).read_text())["results"]
        keys = ("exit", "wav", "latent", "report")
        out["diff"] = {n: [k for k in keys if old[n].get(k) != r.get(k)] for n, r in results.items()
                       if n in old and any(old[n].get(k) != r.get(k) for k in keys)}
        out["identical"] = sorted(n for n in results if n in old and n not in out["diff"])
    text = json.dumps(out, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(json.dumps(out.get("diff", {}), indent=1) if a.compare else text)


if __name__ == "__main__":
    main()
