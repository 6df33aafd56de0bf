"""Target vs achieved, measured on the final waveform, plus the optimization loss curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dittomusic.utils import atomic_path

from . import features as feat
from .losses import Control, IntensityControl, MelodyControl, MultiControl, PaintControl, StructureControl, _row


def _panel(ax, ctrl: Control, audio: np.ndarray, sr: int, item: int, label: str, stitched=None,
           boundaries=()) -> None:
    cfg = ctrl.cfg
    if isinstance(ctrl, IntensityControl):
        y = _row(ctrl.target, item, 1)
        got = feat.intensity_curve_from_audio(audio, sr, cfg, ctrl.window, ctrl.polyorder)
        t = np.arange(len(y)) / cfg.frame_rate
        ax.plot(t, y, "k--", lw=1.5, label="target")
        ax.plot(np.arange(len(got)) / cfg.frame_rate, got, lw=1.2, label=label)
        ax.set_ylabel("dB")
        ax.set_xlabel("s")
        ax.legend(fontsize=7)
    elif isinstance(ctrl, MelodyControl):
        y = _row(ctrl.target, item, 1).astype(float)
        chroma = feat.chroma_from_audio(audio, sr, cfg)
        ax.imshow(chroma, origin="lower", aspect="auto", cmap="Greys",
                  extent=(0, chroma.shape[1] / cfg.frame_rate, -0.5, 11.5))
        y[y < 0] = np.nan
        ax.plot(np.arange(len(y)) / cfg.frame_rate, y, "r.", ms=2, label="target")
        ax.set_yticks(range(12), feat.PITCH_CLASSES, fontsize=6)
        ax.set_xlabel("s")
        ax.legend(fontsize=7, loc="upper right")
    elif isinstance(ctrl, StructureControl):
        y = _row(ctrl.target, item, 2)
        got = feat.self_similarity_from_audio(audio, sr, cfg, ctrl.window, ctrl.polyorder, ctrl.n_coeffs)
        n = min(len(y), got.shape[-1])
        ax.imshow(np.concatenate([y[:n, :n], np.full((n, n // 20), np.nan), got[:n, :n]], axis=1),
                  origin="lower", cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"target  |  {label}")
    elif isinstance(ctrl, PaintControl) and stitched is not None:
        from dittomusic.audio.mel import mel_spectrogram

        mel = mel_spectrogram(stitched, cfg)
        ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1,
                  extent=(0, mel.shape[1] / cfg.frame_rate, 0, mel.shape[0]))
        for b in boundaries:
            ax.axvline(b, color="cyan", lw=1, ls="--")
        ax.set_xlabel("s (dashed: stitch boundaries)")
        ax.set_ylabel("mel bin")


def plot_control(control: Control, runs: dict[str, tuple[np.ndarray, np.ndarray | None]], sr: int, out_png,
                 item: int = 0, title: str = "", boundaries: list[float] | None = None,
                 loss_history: dict[str, list[float]] | None = None) -> Path:
    """runs: method -> (clip audio [samples], stitched audio or None). One row per control (and
    per method for matrix/spectrogram panels), one loss-curve panel if histories are given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctrls = [c for c, _ in control.items] if isinstance(control, MultiControl) else [control]
    rows = []
    for c in ctrls:
        if isinstance(c, IntensityControl):
            rows.append((c, None))  # all methods overlaid
        else:
            rows += [(c, m) for m in runs]
    n = len(rows) + (1 if loss_history else 0)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), squeeze=False, layout="constrained")
    for ax, (c, m) in zip(axes[:, 0], rows):
        for name in (runs if m is None else [m]):
            clip, stitched = runs[name]
            _panel(ax, c, clip, sr, item, name, stitched, boundaries or ())
        metric = " | ".join(f"{name}: {c.metric(runs[name][0], sr, item):.3g}" for name in (runs if m is None else [m]))
        ax.set_title(f"{c.name} ({c.metric_name}) — {metric}", fontsize=8)
    if loss_history:
        ax = axes[-1, 0]
        for name, h in loss_history.items():
            ax.plot(h, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("optimization step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_png
