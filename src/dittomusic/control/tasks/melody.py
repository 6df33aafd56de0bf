"""Melody: the frame-wise pitch class follows a note sequence (DITTO sec. 4)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fnn
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

from .. import features as feat
from ..base import Control, as_target, get_control, register_control, target_row
from ..spec import TARGET_AUDIO, TaskOption, TaskSpec, register_task
from ..targets import melody_from_audio, melody_from_midi, melody_from_string


@register_control("melody")
class MelodyControl(Control):
    """Frame-wise pitch class: NLL of the target class (0 = C .. 11 = B, -1 = free) under the
    log energy-share chroma of the high-passed mel; metric = waveform chroma argmax accuracy (%)
    over constrained frames."""

    name = task = "melody"
    metric_name = "accuracy_pct"
    higher_is_better = True

    def __init__(self, target, cfg: MelConfig | None = None):
        super().__init__(cfg)
        t = as_target(target, torch.float64)
        if t.dim() not in (1, 2) or t.shape[-1] < 1:
            raise DittoError(f"melody target must be pitch classes [frames] or [B, frames], got shape {tuple(t.shape)}")
        if not torch.all((t == t.round()) & (t >= -1) & (t <= 11)):
            raise DittoError("melody target values must be pitch classes 0..11 (0 = C) or -1 for free frames")
        if not (t >= 0).any():
            raise DittoError("melody target constrains no frame (all -1)")
        t = t.long()
        self.target = t

    def feature(self, mel: Tensor) -> Tensor:
        return feat.log_chroma(self._check_mel(mel), self.cfg)

    def loss(self, mel: Tensor) -> Tensor:
        logp = self.feature(mel)
        if logp.shape[-1] != self.target.shape[-1]:
            raise DittoError(f"melody target has {self.target.shape[-1]} frames, the mel has {logp.shape[-1]}")
        self._check_batch(self.target, logp.shape[0], 1)
        y = self._target_like(logp, torch.long).expand(logp.shape[0], -1)
        nll = Fnn.nll_loss(logp, y, ignore_index=-1, reduction="none")  # [B, F], 0 where free
        return nll.sum(dim=-1) / (y >= 0).sum(dim=-1).clamp_min(1).to(nll.dtype)

    def metric(self, audio, sr: int, item: int = 0) -> float:
        pcs = feat.pitch_classes_from_audio(audio, sr, self.cfg)
        y = target_row(self.target, item, 1)
        n = min(len(pcs), len(y))
        ok = y[:n] >= 0
        if not ok.any():
            raise DittoError("melody metric: the audio overlaps no constrained target frame")
        return float(100.0 * np.mean(pcs[:n][ok] == y[:n][ok]))


def build(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
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


# public-domain tunes, all above middle C where the melody chroma listens
EVAL_TARGETS = [
    ("ode to joy", "E5:0.375 E5:0.375 F5:0.375 G5:0.375 G5:0.375 F5:0.375 E5:0.375 D5:0.375 C5:0.375 C5:0.375 "
                   "D5:0.375 E5:0.375 E5:0.5625 D5:0.1875 D5:0.75"),
    ("twinkle", "C5:0.4 C5:0.4 G5:0.4 G5:0.4 A5:0.4 A5:0.4 G5:0.8 F5:0.4 F5:0.4 E5:0.4 E5:0.4 D5:0.4 D5:0.4 C5:0.4"),
    ("scale", "C5:0.5 D5:0.5 E5:0.5 F5:0.5 G5:0.5 A5:0.5 B5:0.5 C6:0.5 B5:0.5 A5:0.5 G5:0.5 F5:0.5"),
    ("frere jacques", "G4:0.4 A4:0.4 B4:0.4 G4:0.4 G4:0.4 A4:0.4 B4:0.4 G4:0.4 B4:0.4 C5:0.4 D5:0.8 B4:0.4 C5:0.4 "
                      "D5:0.8"),
    ("greensleeves", "A4:0.4 C5:0.8 D5:0.4 E5:0.6 F5:0.2 E5:0.4 D5:0.8 B4:0.4 G4:0.6 A4:0.2 B4:0.4 C5:0.8 A4:0.4"),
    ("arpeggio", "C5:0.375 E5:0.375 G5:0.375 C6:0.375 A4:0.375 C5:0.375 E5:0.375 A5:0.375 F4:0.375 A4:0.375 "
                 "C5:0.375 F5:0.375 G4:0.375 B4:0.375 D5:0.375 G5:0.375"),
]


def eval_targets(n: int, frames: int, ref_mels, cfg: MelConfig):
    picks = EVAL_TARGETS[:n]
    return ([get_control("melody", target=melody_from_string(s, frames, cfg), cfg=cfg) for _, s in picks],
            [name for name, _ in picks])


def plot(ax, ctrl: MelodyControl, audio: np.ndarray, sr: int, item: int, label: str, stitched=None,
         boundaries=()) -> None:
    cfg = ctrl.cfg
    y = target_row(ctrl.target, item, 1).astype(float)
    chroma = feat.chroma_from_audio(audio, sr, cfg)
    ax.imshow(chroma, origin="lower", aspect="auto", cmap="Greys",
              extent=(0, chroma.shape[1] / cfg.frame_rate, -0.5, 11.5))
    y[y < 0] = np.nan
    ax.plot(np.arange(len(y)) / cfg.frame_rate, y, "r.", ms=2, label="target")
    ax.set_yticks(range(12), feat.PITCH_CLASSES, fontsize=6)
    ax.set_xlabel("s")
    ax.legend(fontsize=7, loc="upper right")


def preview(ax, ctrl: MelodyControl) -> None:
    y = target_row(ctrl.target, 0, 1).astype(float)
    y[y < 0] = np.nan
    ax.plot(np.arange(len(y)) / ctrl.cfg.frame_rate, y, "r.", ms=3, label="target")
    ax.set_ylim(-0.5, 11.5)
    ax.set_yticks(range(12), feat.PITCH_CLASSES, fontsize=6)
    ax.set_xlabel("s")


register_task(TaskSpec(
    "melody", build, eval_targets, plot, preview=preview, order=1, iters=150, metric="melody_accuracy_pct", metric_label="Acc % ↑",
    metric_cell=lambda value, median: f"{value:.1f}", help="the top line's pitch class over time",
    higher_better=True, paper_scale=85.0,
    # DITTO-2 with the CTD student's 4-step decode by default, by measurement on v2 (10 clips, seeds
    # 0 and 1 x 5 targets; benchmarks/ditto2_speed.py + ditto2_pool.py): 86.8 % frame accuracy against
    # DITTO's 74.5 % and the teacher decode's 81.9 %, at 34x DITTO's speed, FAD alike (5-clip FADs
    # 594 / 775 vs DITTO's 588 / 757). On v1 the teacher decode had won (99.4 vs 94.4 %).
    method="ditto2",
    options=(
        TaskOption("--target-notes", "target_notes", None, 'Melody as NOTE:SECONDS, e.g. "C5:0.5 E5:0.5 G5:1 r:0.5".'),
        TaskOption("--target-midi", "target_midi", None, "Melody from a MIDI file's top line.", "path"),
        TARGET_AUDIO,
    )))
