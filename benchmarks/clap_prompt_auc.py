"""Does a CLAP's score for a prompt tell the prompt's collection apart, on real clips?

For each of `eval text`'s held-out prompts that names a collection: the ROC AUC of the CLAP cosine
between the prompt and real test clips, clips of that collection against the rest. Also for
"a <collection>" alone, and for the prompt's clauses (split at punctuation and joining words), their
mean and max. Steering maximizes the prompt's cosine, so a low AUC here means the target itself
says little about the collection.

    python benchmarks/clap_prompt_auc.py --data data/full --eval runs/text_eval/text_eval.json
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import torch


def clauses(text: str) -> list[str]:
    parts = re.split(r"[,;.]| with | performing | arranged for | play | played by | and ", text)
    return [p.strip() for p in parts if re.search(r"[^\W\d_]", p)]


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from dittomusic.clap.scorer import load_scorer
    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.realism import spread_indices

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval", required=True, help="an `eval text` text_eval.json (its prompts)")
    ap.add_argument("--clips", type=int, default=240)
    a = ap.parse_args()
    prompts = [p for p in json.load(open(a.eval))["prompts"] if p["expected"].get("collection")]
    test = MelDataset(a.data, "test", random_crop=False)
    idx = spread_indices(len(test), a.clips)
    mel = torch.stack([test[i]["mel"] for i in idx])
    cols = [test.rows[i]["collection"] for i in idx]
    names = sorted(set(cols))
    out = {"clips": len(idx), "prompts": len(prompts)}
    for clap in ("clap", "clap2"):
        sc = load_scorer(None, bundled=clap)

        def scores(texts):
            with torch.no_grad():
                return torch.cat([sc.score(mel[i:i + 40], texts) for i in range(0, len(mel), 40)]).numpy()

        def auc(p, v):
            return float(roc_auc_score([c == p for c in cols], v))

        full = scores([p["text"] for p in prompts])
        short = scores([f"a {c}" for c in names])
        cl_mean, cl_max = [], []
        for p in prompts:
            s = scores([p["text"]] + clauses(p["text"]))
            cl_mean.append(auc(p["expected"]["collection"], s.mean(1)))
            cl_max.append(auc(p["expected"]["collection"], s.max(1)))
        aucs = [auc(p["expected"]["collection"], full[:, j]) for j, p in enumerate(prompts)]
        out[clap] = {"prompt_auc_mean": float(np.mean(aucs)), "prompt_auc_min": float(np.min(aucs)),
                     "clauses_mean_auc": float(np.mean(cl_mean)), "clauses_max_auc": float(np.mean(cl_max)),
                     "a_collection_auc": {c: auc(c, short[:, k]) for k, c in enumerate(names)}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
