"""What the C2ST critic sees: real test clips against transformed copies of themselves, and against an
autoencoder's reconstructions, over several split seeds. Prints JSON.

    python benchmarks/c2st_probe.py --data data/full --ae runs/ae_gan.safetensors [--clips 60] [--seeds 0,1]

Transforms: a 1-2-1 blur over time (onset sharpness), the same blur over mel bins (detail across
frequency), and Gaussian noise of 0.02 / 0.05 scaled units (1.6 / 4 dB). Each row gives the C2ST
accuracy per split seed: a transform the critic scores near 0.5 is invisible to it.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def _blur_time(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([[[0.25, 0.5, 0.25]]])
    return torch.nn.functional.conv1d(x.reshape(-1, 1, x.shape[-1]), w, padding=1).reshape(x.shape)


def main() -> int:
    from dittomusic.data.dataset import MelDataset
    from dittomusic.errors import DittoError
    from dittomusic.eval import realism as R
    from dittomusic.train.autoencoder import load_autoencoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a built dataset (its test clips)")
    ap.add_argument("--ae", default=None, help="an autoencoder (or latent model release) whose reconstructions to add")
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--seeds", default="0,1", help="C2ST split seeds, comma-separated")
    a = ap.parse_args()
    torch.set_num_threads(1)
    try:
        ds = MelDataset(a.data, "test", random_crop=False)
        idx = list(range(0, len(ds), max(1, len(ds) // a.clips)))[:a.clips]
        mel = torch.stack([ds[i]["mel"] for i in idx])
        groups = ([ds.rows[i]["piece_id"] for i in idx], None)
        g = torch.Generator().manual_seed(0)
        rows = {"time blur 1-2-1": _blur_time(mel), "frequency blur 1-2-1": _blur_time(mel.transpose(1, 2)).transpose(1, 2),
                "noise 0.02": mel + 0.02 * torch.randn(mel.shape, generator=g),
                "noise 0.05": mel + 0.05 * torch.randn(mel.shape, generator=g)}
        if a.ae:
            ae, _ = load_autoencoder(a.ae)
            with torch.no_grad():
                rows[f"reconstruction ({a.ae})"] = torch.cat(
                    [ae.decode(ae.encode(mel[s:s + 16])).clamp(-1, 1) for s in range(0, len(mel), 16)])
        seeds = [int(s) for s in a.seeds.split(",")]
        out = {"clips": len(idx), "seeds": seeds,
               "c2st": {k: [round(R.c2st(mel, x, seed=s, groups=groups)["accuracy"], 3) for s in seeds]
                        for k, x in rows.items()}}
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
