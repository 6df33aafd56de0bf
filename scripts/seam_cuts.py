"""How the cut is chosen changes the seams: re-stitch every painted clip of a finished
`dittomusic eval control` run with the mel-domain cut cost (`stitch(..., listen=False)`) and
with the listening cut (the default with a vocoder), and score both with the seam metric and
with a finer STFT (n_fft 1024, hop 128) that the listening judge does not use.

    python scripts/seam_cuts.py --eval evals/control --data data/full [--methods ditto,naive] [--json out.json]

Prints one row per task/method (with the stitch's wall time per clip, vocoding included) and a
pooled summary; the generation itself is not rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def fine_ratio(audio, sr: int, bounds, n_fft: int = 1024, hop: int = 128) -> float:
    """The seam ratio of `features.spectral_flux_seam_ratio` at another STFT resolution."""
    from dittomusic.control.features import SEAM_FLUX_FLOOR_DB, SEAM_WINDOW_S, spectral_flux

    flux, t = spectral_flux(audio, sr, n_fft=n_fft, hop_length=hop)
    peak = max(float(flux[np.abs(t - b) <= SEAM_WINDOW_S].max()) for b in bounds)
    return (peak + SEAM_FLUX_FLOOR_DB) / (float(np.median(flux)) + SEAM_FLUX_FLOOR_DB)


def main() -> int:
    from dittomusic.control.features import spectral_flux_seam_ratio
    from dittomusic.control.stitching import stitch
    from dittomusic.errors import DittoError
    from dittomusic.eval.control import PAINT_SETTINGS, SEAM_PASS, build_targets, reopen, saved_mels

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", required=True, help="output folder of `dittomusic eval control`")
    ap.add_argument("--data", required=True, help="the dataset the eval ran on")
    ap.add_argument("--tasks", default=",".join(sorted(PAINT_SETTINGS)))
    ap.add_argument("--methods", default=None, help="comma-separated [default: every finished method]")
    ap.add_argument("--json", default=None, help="also write the per-clip scores here")
    a = ap.parse_args()

    try:
        tasks = [t for t in a.tasks.split(",") if t]
        bad = [t for t in tasks if t not in PAINT_SETTINGS]
        if bad:
            raise DittoError(f"--tasks {bad} are not painting tasks; choose from {sorted(PAINT_SETTINGS)}")
        ev, pipe, ref_mels = reopen(a.eval, a.data)
        cfg = ev["config"]
        sr = pipe.mel_cfg.sample_rate
        out, pooled = {}, {"mel": [], "listen": [], "mel_fine": [], "listen_fine": []}
        print(f"{'task/method':26s} {'cut':6s} {'seam ratio per clip':34s} pass  | finer STFT")
        for task in tasks:
            ctrls, _ = build_targets(task, cfg["targets"], pipe.backend.clip_frames, ref_mels, pipe.mel_cfg)
            methods = a.methods.split(",") if a.methods else sorted(
                k.split("/")[1] for k in ev["runs"] if k.startswith(f"{task}/"))
            for m in methods:
                mels = torch.from_numpy(saved_mels(a.eval, task, m)).to(pipe.device)
                row = {}
                for cut, listen in (("mel", False), ("listen", True)):
                    seam, fine, wall = [], [], 0.0
                    for b, c in enumerate(ctrls):
                        t0 = time.perf_counter()
                        st = stitch(c.masks, mels[b:b + 1], vocoder=pipe.vocoder, listen=listen)
                        wall += time.perf_counter() - t0
                        audio = st.audio.reshape(-1)
                        seam.append(spectral_flux_seam_ratio(audio, sr, st.boundaries_s))
                        fine.append(fine_ratio(audio, sr, st.boundaries_s))
                    row[cut], row[f"{cut}_fine"] = seam, fine
                    pooled[cut] += seam
                    pooled[f"{cut}_fine"] += fine
                    ok = sum(v <= SEAM_PASS for v in seam)
                    print(f"{task + '/' + m:26s} {cut:6s} {' '.join(f'{v:.2f}' for v in seam):34s} {ok}/{len(seam)}  | "
                          f"{' '.join(f'{v:.2f}' for v in fine)} ({sum(v <= SEAM_PASS for v in fine)}/{len(fine)})  "
                          f"| stitch {wall / len(ctrls):.1f} s/clip",
                          flush=True)
                out[f"{task}/{m}"] = row
        print("\npooled over", len(pooled["mel"]), "clips (mean ratio, clips <= 1.5):")
        for key, vals in pooled.items():
            v = np.asarray(vals)
            print(f"  {key:12s} mean {v.mean():.3f}  median {np.median(v):.3f}  pass {(v <= SEAM_PASS).sum()}/{len(v)}")
        if a.json:
            Path(a.json).write_text(json.dumps({"clips": out, "pooled": pooled}, indent=1))
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
