"""Whose sense of a collection does steering move? Each row of an `eval text` run, read three ways.

For every prompt that names a collection: the tag classifier's hit (from the eval's JSON), and the
zero-shot collection of the steering CLAP and of the second CLAP, each the argmax of its cosine with
"a <collection>" over the dataset's collections (the phrase the text task's collection term steers).
A row whose steering CLAP hits far more often than both judges was steered to please that CLAP alone.

    python benchmarks/text_zero_shot.py --eval runs/text_eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> dict:
    from dittomusic.clap.scorer import load_scorer
    from dittomusic.models.loading import bundled_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", required=True, help="an `eval text` folder (text_eval.json, mels_<row>.npy)")
    ap.add_argument("--clap", default=None, help="the steering CLAP [default: the bundled one]")
    ap.add_argument("--judge-clap", default=None, help="the second CLAP [default: the bundled second CLAP]")
    a = ap.parse_args(argv)
    folder = Path(a.eval)
    res = json.loads((folder / "text_eval.json").read_text())
    prompts = res["prompts"]
    collections = sorted({p["expected"]["collection"] for p in prompts if p["expected"].get("collection")})
    phrases = [f"{'an' if c[0].lower() in 'aeiou' else 'a'} {c}" for c in collections]
    claps = {"steering_clap": load_scorer(a.clap), "second_clap": load_scorer(a.judge_clap or str(bundled_path("clap2")))}
    named = [i for i, p in enumerate(prompts) if p["expected"].get("collection")]
    want = [prompts[i]["expected"]["collection"] for i in named]
    out = {"eval": str(folder), "prompts_naming_a_collection": len(named), "collections": collections, "rows": {}}
    for row, r in res["rows"].items():
        path = folder / f"mels_{row}.npy"
        if not path.is_file():
            continue
        mels = torch.from_numpy(np.load(path)).float()[named]
        hits = {"classifier": sum(bool(r["items"][i]["collection_hit"]) for i in named)}
        with torch.no_grad():
            for name, scorer in claps.items():
                pred = scorer.score(mels, phrases).argmax(1).tolist()
                hits[name] = sum(collections[p] == w for p, w in zip(pred, want))
        out["rows"][row] = {"label": r["label"], "collection_hits": hits}
        print(json.dumps({"row": row, **hits, "of": len(named)}), flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
