"""Controls: a target plus a differentiable loss on the generated mel, and a metric on audio.

Every control has
  target                      what the output should match (tensor, or None for self-looping)
  feature(mel) -> Tensor      f(x0), differentiable, mel [B, n_mels, F] (or [n_mels, F])
  loss(mel) -> Tensor[B]      per batch item, differentiable, no no_grad anywhere on the path
  metric(audio, sr) -> float  the same quantity measured on the final (vocoded) waveform
  metrics(audio, sr) -> dict  {"<name>_<metric_name>": value}, merged across a MultiControl
and is built by name with get_control(name, **kwargs). Constant tensors (targets, filter
kernels, weightings) are created on the mel's device and dtype at call time.

DITTO (Novack et al. 2024) sec. 4 definitions, with the feature read off the mel instead of the
vocoded audio (the vocoder is not differentiable here); see features.py for the measurements:
  intensity  MSE (dB^2) between the 1-s smoothed frame energy in dB and a target curve
  melody     NLL of the target pitch class under the log energy-share chroma, per frame
  structure  MSE between the smoothed MFCC self-similarity matrix and a target SSM
  outpaint / inpaint / loop   MSE between matched frames: M_gen (.) x0 vs M_ref (.) x_ref
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as Fnn
from torch import Tensor

from dittomusic.audio.mel import MelConfig, MelSpectrogram
from dittomusic.errors import DittoError

from . import features as feat
from .targets import PaintMasks, inpaint_masks, loop_masks, outpaint_masks

_CONTROLS: dict[str, Callable[..., "Control"]] = {}


def register_control(name: str):
    """Decorator registering a Control class (or a factory returning one) under `name`."""

    def deco(obj):
        if name in _CONTROLS:
            raise ValueError(f"control {name!r} is already registered")
        _CONTROLS[name] = obj
        return obj

    return deco


def available_controls() -> list[str]:
    return sorted(_CONTROLS)


def get_control(name: str, **kwargs) -> "Control":
    """Build a registered control, e.g. get_control("intensity", target=curve)."""
    if name not in _CONTROLS:
        raise DittoError(f"unknown control {name!r}; available: {', '.join(available_controls())}")
    factory = _CONTROLS[name]
    sig = inspect.signature(factory)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise DittoError(f"bad arguments for control {name!r}: {e}; accepted: {name}{sig}") from None
    return factory(**kwargs)


def _batched(mel: Tensor) -> Tensor:
    if not isinstance(mel, Tensor):
        raise DittoError(f"controls take a torch mel tensor, got {type(mel).__name__}")
    if mel.dim() == 2:
        return mel.unsqueeze(0)
    if mel.dim() != 3:
        raise DittoError(f"expected a mel [B, n_mels, frames] or [n_mels, frames], got shape {tuple(mel.shape)}")
    return mel


def _as_tensor(x, dtype) -> Tensor:
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device="cpu", dtype=dtype).contiguous()


def _row(target: Tensor, item: int, single_dims: int) -> np.ndarray:
    """Row `item` of a target that may be batched (one more leading dim than a single target)."""
    if target.dim() == single_dims:
        return target.cpu().numpy()
    if not -target.shape[0] <= item < target.shape[0]:
        raise DittoError(f"item {item} is out of range for a batch of {target.shape[0]} targets")
    return target[item].cpu().numpy()


class Control:
    """Base class. Subclasses set name/metric_name/higher_is_better and implement feature,
    loss and metric."""

    name = "control"
    metric_name = "mse"
    higher_is_better = False
    target: Tensor | None = None

    def __init__(self, cfg: MelConfig | None = None):
        self.cfg = cfg or MelConfig()
        self._moved: dict = {}

    def _target_like(self, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """The target on like's device (cached per device/dtype; targets are constants)."""
        key = (like.device, dtype or like.dtype)
        t = self._moved.get(key)
        if t is None:
            t = self._moved[key] = self.target.to(device=like.device, dtype=key[1])
        return t

    def _check_mel(self, mel: Tensor) -> Tensor:
        mel = _batched(mel)
        if mel.shape[-2] != self.cfg.n_mels:
            raise DittoError(f"{self.name}: mel has {mel.shape[-2]} bins, the control's MelConfig has {self.cfg.n_mels}")
        return mel

    def _check_batch(self, t: Tensor, batch: int, single_dims: int) -> None:
        if t.dim() > single_dims and t.shape[0] not in (1, batch):
            raise DittoError(f"{self.name}: target batch {t.shape[0]} does not match mel batch {batch}")

    def feature(self, mel: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, mel: Tensor) -> Tensor:
        raise NotImplementedError

    def metric(self, audio, sr: int, item: int = 0) -> float:
        raise NotImplementedError

    def metrics(self, audio, sr: int, item: int = 0) -> dict[str, float]:
        return {f"{self.name}_{self.metric_name}": self.metric(audio, sr, item)}

    def __call__(self, mel: Tensor) -> Tensor:
        return self.loss(mel)

    def for_item(self, item: int) -> "Control":
        """The control scoring batch item `item` (itself, unless one control per item)."""
        return self

    def __repr__(self) -> str:
        shape = None if self.target is None else tuple(self.target.shape)
        return f"{type(self).__name__}(target={shape})"


