"""What the locked-phase synthesis can reach with a perfect magnitude: the ceiling of issue 18's design.

The neural vocoder predicts a magnitude, locks its phase to the peaks and refines it with Griffin-Lim
projections (dittomusic.audio.phase). Here the magnitude is the test render's *true* STFT magnitude at
the head's resolution, so the distances left are what the phase costs. Prints JSON: per setting
(projections, momentum) the mean MR-STFT distance and mel spectral convergence against the render.

    python scripts/vocoder_ceiling.py --data data/full --clips 6 [--setting 16,0 --setting 16,0.99 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="A built dataset (its test clips are re-rendered)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--n-fft", type=int, default=2048, help="The head's STFT size [2048: the mel's own]")
    ap.add_argument("--setting", action="append", default=[],
                    help="ITERS,MOMENTUM of the projections after phase locking (repeatable) [0,0 16,0 8,0.99 16,0.99]")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        settings = [(int(s.split(",")[0]), float(s.split(",")[1])) for s in a.setting] or \
            [(0, 0.0), (16, 0.0), (8, 0.99), (16, 0.99)]
    except (ValueError, IndexError):
        ap.error("--setting takes ITERS,MOMENTUM, e.g. 16,0.99")
    torch.set_num_threads(a.threads)
    from dittomusic.audio.losses import mel_spectral_convergence, mrstft_distance
    from dittomusic.audio.mel import MelConfig, MelSpectrogram
    from dittomusic.audio.phase import griffin_lim, locked_phase, to_stft_phase
    from dittomusic.data.pairs import dataset_plan
    from dittomusic.errors import DittoError
    from dittomusic.eval.vocoder import pick_test_clips

    try:
        mel_cfg = MelConfig(**dataset_plan(a.data)["content"]["mel"])
        clips = pick_test_clips(a.data, a.clips)
    except DittoError as e:
        sys.exit(f"vocoder_ceiling: {e}")
    mod = MelSpectrogram(mel_cfg)
    n_fft, hop = a.n_fft, mel_cfg.hop_length
    window = torch.hann_window(n_fft)
    rows = {}
    for iters, momentum in settings:
        per = {"mrstft": [], "mel_sc": [], "seconds": []}
        for c in clips:
            x = c["audio"]
            mag = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True).abs()[None]
            t = time.perf_counter()
            phase = to_stft_phase(locked_phase(mag, n_fft, hop))
            y = griffin_lim(mag, phase, n_fft, hop, iters, momentum, window=window, length=x.shape[-1])[0]
            per["seconds"].append(time.perf_counter() - t)
            per["mrstft"].append(mrstft_distance(x, y))
            per["mel_sc"].append(mel_spectral_convergence(x, y, mel=mod))
        rows[f"{iters} projections, momentum {momentum:g}"] = {
            "iters": iters, "momentum": momentum, "mrstft_distance": float(np.mean(per["mrstft"])),
            "mel_spectral_convergence": float(np.mean(per["mel_sc"])),
            "seconds_per_clip": float(np.median(per["seconds"]))}
    print(json.dumps({"clips": len(clips), "n_fft": n_fft, "hop": hop, "threads": a.threads,
                      "clip_ids": [c["row"]["clip_id"] for c in clips], "magnitude": "true (the render's STFT)",
                      "settings": rows}, indent=1))


if __name__ == "__main__":
    main()
