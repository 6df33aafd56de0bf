"""User-facing tasks: turn targets given as files, strings or presets into a Control.

    ctrl = build_control("intensity+melody", frames=512, preset="tanh-rise", target_notes="C5:1 E5:1")

A task is one name or several joined by '+'. Several are weighted as in DITTO App. H:
lambda_intensity = 1/40 next to outpainting or structure and 1/4 next to melody (its dB^2 loss
is ~10-100x larger than the others), everything else 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dittomusic.audio.mel import MelConfig, mel_spectrogram
from dittomusic.errors import DittoError

from .losses import Control, MultiControl, get_control
from .targets import (
    intensity_from_audio,
    intensity_from_csv,
    intensity_preset,
    melody_from_audio,
    melody_from_midi,
    melody_from_string,
    structure_from_audio,
    structure_from_pattern,
)

TASKS = ("intensity", "melody", "structure", "outpaint", "inpaint", "loop")
PAINT_TASKS = ("outpaint", "inpaint", "loop")
DITTO_LR, DITTO2_LR = 5e-3, 1e-2
LONG_TASKS = ("melody", "structure")  # DITTO sec. 5.1: K = 150 for these, 70 otherwise


def default_iters(task: str) -> int:
    return 150 if any(t in LONG_TASKS for t in split_task(task)) else 70


def default_lr(method: str) -> float:
    """Adam step size: DITTO sec. 5.1's 5e-3 ("higher leads to stability issues"), 1e-2 for
    DITTO-2, whose one-step surrogate is smoother and which benchmarks/ditto2_speed.py measured
    better at 1e-2 on melody (99.4 vs 99.0 % accuracy) and structure (MSE 0.0037 vs 0.0046)."""
    return DITTO2_LR if method == "ditto2" else DITTO_LR


def default_method(task: str) -> str:
    """ditto_draft for painting, the paper's ditto otherwise. On the control eval's 15 painted
    clips ditto_draft kept every seam ratio <= 1.24 (ditto: 14 of 15, max 1.64) at a 4x lower
    masked mel MSE, for a slightly higher pooled FAD (397 vs 376): see the README."""
    return "ditto_draft" if any(t in PAINT_TASKS for t in split_task(task)) else "ditto"


def split_task(task: str) -> list[str]:
    parts = [p.strip().lower() for p in str(task).split("+") if p.strip()]
    bad = [p for p in parts if p not in TASKS]
    if not parts or bad:
        raise DittoError(f"unknown task {task!r}; choose from {', '.join(TASKS)} or combine them with '+', "
                         "e.g. intensity+melody")
    if len(set(parts)) != len(parts):
        raise DittoError(f"task {task!r} names a control twice")
    if sum(p in PAINT_TASKS for p in parts) > 1:
        raise DittoError(f"task {task!r} combines several painting tasks; use at most one of {', '.join(PAINT_TASKS)}")
    return parts


@dataclass
class TaskOptions:
    """Targets for every task; only the ones a task uses need to be set."""

    # intensity
    preset: str = "linear-rise"
    low_db: float = -38.0
    high_db: float = -18.0
    target_curve: str | None = None  # CSV time_s,db
    # melody
    target_notes: str | None = None
    target_midi: str | None = None
    # structure
    target_pattern: str = "ABBA"
    # intensity / melody / structure from a reference recording
    target_audio: str | None = None
    # painting
    reference: str | None = None
    overlap_s: float = 1.0
    gap_start_s: float | None = None  # default: centred in the reference
    gap_s: float = 2.0


def _mel_of(path: str, cfg: MelConfig) -> torch.Tensor:
    from dittomusic.audio.io import load_audio

    p = Path(path)
    if not p.is_file():
        raise DittoError(f"reference audio not found: {p}")
    return torch.from_numpy(mel_spectrogram(load_audio(p, cfg.sample_rate), cfg))


def _single(task: str, frames: int, o: TaskOptions, cfg: MelConfig) -> Control:
    if task == "intensity":
        if o.target_curve and o.target_audio:
            raise DittoError("give one intensity target: --target-curve or --target-audio, not both")
        if o.target_curve:
            y = intensity_from_csv(o.target_curve, frames, cfg)
        elif o.target_audio:
            y = intensity_from_audio(o.target_audio, frames, cfg)
        else:
            y = intensity_preset(o.preset, frames, o.low_db, o.high_db, cfg)
        return get_control("intensity", target=y, cfg=cfg)
    if task == "melody":
        given = [k for k in ("target_notes", "target_midi", "target_audio") if getattr(o, k)]
        if len(given) != 1:
            raise DittoError("melody needs exactly one target: --target-notes \"C5:0.5 D5:0.5 ...\", "
                             "--target-midi FILE.mid or --target-audio FILE.wav"
                             + (f" (got {', '.join(given)})" if given else ""))
        if o.target_notes:
            y = melody_from_string(o.target_notes, frames, cfg)
        elif o.target_midi:
            y = melody_from_midi(o.target_midi, frames, cfg)
        else:
            y = melody_from_audio(o.target_audio, frames, cfg)
        return get_control("melody", target=y, cfg=cfg)
    if task == "structure":
        y = (structure_from_audio(o.target_audio, frames, cfg) if o.target_audio
             else structure_from_pattern(o.target_pattern, frames, cfg))
        return get_control("structure", target=y, cfg=cfg)
    # painting
    if task == "loop" and o.reference is None:
        return get_control("loop", overlap_s=o.overlap_s, frames=frames, cfg=cfg)
    if o.reference is None:
        raise DittoError(f"{task} needs --reference FILE.wav (the audio to continue or fill in)")
    ref = _mel_of(o.reference, cfg)
    if task == "outpaint":
        return get_control("outpaint", ref_mel=ref, overlap_s=o.overlap_s, frames=frames, cfg=cfg)
    if task == "loop":
        return get_control("loop", ref_mel=ref, overlap_s=o.overlap_s, frames=frames, cfg=cfg)
    dur = ref.shape[-1] / cfg.frame_rate
    start = o.gap_start_s if o.gap_start_s is not None else max(0.0, dur / 2 - o.gap_s / 2)
    return get_control("inpaint", ref_mel=ref, gap_start_s=start, gap_s=o.gap_s,
                       frames=min(frames, ref.shape[-1]), cfg=cfg)


def build_control(task: str, frames: int, options: TaskOptions | None = None, cfg: MelConfig | None = None) -> Control:
    o = options or TaskOptions()
    cfg = cfg or MelConfig()
    parts = split_task(task)
    ctrls = [_single(p, frames, o, cfg) for p in parts]
    if len(ctrls) == 1:
        return ctrls[0]
    m = len(ctrls)
    others = set(parts) - {"intensity"}
    w_int = 0.25 if others == {"melody"} else 1 / 40
    return MultiControl([(c, (w_int if p == "intensity" else 1.0) / m) for p, c in zip(parts, ctrls)])

