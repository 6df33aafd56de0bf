"""Mel -> waveform vocoders behind one small interface.

A vocoder takes the scaled log-mel [..., n_mels, frames] in [-1, 1] and returns audio
[..., (frames - 1) * hop] at the mel config's sample rate. Two are built in:

- "neural": the ConvNeXt + iSTFT vocoder trained here (audio/neural.py), the default when its
  bundled weights (assets/vocoder.safetensors) are installed. Differentiable end to end.
- "griffinlim": NNLS mel inversion + fast Griffin-Lim; needs no weights. The fallback, with a
  one-line warning, when the bundled weights are missing.

Register others with `register_vocoder`.
"""

from __future__ import annotations

import inspect
import logging
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Protocol

import torch

from dittomusic.audio.mel import MelConfig, unit_to_db
from dittomusic.audio.phase import griffin_lim
from dittomusic.errors import DittoError

log = logging.getLogger("dittomusic.audio")


class Vocoder(Protocol):
    cfg: MelConfig

    def __call__(self, mel: torch.Tensor) -> torch.Tensor: ...


_VOCODERS: dict[str, Callable[..., Vocoder]] = {}


def register_vocoder(name: str):
    def deco(cls):
        _VOCODERS[name] = cls
        return cls

    return deco


def bundled_vocoder_path() -> Path:
    return Path(str(resources.files("dittomusic") / "assets" / "vocoder.safetensors"))


_warned_fallback = False


def default_vocoder() -> str:
    """"neural" when the bundled weights are installed, else "griffinlim" (warned once per process)."""
    global _warned_fallback
    path = bundled_vocoder_path()
    if path.is_file():
        return "neural"
    if not _warned_fallback:
        log.warning("no bundled neural vocoder (%s): using Griffin-Lim", path)
        _warned_fallback = True
    return "griffinlim"


def _accepts(cls, name: str) -> bool:
    params = inspect.signature(cls).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def resolve_vocoder(name: str | None) -> tuple[str, str | None]:
    """(registered vocoder, its weights or None) that get_vocoder builds for `name` (None: the
    default); an unknown one is a DittoError."""
    if name is None:
        name = default_vocoder()
    if name not in _VOCODERS and (str(name).endswith(".safetensors") or Path(name).is_dir()):
        return "neural", name
    if name not in _VOCODERS:
        raise DittoError(f"unknown vocoder {name!r}; available: {', '.join(sorted(_VOCODERS))} "
                         f"(or a vocoder .safetensors file)")
    return name, None


def get_vocoder(name: str | None = None, cfg: MelConfig | None = None, *, device=None,
                weights: str | os.PathLike | None = None, **kwargs) -> Vocoder:
    """A vocoder by name (None: `default_vocoder()`), or "neural" with the weights at a .safetensors path.

    device: where it runs (vocoders that take no device are built as they are); weights: a weights
    file for vocoders that load one (the neural one: a release file or a training run).
    """
    name, path = resolve_vocoder(name)
    weights = path if path is not None else weights
    cls = _VOCODERS[name]
    if device is not None and _accepts(cls, "device"):
        kwargs["device"] = device
    if weights is not None:
        if not _accepts(cls, "weights"):
            raise DittoError(f"the {name} vocoder takes no weights")
        kwargs["weights"] = weights
    return cls(cfg or MelConfig(), **kwargs)


def available_vocoders() -> list[str]:
    return sorted(_VOCODERS)


