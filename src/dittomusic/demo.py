"""The quick-start job: a small dataset, then a listenable and viewable preview of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dittomusic.audio import MelConfig, get_vocoder, save_wav
from dittomusic.data.build import BuildConfig, build_dataset
from dittomusic.data.dataset import read_clips
from dittomusic.data.stats import load_clip, pick_examples, plot_mels


def run_demo(out: str | Path, seed: int = 0, workers: int = 0, vocoder: str | None = None) -> dict:
    out = Path(out)
    ds = out / "dataset"
    summary = build_dataset(BuildConfig.small(str(ds), seed=seed, workers=workers))
    rows = read_clips(ds, "test") or read_clips(ds)
    picks = pick_examples(rows, 1, seed)
    cfg = MelConfig()
    mels = [load_clip(ds, rows[i]) for i in picks]
    vocoder = get_vocoder(vocoder, cfg)
    gap = np.zeros(int(0.5 * cfg.sample_rate), dtype=np.float32)
    audio = []
    with torch.no_grad():
        for m in mels:
            audio += [vocoder(torch.from_numpy(m)).numpy(), gap]
    wav = save_wav(out / "preview.wav", np.concatenate(audio), cfg.sample_rate)
    captions = [rows[i]["caption"] for i in picks]
    png = plot_mels(mels, captions, out / "preview.png", cfg)
    return {"dataset": str(ds), "clips": summary["clips"], "hours": summary["hours"], "wav": str(wav),
            "png": str(png), "captions": captions}
