"""Inversion (DITTO App. D): the generated mel matches a real recording's, f(x0) = x0 with an MSE
loss; its methods (control/methods/inversion.py) start from the recording's DDIM inversion. The
optimized x_T then regenerates the recording under other tags or samplers (--init-latent)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig, MelSpectrogram, mel_spectrogram
from dittomusic.errors import DittoError

from .. import features as feat
from ..base import Control, as_target, batched, get_control, register_control, target_row
from ..spec import TaskSpec, register_task
from .painting import REFERENCE, _mel_of


@register_control("invert")
class InversionControl(Control):
    """Mean squared error between the mel and a reference mel ([n_mels, F] or [B, n_mels, F])."""

    name = task = "invert"

    def __init__(self, target, cfg: MelConfig | None = None):
        super().__init__(cfg)
        t = as_target(target, torch.float32)
        if t.dim() not in (2, 3) or t.shape[-2] != self.cfg.n_mels or t.shape[-1] < 1:
            raise DittoError(f"an inversion target is a mel [{self.cfg.n_mels}, frames] (or batched), got "
                             f"{tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise DittoError("the inversion target mel contains NaN or inf")
        self.target = t

    def feature(self, mel: Tensor) -> Tensor:
        return self._check_mel(mel)

    def loss(self, mel: Tensor) -> Tensor:
        x = self.feature(mel)
        if x.shape[-1] != self.target.shape[-1]:
            raise DittoError(f"invert: the reference has {self.target.shape[-1]} frames, the mel {x.shape[-1]}")
        self._check_batch(self.target, x.shape[0], 2)
        return (x - self._target_like(x)).square().mean(dim=(-2, -1))

    def reference(self, batch: int) -> Tensor:
        """The reference mel per item [batch, n_mels, F] (CPU)."""
        t = self.target if self.target.dim() == 3 else self.target.unsqueeze(0)
        return t.expand(batch, -1, -1) if t.shape[0] == 1 else t

    def metric(self, audio, sr: int, item: int = 0) -> float:
        a = torch.from_numpy(feat.audio_array(audio, sr, self.cfg))
        with torch.no_grad():  # scoring final audio only
            mel = MelSpectrogram(self.cfg)(a.float())
        y = target_row(self.target, item, 2)
        n = min(mel.shape[-1], y.shape[-1])
        return float(np.mean((batched(mel)[0, :, :n].numpy() - y[:, :n]) ** 2))


def build(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
    if o.reference is None:
        raise DittoError("invert needs --reference FILE.wav (the recording to invert)")
    ref = _mel_of(o.reference, cfg)
    # a reference shorter than the clip sets the clip, cut to a length the model can denoise
    n = frames if frames <= ref.shape[-1] else ref.shape[-1] // multiple * multiple
    if n < max(1, multiple):
        raise DittoError(f"the reference is {ref.shape[-1]} mel frames long; this model needs at least {multiple}")
    return get_control("invert", target=ref[:, :n], cfg=cfg)


def eval_targets(n: int, frames: int, ref_mels, cfg: MelConfig):
    if ref_mels is None or len(ref_mels) < n:
        raise DittoError(f"the inversion eval needs {n} test clips as references")
    return [get_control("invert", target=r[:, :frames], cfg=cfg) for r in ref_mels[:n]], \
        [f"test clip {i}" for i in range(n)]


def plot(ax, ctrl: InversionControl, audio: np.ndarray, sr: int, item: int, label: str, stitched=None,
         boundaries=()) -> None:
    cfg = ctrl.cfg
    y = target_row(ctrl.target, item, 2)
    got = mel_spectrogram(audio, cfg)[:, :y.shape[-1]]
    ax.imshow(np.concatenate([y, np.full((y.shape[0], y.shape[1] // 30 + 1), np.nan), got], axis=1),
              origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_xlabel(f"reference  |  {label}")
    ax.set_ylabel("mel bin")


register_task(TaskSpec(
    "invert", build, eval_targets, plot, order=6, metric="invert_mse", method="ditto_invert",
    help="regenerate a recording (DITTO App. D): its mel, from its DDIM inversion", options=(REFERENCE,),
    control_eval=False))
