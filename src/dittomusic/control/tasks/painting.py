"""Painting: outpaint (continue a reference), inpaint (fill a gap in one) and loop (a clip whose
end runs into its start), all one masked reconstruction loss over matched frames (DITTO sec. 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig, MelSpectrogram, mel_spectrogram
from dittomusic.errors import DittoError

from .. import features as feat
from ..base import Control, batched, get_control, register_control
from ..masks import PaintMasks, inpaint_masks, loop_masks, outpaint_masks
from ..spec import TaskOption, TaskSpec, register_task


class PaintControl(Control):
    """Masked reconstruction: mean over matched elements of (M_gen (.) x0 - M_ref (.) x_ref)^2,
    with x_ref = x0 itself for reference-free loops (gradient flows through both sides)."""

    def __init__(self, masks: PaintMasks):
        super().__init__(masks.cfg)
        self.masks = masks
        self.name = masks.kind
        self.task = "loop" if masks.kind == "loop-free" else masks.kind
        self.target = masks.target()

    @property
    def frames(self) -> int:
        return self.masks.frames

    def feature(self, mel: Tensor) -> Tensor:
        mel = self._check_mel(mel)
        if mel.shape[-1] != self.masks.frames:
            raise DittoError(f"{self.name}: mel has {mel.shape[-1]} frames, the masks were built for {self.masks.frames}")
        return mel[..., self.masks.gen_idx.to(mel.device)]

    def loss(self, mel: Tensor) -> Tensor:
        x = self.feature(mel)
        mel = batched(mel)
        if self.target is None:
            y = mel[..., self.masks.ref_idx.to(mel.device)]
        else:
            if self.target.shape[0] != mel.shape[-2]:
                raise DittoError(f"{self.name}: reference mel has {self.target.shape[0]} bins, the mel {mel.shape[-2]}")
            y = self._target_like(x)
        return (x - y).square().mean(dim=(-2, -1))

    def metric(self, audio, sr: int, item: int = 0) -> float:
        a = torch.from_numpy(feat.audio_array(audio, sr, self.cfg))
        with torch.no_grad():  # scoring final audio only
            mel = MelSpectrogram(self.cfg).double()(a)
            n = self.masks.frames
            if mel.shape[-1] < n:
                raise DittoError(f"{self.name} metric: audio gives {mel.shape[-1]} mel frames, need {n}")
            return float(self.loss(mel[..., :n])[0])


@register_control("outpaint")
def outpaint_control(ref_mel, overlap_s: float, frames: int | None = None, cfg: MelConfig | None = None) -> PaintControl:
    return PaintControl(outpaint_masks(ref_mel, overlap_s, frames, cfg))


@register_control("inpaint")
def inpaint_control(ref_mel, gap_start_s: float, gap_s: float, frames: int | None = None,
                    cfg: MelConfig | None = None) -> PaintControl:
    return PaintControl(inpaint_masks(ref_mel, gap_start_s, gap_s, frames, cfg))


@register_control("loop")
def loop_control(ref_mel=None, overlap_s: float = 0.5, frames: int | None = None, loop_s: float | None = None,
                 cfg: MelConfig | None = None) -> PaintControl:
    return PaintControl(loop_masks(ref_mel, overlap_s, frames, loop_s, cfg))


def paint_of(control: Control) -> PaintControl | None:
    """The painting control inside a control (alone or in a weighted sum), or None."""
    if isinstance(control, PaintControl):
        return control
    items = getattr(control, "items", None)  # a MultiControl
    if items:
        paints = [c for c, _ in items if isinstance(c, PaintControl)]
        if len(paints) == 1:
            return paints[0]
    return None


def _mel_of(path: str, cfg: MelConfig) -> torch.Tensor:
    from dittomusic.audio.io import load_audio

    p = Path(path)
    if not p.is_file():
        raise DittoError(f"reference audio not found: {p}")
    return torch.from_numpy(mel_spectrogram(load_audio(p, cfg.sample_rate), cfg))


def _reference(task: str, o, cfg: MelConfig) -> torch.Tensor:
    if o.reference is None:
        raise DittoError(f"{task} needs --reference FILE.wav (the audio to continue or fill in)")
    return _mel_of(o.reference, cfg)


def build_outpaint(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
    return get_control("outpaint", ref_mel=_reference("outpaint", o, cfg), overlap_s=o.overlap_s, frames=frames,
                       cfg=cfg)


def build_inpaint(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
    ref = _reference("inpaint", o, cfg)
    dur = ref.shape[-1] / cfg.frame_rate
    start = o.gap_start_s if o.gap_start_s is not None else max(0.0, dur / 2 - o.gap_s / 2)
    # a reference shorter than the clip sets the window, cut to a length the model can denoise
    window = frames if frames <= ref.shape[-1] else max(multiple, ref.shape[-1] // multiple * multiple)
    return get_control("inpaint", ref_mel=ref, gap_start_s=start, gap_s=o.gap_s, frames=window, cfg=cfg)


def build_loop(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
    ref = None if o.reference is None else _mel_of(o.reference, cfg)  # no reference: a self-loop
    return get_control("loop", ref_mel=ref, overlap_s=o.overlap_s, frames=frames, cfg=cfg)


def _eval_targets(task: str):
    def targets(n: int, frames: int, ref_mels, cfg: MelConfig):
        kw = SPECS[task].eval_settings
        ctrls = []
        for r in ref_mels[:n]:
            if task == "inpaint":
                dur = r.shape[-1] / cfg.frame_rate
                ctrls.append(get_control("inpaint", ref_mel=r, gap_start_s=dur / 2 - kw["gap_s"] / 2,
                                         gap_s=kw["gap_s"], cfg=cfg))
            else:
                ctrls.append(get_control(task, ref_mel=r, frames=frames, cfg=cfg, **kw))
        return ctrls, [f"test clip {i}" for i in range(n)]

    return targets


def plot(ax, ctrl: PaintControl, audio: np.ndarray, sr: int, item: int, label: str, stitched=None,
         boundaries=()) -> None:
    """The stitched result's mel with the stitch boundaries (nothing without a stitched result)."""
    if stitched is None:
        return
    cfg = ctrl.cfg
    mel = mel_spectrogram(stitched, cfg)
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1,
              extent=(0, mel.shape[1] / cfg.frame_rate, 0, mel.shape[0]))
    for b in boundaries:
        ax.axvline(b, color="cyan", lw=1, ls="--")
    ax.set_xlabel("s (dashed: stitch boundaries)")
    ax.set_ylabel("mel bin")