@register_control("intensity")
class IntensityControl(Control):
    """Frame energy (dB) smoothed with a ~1-s Savitzky-Golay filter vs a [F] or [B, F] dB target;
    MSE in dB^2 over the constrained (non-NaN) frames. NaN frames are free, e.g. the overlap of
    Intensity+Outpainting (App. H applies intensity to the non-overlapping part only)."""

    name = "intensity"
    metric_name = "mse_db2"

    def __init__(self, target, cfg: MelConfig | None = None, window: int | None = None,
                 polyorder: int = feat.INTENSITY_POLYORDER):
        super().__init__(cfg)
        t = _as_tensor(target, torch.float64)
        if t.dim() not in (1, 2) or t.shape[-1] < 1:
            raise DittoError(f"intensity target must be a dB curve [frames] or [B, frames], got shape {tuple(t.shape)}")
        if not torch.isfinite(t).any(dim=-1).all():
            raise DittoError("intensity target has no finite dB value to match (NaN marks free frames)")
        if torch.isinf(t).any():
            raise DittoError("intensity target contains inf; use finite dB values (NaN for free frames)")
        self.target = t
        self.window = feat.sg_window(self.cfg) if window is None else int(window)
        self.polyorder = int(polyorder)

    def feature(self, mel: Tensor) -> Tensor:
        return feat.intensity_curve(self._check_mel(mel), self.cfg, self.window, self.polyorder)

    def loss(self, mel: Tensor) -> Tensor:
        f = self.feature(mel)
        if f.shape[-1] != self.target.shape[-1]:
            raise DittoError(f"intensity target has {self.target.shape[-1]} frames, the mel has {f.shape[-1]}")
        self._check_batch(self.target, f.shape[0], 1)
        y = self._target_like(f)
        free = torch.isnan(y)
        diff = torch.where(free, torch.zeros_like(f), f - torch.nan_to_num(y))
        count = (~free).sum(dim=-1).clamp_min(1).to(f.dtype)
        return diff.square().sum(dim=-1) / count

    def metric(self, audio, sr: int, item: int = 0) -> float:
        curve = feat.intensity_curve_from_audio(audio, sr, self.cfg, self.window, self.polyorder)
        y = _row(self.target, item, 1)
        n = min(len(curve), len(y))
        ok = np.isfinite(y[:n])
        if not ok.any():
            raise DittoError("intensity metric: the audio overlaps no constrained target frame")
        return float(np.mean((curve[:n][ok] - y[:n][ok]) ** 2))


