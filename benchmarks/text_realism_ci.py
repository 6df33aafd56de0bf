"""How sure is `eval text`'s realism verdict? A paired bootstrap of the texture-FAD ratio of two rows
(row c against row b by default: the issue's "within 10 %"), from an eval folder's saved mels.

Clips are resampled by prompt index, the same indices for both rows (the rows share prompts and
seeds); the real set is the eval's (the same 120 test clips). Prints JSON: each row's texture FAD
(as the eval reported it), the ratio, its 95 % interval, and the share of resamples within --limit.

    python benchmarks/text_realism_ci.py --data data/full --eval docs/text --mels runs/text_eval
    python benchmarks/text_realism_ci.py --data data/full --eval runs/tv/terms_s1_k20 --against-eval runs/text_eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.realism import spread_indices, texture_embedding, texture_fad_of, texture_fad_ratio_ci

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval", required=True, help="folder with the eval's text_eval.json")
    ap.add_argument("--mels", default=None, help="folder with its mels_<row>.npy [default: --eval]")
    ap.add_argument("--rows", nargs=2, default=["c", "b"], metavar=("ROW", "AGAINST"))
    ap.add_argument("--against-eval", default=None,
                    help="read the AGAINST row from this eval folder instead (same prompts and seeds), e.g. a "
                         "text_loss_variants run's row c against the full eval's row b")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--limit", type=float, default=1.10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    res = json.loads((Path(a.eval) / "text_eval.json").read_text())
    test = MelDataset(a.data, "test", random_crop=False)
    n_real = res["config"].get("real_clips", 120)
    ridx = spread_indices(len(test), n_real)
    real = texture_embedding(torch.stack([test[i]["mel"] for i in ridx]))
    where = [Path(a.mels or a.eval), Path(a.against_eval or a.mels or a.eval)]
    x, y = (texture_embedding(torch.from_numpy(np.load(d / f"mels_{r}.npy"))) for d, r in zip(where, a.rows))
    if a.against_eval:
        other = json.loads((Path(a.against_eval) / "text_eval.json").read_text())
        if [p["text"] for p in other["prompts"]] != [p["text"] for p in res["prompts"]]:
            raise SystemExit("--against-eval ran other prompts: the bootstrap pairs clips by prompt")
        res["rows"][a.rows[1]] = other["rows"][a.rows[1]]
    ci = texture_fad_ratio_ci(real, x, y, boot=a.boot, seed=a.seed, limit=a.limit)
    print(json.dumps({"rows": a.rows, "texture_fad": {a.rows[0]: texture_fad_of(real, x), a.rows[1]: texture_fad_of(real, y)},
                      "reported": {r: res["rows"][r]["realism"]["texture_fad"] for r in a.rows},
                      "ratio": ci["ratio"], "ratio_ci95": ci["ci95"], "share_within_limit": ci["share_within_limit"],
                      "limit": a.limit, "boot": a.boot, "clips": len(x), "real_clips": len(ridx)}, indent=1))

if __name__ == "__main__":
    main()
