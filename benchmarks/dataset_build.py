"""Dataset build speed. Prints JSON.

    python benchmarks/dataset_build.py                 # --small build (target: <= 60 s)
    python benchmarks/dataset_build.py --hours 2       # throughput of a default-style build

Throughput is reported as rendered hours per wall-minute; the default 30 h build must
reach 20 h within 60 minutes, i.e. >= 0.33 h/min.
"""

import argparse
import json
import os
import tempfile
import time

from dittomusic.data.build import BuildConfig, build_dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=None, help="default-style build of this many hours")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ds")
        if args.hours is None:
            cfg = BuildConfig.small(out, workers=args.workers)
        else:
            cfg = BuildConfig(out=out, hours=args.hours, workers=args.workers)
        t0 = time.perf_counter()
        s = build_dataset(cfg, progress=False)
        wall = time.perf_counter() - t0
    print(json.dumps({
        "build": "small" if args.hours is None else f"{args.hours} h",
        "wall_seconds": round(wall, 2),
        "hours": s["hours"],
        "clips": s["clips"],
        "hours_per_minute": round(s["hours"] / (wall / 60), 3),
        "minutes_for_20_hours": round(20 / (s["hours"] / (wall / 60)), 2),
        "workers": s["workers"],
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