def preview(ax, ctrl: PaintControl) -> None:
    """The reference's mel with the frames the new clip must match shaded (and an inpaint gap)."""
    m, fr = ctrl.masks, ctrl.cfg.frame_rate
    if m.ref_mel is None:
        ax.text(0.5, 0.5, f"a {m.frames / fr:.2f} s clip that loops on itself\n(its last {m.overlap / fr:.2f} s "
                "run into its start)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ref = m.ref_mel.numpy()
    ax.imshow(ref, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1,
              extent=(0, ref.shape[1] / fr, 0, ref.shape[0]))
    idx = m.ref_idx.numpy()
    runs = np.split(idx, np.nonzero(np.diff(idx) != 1)[0] + 1)
    for i, r in enumerate(runs):
        ax.axvspan(r[0] / fr, (r[-1] + 1) / fr, color="cyan", alpha=0.3, label="matched" if i == 0 else None)
    if m.kind == "inpaint":
        ax.axvspan((m.window_start + m.gap[0]) / fr, (m.window_start + m.gap[1]) / fr, color="white", alpha=0.4,
                   label="gap to fill")
    ax.set_xlabel(f"s (reference; a new {m.frames / fr:.2f} s clip)")
    ax.set_ylabel("mel bin")
    ax.legend(fontsize=7, loc="upper right")


REFERENCE = TaskOption("--reference", "reference", None,
                       "Audio to outpaint / inpaint / loop (loop without it: a self-loop).", "path")
OVERLAP = TaskOption("--overlap", "overlap_s", 1.0, "Outpaint/loop overlap in seconds.", "float")
# ditto_draft by default: on the control eval's 15 painted clips it kept every seam ratio <= 1.24
# (ditto: 14 of 15, max 1.64) at a 4x lower masked mel MSE, for a slightly higher pooled FAD (397 vs 376)
PAINT = dict(plot=plot, preview=preview, painting=True, method="ditto_draft")
SPECS = {s.name: register_task(s) for s in (
    TaskSpec("outpaint", build_outpaint, _eval_targets("outpaint"), order=3, help="continue a reference recording",
             options=(REFERENCE, OVERLAP), eval_settings={"overlap_s": 1.0},
             table="Table 1 form: outpainting (o = {overlap_s:g} s)", **PAINT),
    TaskSpec("loop", build_loop, _eval_targets("loop"), order=4, help="a clip that loops into a reference (or itself)",
             options=(REFERENCE, OVERLAP), eval_settings={"overlap_s": 1.0},
             table="Table 1 form: looping (overlap {overlap_s:g} s)", **PAINT),
    TaskSpec("inpaint", build_inpaint, _eval_targets("inpaint"), order=5, help="fill a gap in a reference recording",
             options=(REFERENCE,
                      TaskOption("--gap-start", "gap_start_s", None, "Inpaint gap start (s) [default: centred].",
                                 "float"),
                      TaskOption("--gap", "gap_s", 2.0, "Inpaint gap length (s).", "float")),
             eval_settings={"gap_s": 2.0}, table="Table 2 form: inpainting (gap = {gap_s:g} s)", **PAINT),
)}