@register_control("melody")
class MelodyControl(Control):
    """Frame-wise pitch class: NLL of the target class (0 = C .. 11 = B, -1 = free) under the
    log energy-share chroma of the high-passed mel; metric = waveform chroma argmax accuracy (%)
    over constrained frames."""

    name = "melody"
    metric_name = "accuracy_pct"
    higher_is_better = True

    def __init__(self, target, cfg: MelConfig | None = None):
        super().__init__(cfg)
        t = _as_tensor(target, torch.float64)
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
        y = _row(self.target, item, 1)
        n = min(len(pcs), len(y))
        ok = y[:n] >= 0
        if not ok.any():
            raise DittoError("melody metric: the audio overlaps no constrained target frame")
        return float(100.0 * np.mean(pcs[:n][ok] == y[:n][ok]))


@register_control("structure")
class StructureControl(Control):
    """Smoothed MFCC self-similarity [F, F] vs a target SSM ([F, F] or [B, F, F]); MSE."""

    name = "structure"

    def __init__(self, target, cfg: MelConfig | None = None, window: int | None = None,
                 polyorder: int = feat.STRUCTURE_POLYORDER, n_coeffs: int = feat.N_MFCC):
        super().__init__(cfg)
        t = _as_tensor(target, torch.float32)
        if t.dim() not in (2, 3) or t.shape[-1] != t.shape[-2]:
            raise DittoError(f"structure target must be a square SSM [frames, frames] (or [B, F, F]), got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise DittoError("structure target contains NaN or inf")
        self.target = t
        self.window = feat.sg_window(self.cfg) if window is None else int(window)
        self.polyorder = int(polyorder)
        self.n_coeffs = int(n_coeffs)

    def feature(self, mel: Tensor) -> Tensor:
        return feat.self_similarity(self._check_mel(mel), self.cfg, self.window, self.polyorder, self.n_coeffs)

    def loss(self, mel: Tensor) -> Tensor:
        s = self.feature(mel)
        if s.shape[-1] != self.target.shape[-1]:
            raise DittoError(f"structure target is {self.target.shape[-1]} frames square, the mel has {s.shape[-1]} frames")
        self._check_batch(self.target, s.shape[0], 2)
        return (s - self._target_like(s)).square().mean(dim=(-2, -1))

    def metric(self, audio, sr: int, item: int = 0) -> float:
        s = feat.self_similarity_from_audio(audio, sr, self.cfg, self.window, self.polyorder, self.n_coeffs)
        y = _row(self.target, item, 2)
        n = min(s.shape[-1], y.shape[-1])
        return float(np.mean((s[:n, :n] - y[:n, :n]) ** 2))


class PaintControl(Control):
    """Masked reconstruction: mean over matched elements of (M_gen (.) x0 - M_ref (.) x_ref)^2,
    with x_ref = x0 itself for reference-free loops (gradient flows through both sides)."""

    def __init__(self, masks: PaintMasks):
        super().__init__(masks.cfg)
        self.masks = masks
        self.name = masks.kind
        self.target = masks.target()

    def feature(self, mel: Tensor) -> Tensor:
        mel = self._check_mel(mel)
        if mel.shape[-1] != self.masks.frames:
            raise DittoError(f"{self.name}: mel has {mel.shape[-1]} frames, the masks were built for {self.masks.frames}")
        return mel[..., self.masks.gen_idx.to(mel.device)]

    def loss(self, mel: Tensor) -> Tensor:
        x = self.feature(mel)
        mel = _batched(mel)
        if self.target is None:
            y = mel[..., self.masks.ref_idx.to(mel.device)]
        else:
            if self.target.shape[0] != mel.shape[-2]:
                raise DittoError(f"{self.name}: reference mel has {self.target.shape[0]} bins, the mel {mel.shape[-2]}")
            y = self._target_like(x)
        return (x - y).square().mean(dim=(-2, -1))

    def metric(self, audio, sr: int, item: int = 0) -> float:
        a = torch.from_numpy(feat._audio_np(audio, sr, self.cfg))
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


class MultiControl(Control):
    """Weighted sum of controls: loss = sum_i w_i L_i (App. H uses (1/M) sum lambda_i L_i with
    lambda_intensity = 1/40 next to outpainting or structure and 1/4 next to melody: fold 1/M
    into the weights). Items are (control, weight) pairs or bare controls (weight 1).
    feature/target/metric return dicts keyed by control name."""

    name = "multi"

    def __init__(self, items: Iterable):
        pairs = []
        for it in items:
            ctrl, w = (it, 1.0) if isinstance(it, Control) else tuple(it)
            if not isinstance(ctrl, Control):
                raise DittoError(f"MultiControl items must be controls or (control, weight) pairs, got {it!r}")
            w = float(w)
            if not (math.isfinite(w) and w >= 0):
                raise DittoError(f"MultiControl weight for {ctrl.name} must be a finite number >= 0, got {w}")
            pairs.append((ctrl, w))
        if not pairs:
            raise DittoError("MultiControl needs at least one control")
        super().__init__(pairs[0][0].cfg)
        self.items = pairs
        self.names = []
        for c, _ in pairs:
            n, k = c.name, 2
            while n in self.names:
                n, k = f"{c.name}_{k}", k + 1
            self.names.append(n)
        self.target = None

    @property
    def targets(self) -> dict:
        return {n: c.target for n, (c, _) in zip(self.names, self.items)}

    def terms(self, mel: Tensor) -> dict[str, Tensor]:
        """Each control's unweighted loss [B], for logging."""
        return {n: c.loss(mel) for n, (c, _) in zip(self.names, self.items)}

    def loss(self, mel: Tensor) -> Tensor:
        total = None
        for (c, w) in self.items:
            term = w * c.loss(mel)
            total = term if total is None else total + term
        return total

    def feature(self, mel: Tensor) -> dict[str, Tensor]:
        return {n: c.feature(mel) for n, (c, _) in zip(self.names, self.items)}

    def metrics(self, audio, sr: int, item: int = 0) -> dict[str, float]:
        return {f"{n}_{c.metric_name}": c.metric(audio, sr, item) for n, (c, _) in zip(self.names, self.items)}

    def metric(self, audio, sr: int, item: int = 0) -> dict[str, float]:  # type: ignore[override]
        """A dict (one metric per control, with different units), same as metrics()."""
        return self.metrics(audio, sr, item)

    def __repr__(self) -> str:
        return "MultiControl(" + ", ".join(f"{n}*{w:g}" for n, (_, w) in zip(self.names, self.items)) + ")"


class BatchedControl(Control):
    """One control per batch item (different targets, or painting references, per item), so a
    batch of different tasks' targets is optimized in one batched sampler pass."""

    def __init__(self, controls: Iterable[Control]):
        self.controls = list(controls)
        if not self.controls or not all(isinstance(c, Control) for c in self.controls):
            raise DittoError("BatchedControl needs a non-empty list of controls")
        super().__init__(self.controls[0].cfg)
        self.name = self.controls[0].name
        self.metric_name = self.controls[0].metric_name
        self.higher_is_better = self.controls[0].higher_is_better

    def __len__(self) -> int:
        return len(self.controls)

    def for_item(self, item: int) -> Control:
        return self.controls[item]

    def loss(self, mel: Tensor) -> Tensor:
        mel = self._check_mel(mel)
        if mel.shape[0] != len(self.controls):
            raise DittoError(f"BatchedControl has {len(self.controls)} controls, the mel batch is {mel.shape[0]}")
        return torch.cat([c.loss(mel[b:b + 1]) for b, c in enumerate(self.controls)])

    def feature(self, mel: Tensor):
        mel = self._check_mel(mel)
        return [c.feature(mel[b:b + 1]) for b, c in enumerate(self.controls)]

    def metric(self, audio, sr: int, item: int = 0):
        return self.controls[item].metric(audio, sr, 0)

    def metrics(self, audio, sr: int, item: int = 0) -> dict[str, float]:
        return self.controls[item].metrics(audio, sr, 0)
