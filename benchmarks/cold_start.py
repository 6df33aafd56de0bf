"""Cold start of the CLI: wall time of whole `dittomusic` processes, a new interpreter each run.
Prints JSON.

    python benchmarks/cold_start.py [--runs 5] [--commands help,generate,generate_no_png,control_ditto2]

Targets (issue 24): `dittomusic generate --seconds 6` (one 6 s clip, its PNG included) in
<= 2.0 s and `dittomusic --help` in <= 0.3 s on 2 cores. Commands run as `python -m dittomusic`,
so a console-script shim (pyenv's adds ~0.1 s) is not counted. The commands take turns, run by
run, after one unmeasured warm-up round (file cache), so a drifting background load hits each
alike. Per command: median and min of the wall seconds and of the child's CPU seconds
(user + sys). On a shared machine wall time includes waiting for a core: the load average
before and after is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# name -> (arguments after `dittomusic`, target wall seconds or None)
COMMANDS = {
    "help": (["--help"], 0.3),
    "generate": (["generate", "--seconds", "6", "--seed", "7", "--out", "{tmp}/generate.wav"], 2.0),
    "generate_no_png": (["generate", "--seconds", "6", "--seed", "7", "--no-png", "--out", "{tmp}/no_png.wav"], None),
    # DITTO-2 with 5 optimizer steps (the default is 70): start-up plus a little real work
    "control_ditto2": (["control", "intensity", "--method", "ditto2", "--iters", "5", "--seed", "0",
                        "--out", "{tmp}/control.wav"], None),
}


def command_lines(names: list[str], tmp: str, model: str | None = None) -> dict[str, tuple[list[str], float | None]]:
    unknown = [n for n in names if n not in COMMANDS]
    if unknown:
        raise SystemExit(f"unknown command {', '.join(unknown)}; choose from {', '.join(COMMANDS)}")
    out = {}
    for n in names:
        args, target = COMMANDS[n]
        args = [a.format(tmp=tmp) for a in args]
        if model and n != "help":
            args += ["--model", model]
        out[n] = ([sys.executable, "-m", "dittomusic", *args], target)
    return out


def time_process(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; exits with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summarize(walls: list[float], cpus: list[float], target: float | None) -> dict:
    row = {"wall_s": {"median": round(statistics.median(walls), 3), "min": round(min(walls), 3),
                      "runs": [round(w, 3) for w in walls]},
           "cpu_s": {"median": round(statistics.median(cpus), 3), "min": round(min(cpus), 3)}}
    if target is not None:
        row["target_s"] = target
        row["meets_target"] = row["wall_s"]["median"] <= target
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="Unmeasured rounds first.")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--model", default=None, help="Model checkpoint for generate/control [default: bundled].")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for the commands [default: unset, torch's choice]. 1 gives steadier "
                         "numbers on a busy machine, where two threads wait on each other for a core.")
    args = ap.parse_args(argv)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    names = [c.strip() for c in args.commands.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        lines = command_lines(names, tmp, args.model)
        load_before = os.getloadavg()[0]
        for _ in range(args.warmup):
            for cmd, _target in lines.values():
                time_process(cmd)
        times: dict[str, list[tuple[float, float]]] = {n: [] for n in lines}
        for _ in range(args.runs):
            for n, (cmd, _target) in lines.items():
                times[n].append(time_process(cmd))
        load_after = os.getloadavg()[0]
    report = {
        "commands": {n: {"argv": " ".join(["dittomusic", *lines[n][0][3:]]).replace(tmp, "TMP"),
                         **summarize([w for w, _ in t], [c for _, c in t], lines[n][1])} for n, t in times.items()},
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": sys.version.split()[0],
        "model": args.model or "bundled",
    }
    from dittomusic.utils import machine_info

    report["machine"] = machine_info()
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
