"""The base-model bake-off table: several `dittomusic eval model` reports side by side. Prints JSON,
and with --markdown a table for the model card.

    python benchmarks/base_bakeoff.py runs/eval_latent.json runs/eval_unet.json runs/eval_dit_p2.json \
        [--markdown]

Each row: the route, its training steps and CPU-hours, the realism yardstick (C2ST held-out accuracy,
grain, mean spectral flatness, harmonic prominence and partial stability as generated / real
ratios, texture FAD) and the tag classifier's numbers (accuracy ratio, FAD / validation FAD).
Issue 17's targets: C2ST <= 0.75, grain and flatness within 1.3x of real, accuracy ratio >= 0.9,
FAD ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def row(report: dict, name: str) -> dict:
    train = report.get("model_train", {})
    out = {"name": name, "model": report.get("model"), "steps": train.get("steps"),
           "cpu_hours": train.get("cpu_hours"), "accuracy_ratio": round(report["accuracy_ratio"], 3),
           "fad_ratio": round(report["fad_ratio_generated_over_validation"], 2),
           "clips": report["settings"]["n"]}
    rr = report.get("realism")
    if rr:
        r = rr["ratio"]
        out.update({"c2st": round(rr["c2st"]["accuracy"], 3) if rr.get("c2st") else None,
                    "grain_ratio": round(r["grain"], 2), "flatness_ratio": round(r["flatness_mean"], 2),
                    "prominence_ratio": round(r["prominence_db_mean"], 2),
                    "stability_ratio": round(r["stability_mean"], 2),
                    "texture_fad": round(rr["texture_fad"], 2)})
    return out


COLUMNS = [("name", "route"), ("steps", "steps"), ("cpu_hours", "CPU-h"), ("c2st", "C2ST ↓ (≤ 0.75)"),
           ("grain_ratio", "grain ×real (≤ 1.3)"), ("flatness_ratio", "flatness ×real (≤ 1.3)"),
           ("prominence_ratio", "prominence ×real"), ("stability_ratio", "stability ×real"),
           ("texture_fad", "texture FAD ↓"), ("accuracy_ratio", "tag acc. ratio (≥ 0.9)"),
           ("fad_ratio", "FAD / val (≤ 1.5)")]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(c for _, c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join("–" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="JSON reports of `dittomusic eval model --out`")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    args = ap.parse_args()
    rows = []
    for p in args.reports:
        try:
            rep = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            print(f"error: cannot read {p}: {e}", file=sys.stderr)
            return 2
        if "accuracy_ratio" not in rep:
            print(f"error: {p} is not a `dittomusic eval model` report", file=sys.stderr)
            return 2
        rows.append(row(rep, Path(p).stem.removeprefix("eval_")))
    print(markdown(rows) if args.markdown else json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
