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

from dittomusic.eval.card import bakeoff_markdown as markdown, bakeoff_row as row


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
