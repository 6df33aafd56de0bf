"""How high does a real clip score with its own description? The text task's --tol default.

Steering a clip's CLAP score far above what real music of that description earns buys little
that a listener or the tag classifier hears, and costs texture: the steered clips go static
(issue #21). This scores real validation clips (never the eval's test clips) against prompts
written about them in the eval's held-out phrasings (eval/text.eval_prompts on the val split),
with the text task's loss (the prompt's cosine averaged with "a <collection>"'s where the prompt
names one), and prints one JSON line: the quantiles of the score and the loss 1 - median, the
tolerance at which a steered clip scores like the median real clip of its description.

    python benchmarks/text_tol.py --data data/full
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main(argv: list[str] | None = None) -> dict:
    from dittomusic.clap.scorer import load_scorer
    from dittomusic.control.tasks.text import TextControl
    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.text import eval_prompts

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--prompts", type=int, default=300, help="val clips, one prompt each")
    ap.add_argument("--split", default="val")
    ap.add_argument("--clap", default=None, help="the steering CLAP [default: bundled]")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    data = MelDataset(a.data, a.split, random_crop=False)
    n = min(a.prompts, len(data))
    prompts = eval_prompts(a.data, n, a.seed, split=a.split)
    index = {r["clip_id"]: i for i, r in enumerate(data.rows)}
    scorer = load_scorer(a.clap)
    scores, plain = [], []
    with torch.no_grad():
        for p in prompts:
            mel = data[index[p.clip_id]]["mel"][None].float()
            ctrl = TextControl(p.text, scorer=scorer)
            scores.append(1.0 - float(ctrl.loss(mel)[0]))
            plain.append(float(ctrl.feature(mel)[0]))
    s, f = np.array(scores), np.array(plain)
    q = {f"p{k}": round(float(np.percentile(s, k)), 4) for k in (10, 25, 50, 75, 90)}
    out = {"split": a.split, "clips": n, "score": q, "mean": round(float(s.mean()), 4),
           "prompt_only_median": round(float(np.median(f)), 4),
           "tol_at_median": round(1.0 - q["p50"], 4)}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
