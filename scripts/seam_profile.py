"""Where a painted clip's seam score comes from: the spectral flux around each stitch boundary.

Re-stitches one clip of a finished `dittomusic eval control` run from its saved mels (as
`--rescore-seams` does) and prints, per boundary, the seam ratio and the flux frame by frame
from -0.3 to +0.3 s, with the frames the metric reads (+-0.05 s) in brackets. A real seam is a
spike inside the brackets; a score over 1.5 with larger values outside them is a busy passage.

    python scripts/seam_profile.py --eval evals/control --data data/full --task loop --item 2 --methods ditto,naive
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def main() -> int:
    from dittomusic.control.features import SEAM_WINDOW_S, spectral_flux, spectral_flux_seam_ratio
    from dittomusic.control.methods import stitch_and_score
    from dittomusic.errors import DittoError
    from dittomusic.eval.control import PAINT_SETTINGS, build_targets, reopen, saved_mels

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", required=True, help="output folder of `dittomusic eval control`")
    ap.add_argument("--data", required=True, help="the dataset the eval ran on")
    ap.add_argument("--task", required=True, choices=sorted(PAINT_SETTINGS))
    ap.add_argument("--item", type=int, default=0, help="target index (0-based)")
    ap.add_argument("--methods", default="ditto")
    ap.add_argument("--span", type=float, default=0.3, help="seconds of flux shown on each side")
    a = ap.parse_args()

    try:
        results, pipe, ref_mels = reopen(a.eval, a.data)
        cfg = results["config"]
        if not 0 <= a.item < cfg["targets"]:
            raise DittoError(f"--item must be in 0..{cfg['targets'] - 1} (the eval ran {cfg['targets']} targets)")
        ctrls, _ = build_targets(a.task, cfg["targets"], pipe.backend.clip_frames, ref_mels, pipe.mel_cfg)
        masks = ctrls[a.item].masks
        sr = pipe.mel_cfg.sample_rate
        for m in a.methods.split(","):
            mel = torch.from_numpy(saved_mels(a.eval, a.task, m)[a.item:a.item + 1]).to(pipe.device)
            audio, _, bounds = stitch_and_score(pipe, masks, mel)  # as the eval stitches and scores
            flux, t = spectral_flux(audio, sr)
            med = float(np.median(flux))
            print(f"{a.task} item {a.item} {m}: median flux {med:.2f} dB")
            for b in bounds:
                near, shown = np.abs(t - b) <= SEAM_WINDOW_S, np.abs(t - b) <= a.span
                ratio = spectral_flux_seam_ratio(audio, sr, [b])
                row = " ".join(f"[{v:.2f}]" if n else f"{v:.2f}" for v, n in zip(flux[shown], near[shown]))
                outside = flux[shown & ~near].max() if (shown & ~near).any() else float("nan")
                print(f"  boundary {b:.2f} s: ratio {ratio:.2f}, max flux inside {flux[near].max():.2f} / "
                      f"outside {outside:.2f}\n    {row}")
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