@lru_cache(maxsize=8)
def _basis_and_pinv(cfg: MelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The mel basis B [n_mels, bins] and its pseudo-inverse, once per config.

    B has full row rank (condition number ~5.4 at 160 bands), so pinv(B) = B^T (B B^T)^-1 by a
    Cholesky solve: equal to torch.linalg.pinv to ~1e-12, without its SVD, whose first call
    took 0.7-4 s of a cold `dittomusic generate` on 2 busy cores. Rank-deficient bases (empty
    bands) fall back to the SVD."""
    basis = torch.from_numpy(cfg.mel_basis())
    b = basis.double()
    chol, info = torch.linalg.cholesky_ex(b @ b.T)
    pinv = torch.cholesky_solve(b, chol).T if int(info) == 0 else torch.linalg.pinv(b)
    return basis, pinv.float()


def vocoder_name(vocoder) -> str:
    """A short description for reports: the registered name, and the weights file if any."""
    name = next((k for k, v in _VOCODERS.items() if type(vocoder) is v), type(vocoder).__name__)
    w = getattr(vocoder, "weights", None)
    return f"{name} ({Path(w).name})" if w else name


@register_vocoder("griffinlim")
class GriffinLimVocoder:
    """Mel -> linear magnitude by non-negative least squares, then fast Griffin-Lim
    (Perraudin et al. 2013).

    The NNLS step (multiplicative updates from the clamped pseudo-inverse) halves the
    mel-domain spectral convergence error of a plain pseudo-inverse (0.23 -> 0.12 on
    rendered music at 32 iterations; see tests/audio/test_vocoder.py).

    Same update as librosa.griffinlim (momentum 0.99), written in torch so it runs on the
    model's device and batches. The initial phase comes from a fixed-seed generator so the
    same mel always gives the same audio. It runs on whatever device the mel is on (`device` is
    accepted for the common interface).
    """

    def __init__(self, cfg: MelConfig, n_iter: int = 32, nnls_iter: int = 30, momentum: float = 0.99,
                 seed: int = 0, device=None):
        self.cfg = cfg
        self.n_iter = n_iter
        self.nnls_iter = nnls_iter
        self.momentum = momentum
        self.seed = seed
        self._basis, self._pinv = _basis_and_pinv(cfg)
        self._window = torch.hann_window(cfg.n_fft)

    def magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """Scaled log-mel -> non-negative linear STFT magnitude estimate."""
        power_mel = 10.0 ** (unit_to_db(mel.float(), self.cfg) / 10.0)
        basis = self._basis.to(mel.device)
        power_lin = torch.matmul(self._pinv.to(mel.device), power_mel).clamp_min(1e-10)
        numer = torch.matmul(basis.T, power_mel)
        for _ in range(self.nnls_iter):
            power_lin = power_lin * numer / (torch.matmul(basis.T, torch.matmul(basis, power_lin)) + 1e-12)
        return power_lin.sqrt()

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        shape = mel.shape[:-2]
        mag = self.magnitude(mel.reshape(-1, *mel.shape[-2:]))
        length = (mag.shape[-1] - 1) * self.cfg.hop_length
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        phase = torch.rand(mag.shape, generator=gen).to(mag.device) * (2 * torch.pi)
        c = self.cfg
        wav = griffin_lim(mag, phase, c.n_fft, c.hop_length, self.n_iter, self.momentum,
                          self._window.to(mag.device), length)
        return wav.reshape(*shape, wav.shape[-1])


@register_vocoder("neural")
class NeuralVocoder:
    """The ConvNeXt + iSTFT vocoder (audio/neural.py) with trained weights: the bundled file by default.

    Differentiable: called on a mel that requires grad, the audio carries the graph back to it
    (the weights themselves are frozen). Runs in float32 on `device`; the audio comes back on
    the mel's device.
    """

    def __init__(self, cfg: MelConfig, weights: str | os.PathLike | None = None, device=None, **inference):
        """`inference`: synthesis settings to run with instead of the file's (gl_iters, mel_match, gl_momentum)."""
        from dittomusic.audio.neural import load_vocoder

        path = Path(weights) if weights is not None else bundled_vocoder_path()
        if not path.exists():
            raise DittoError(f"neural vocoder weights not found: {path}; train them with `dittomusic vocoder train` "
                             f"or use --vocoder griffinlim")
        self.cfg = cfg
        self.weights = str(path)
        self.net, self.meta = load_vocoder(path, device, **inference)
        self.net.cfg.check_mel(cfg)
        self.device = next(self.net.parameters()).device

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel.to(self.device, torch.float32)).to(mel.device)
