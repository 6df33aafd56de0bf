"""Pool several runs of benchmarks/ditto2_speed.py (e.g. one per --seed) into one table per task:
every clip of every run counts once, so a claim rests on all of them rather than on one seed.

    python benchmarks/ditto2_speed.py --data data/full --targets 5 --tasks structure --seed 0 > s0.json
    ... (--seed 1, 2, 3)
    python benchmarks/ditto2_pool.py s0.json s1.json s2.json s3.json

Prints JSON: per task and method, the clips pooled, the mean and median metric, how many clips
score at least as well as DITTO's clip from the same noise and target, mean seconds per clip, and
the speedup (DITTO's pooled seconds per clip over the method's), and how many clips are within the
paper's DITTO-2 figure (TaskSpec.paper_scale).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from dittomusic.control.spec import get_task, within_paper_scale
from dittomusic.eval.control import METRIC


def load_run(path: str) -> dict:
    """The full report ditto2_speed.py prints last (earlier lines are per-task progress)."""
    text, dec, pos, last = open(path).read(), json.JSONDecoder(), 0, None
    while True:
        i = text.find("{", pos)
        if i < 0:
            break
        obj, pos = dec.raw_decode(text, i)
        if isinstance(obj, dict) and "tasks" in obj:
            last = obj
    if last is None:
        sys.exit(f"{path}: no ditto2_speed.py report found (expected its JSON output)")
    return last


def pool(runs: list[dict]) -> dict:
    out = {}
    for task in sorted({t for r in runs for t in r["tasks"]}):
        metric = METRIC[task]
        better = np.greater_equal if get_task(task).higher_better else np.less_equal
        rows = [r["tasks"][task] for r in runs if task in r["tasks"]]
        methods = [m for m in rows[0] if all(m in row for row in rows)]
        if "ditto" not in methods:
            sys.exit(f"{task}: every run needs a 'ditto' row to compare against")
        ref = np.concatenate([row["ditto"]["per_target"] for row in rows])
        ref_s = float(np.mean([row["ditto"]["wall_per_clip_s"] for row in rows]))
        table = {}
        for m in methods:
            vals = np.concatenate([row[m]["per_target"] for row in rows])
            secs = float(np.mean([row[m]["wall_per_clip_s"] for row in rows]))
            table[m] = {"clips": int(vals.size), "mean": float(vals.mean()), "median": float(np.median(vals)),
                        "wall_per_clip_s": secs,
                        "within_paper_scale": int(sum(bool(within_paper_scale(task, v)) for v in vals))}
            if m != "ditto":
                table[m].update(clips_as_good_as_ditto=int(better(vals, ref).sum()), speedup=ref_s / secs,
                                mean_as_good_as_ditto=bool(better(vals.mean(), ref.mean())))
        out[task] = {"metric": metric, "runs": len(rows), "rows": table}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reports", nargs="+", help="outputs of benchmarks/ditto2_speed.py")
    a = ap.parse_args()
    print(json.dumps(pool([load_run(p) for p in a.reports]), indent=1))


if __name__ == "__main__":
    main()
