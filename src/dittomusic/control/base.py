"""The Control contract, its registry, and the combinators (weighted sums, one control per item).
The tasks' own controls live beside their TaskSpecs in control/tasks/.

A control is a target plus a differentiable loss on the generated mel, and a metric on audio.

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
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError


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


def batched(mel: Tensor) -> Tensor:
    if not isinstance(mel, Tensor):
        raise DittoError(f"controls take a torch mel tensor, got {type(mel).__name__}")
    if mel.dim() == 2:
        return mel.unsqueeze(0)
    if mel.dim() != 3:
        raise DittoError(f"expected a mel [B, n_mels, frames] or [n_mels, frames], got shape {tuple(mel.shape)}")
    return mel


def as_target(x, dtype) -> Tensor:
    """A target as a contiguous CPU tensor of dtype."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device="cpu", dtype=dtype).contiguous()


def target_row(target: Tensor, item: int, single_dims: int) -> np.ndarray:
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
    task = "control"  # the registered TaskSpec this control belongs to (control/tasks)
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
        mel = batched(mel)
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

    @property
    def frames(self) -> int | None:
        """Mel frames of the clip this control is built for; None: any length."""
        return None if self.target is None else int(self.target.shape[-1])

    def for_item(self, item: int) -> "Control":
        """The control scoring batch item `item` (itself, unless one control per item)."""
        return self

    def __repr__(self) -> str:
        shape = None if self.target is None else tuple(self.target.shape)
        return f"{type(self).__name__}(target={shape})"


class MultiControl(Control):
    """Weighted sum of controls: loss = sum_i w_i L_i (App. H uses (1/M) sum lambda_i L_i with
    lambda_intensity = 1/40 next to outpainting or structure and 1/4 next to melody: fold 1/M
    into the weights). Items are (control, weight) pairs or bare controls (weight 1).
    feature/target/metric return dicts keyed by control name."""

    name = "multi"

    task = "multi"

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
    def frames(self) -> int | None:
        return next((c.frames for c, _ in self.items if c.frames is not None), None)

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
        self.task = self.controls[0].task
        self.metric_name = self.controls[0].metric_name
        self.higher_is_better = self.controls[0].higher_is_better

    @property
    def frames(self) -> int | None:
        return self.controls[0].frames

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
