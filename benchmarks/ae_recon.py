"""How much a mel autoencoder loses: its reconstructions of real test clips scored with the realism
yardstick against the originals. A latent diffusion model can be no more realistic than this ceiling.
Prints JSON.

    python benchmarks/ae_recon.py --ae runs/ae.safetensors --data data/full [--clips 60] [--png recon.png]
    python benchmarks/ae_recon.py --ae MODEL --data data/full --eval-seed 1   # the clips `eval model --seed 1` scores

An autoencoder with texture noise (`dittomusic autoencoder texture`) is scored twice, side by side:
the mean decoder (`texture: false`) and with its noise (`texture: true`, the default decode).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def main() -> int:
    from dittomusic.data.dataset import MelDataset
    from dittomusic.errors import DittoError
    from dittomusic.eval import realism as R
    from dittomusic.train.autoencoder import load_autoencoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ae", required=True, help="an exported autoencoder (dittomusic autoencoder export)")
    ap.add_argument("--data", required=True, help="a built dataset")
    ap.add_argument("--clips", type=int, default=60, help="test clips, evenly spaced over the split")
    ap.add_argument("--png", default=None, help="also draw originals | reconstructions (6 clips)")
    ap.add_argument("--eval-seed", type=int, default=None,
                    help="score the real clips `dittomusic eval model --seed N` draws (20 per collection) instead, so "
                         "the ceiling and a generated set are read on the same clips")
    ap.add_argument("--c2st-repeats", type=int, default=5, help="C2ST splits averaged (one split is noisy)")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    try:
        ae, meta = load_autoencoder(a.ae, a.device)
        ds = MelDataset(a.data, "test", random_crop=False)
        if a.eval_seed is not None:
            from dittomusic.eval.base_model import pick_clips

            idx = pick_clips(ds, 20, a.eval_seed)
        else:
            idx = list(range(0, len(ds), max(1, len(ds) // a.clips)))[:a.clips]
        dev = next(ae.parameters()).device
        mel = torch.stack([ds[i]["mel"] for i in idx]).to(dev)
        groups = [ds.rows[i]["piece_id"] for i in idx]
        rows = []
        for texture in ([False, True] if ae.texture_std is not None else [False]):
            with torch.no_grad():
                rec = torch.cat([ae.decode(ae.encode(mel[s:s + 16]), texture=texture).clamp(-1, 1)
                                 for s in range(0, len(mel), 16)])
            rep = R.realism_report(mel.cpu(), rec.cpu(), seed=0,
                                   c2st_kwargs={"groups": (groups, None), "repeats": a.c2st_repeats})
            rows.append({"texture": texture, "l1": round(float((rec - mel).abs().mean()), 4),
                         "ratio": {k: round(v, 3) for k, v in rep["ratio"].items()},
                         "texture_fad": round(rep["texture_fad"], 2), "c2st": round(rep["c2st"]["accuracy"], 3),
                         "c2st_splits": [round(x, 3) for x in rep["c2st"].get("accuracies", [rep["c2st"]["accuracy"]])]})
        if a.png:
            R.plot_side_by_side(mel[::max(1, len(mel) // 6)][:6].cpu(), rec[::max(1, len(mel) // 6)][:6].cpu(),
                                [f"test clip {i}" for i in range(6)], a.png)
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = {"autoencoder": a.ae, "train": meta.get("train"), "latent_channels": ae.cfg.latent_channels,
           "downsample": ae.cfg.downsample, "clips": len(idx), "eval_seed": a.eval_seed, **rows[-1]}
    if len(rows) > 1:
        out["mean_decoder"] = rows[0]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
