"""Log-mel spectrogram front-end: differentiable in torch, matched to librosa.

The representation follows the papers' base model: 22.05 kHz, window 2048, hop 256,
160 mel bins, dB clipped to a fixed 160 dB range and scaled to [-1, 1].

Why 160 mel bins: it is what DITTO's base model uses, and below 1 kHz the bins are
~21 Hz apart, about a semitone at middle C. The melody control reads a chromagram off
the generated mel, so it needs that resolution; the model patches over frames, so
the extra bins cost little.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 256
    n_mels: int = 160
    fmin: float = 0.0
    fmax: float | None = None  # None: Nyquist
    # Fixed dB window (mel power, 10*log10). A full-scale sine peaks near +45 dB in a
    # Slaney-normalized band, rendered music at -20 dBFS RMS sits around 0..+30 dB.
    db_max: float = 40.0
    db_range: float = 160.0
    clip_frames: int = 512  # ~5.94 s, the model's clip length

    @property
    def db_min(self) -> float:
        return self.db_max - self.db_range

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def clip_seconds(self) -> float:
        return self.clip_frames * self.hop_length / self.sample_rate

    def frames_for(self, seconds: float) -> int:
        return int(round(seconds * self.frame_rate))

    def to_dict(self) -> dict:
        return asdict(self)

    def mel_basis(self) -> np.ndarray:
        """[n_mels, n_fft // 2 + 1] float32, equal to librosa.filters.mel (Slaney) for this config."""
        return _mel_basis(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax).copy()


# The filterbank is computed here in numpy, as librosa.filters.mel does it step for step (the
# tests compare them): importing librosa.filters pulls in scipy.signal and numba, about 2 s of a
# 6-second `dittomusic generate`.
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def hz_to_mel(hz) -> np.ndarray:
    """Slaney mel scale (librosa.hz_to_mel, htk=False): linear below 1 kHz, logarithmic above."""
    f = np.atleast_1d(np.asarray(hz, dtype=np.float64))
    mels = f / _F_SP
    log = f >= _MIN_LOG_HZ
    mels[log] = _MIN_LOG_MEL + np.log(f[log] / _MIN_LOG_HZ) / _LOGSTEP
    return mels


def mel_to_hz(mels) -> np.ndarray:
    m = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    hz = _F_SP * m
    log = m >= _MIN_LOG_MEL
    hz[log] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m[log] - _MIN_LOG_MEL))
    return hz


def mel_frequencies(n: int, fmin: float, fmax: float) -> np.ndarray:
    """n band edges/centres uniformly spaced in mels (librosa.mel_frequencies, htk=False)."""
    lo, hi = hz_to_mel(fmin)[0], hz_to_mel(fmax)[0]
    return mel_to_hz(np.linspace(lo, hi, n))


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    fmax = float(sr) / 2 if fmax is None else fmax
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_frequencies(n_mels + 2, fmin, fmax)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]  # Slaney: equal energy per band
    weights.setflags(write=False)  # shared by every caller: they get copies
    return weights


def db_to_unit(db: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Clip dB to the fixed window and map it linearly to [-1, 1]."""
    db = db.clamp(cfg.db_min, cfg.db_max)
    return 2.0 * (db - cfg.db_min) / cfg.db_range - 1.0


def unit_to_db(x: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    return (x.clamp(-1.0, 1.0) + 1.0) * 0.5 * cfg.db_range + cfg.db_min


class MelSpectrogram(nn.Module):
    """waveform [..., samples] -> scaled log-mel [..., n_mels, frames] in [-1, 1].

    Pure torch, so gradients flow back to the waveform (useful for losses on audio).
    """

    def __init__(self, cfg: MelConfig | None = None):
        super().__init__()
        self.cfg = cfg or MelConfig()
        self.register_buffer("window", torch.hann_window(self.cfg.n_fft), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(self.cfg.mel_basis()), persistent=False)

    def power(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear-frequency power spectrogram [..., n_fft//2+1, frames]."""
        shape = wav.shape[:-1]
        spec = torch.stft(
            wav.reshape(-1, wav.shape[-1]),
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            window=self.window.to(wav.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        p = spec.real.square() + spec.imag.square()
        return p.reshape(*shape, *p.shape[-2:])

    def mel_power(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.mel_basis.to(wav.dtype), self.power(wav))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        amin = 10.0 ** (self.cfg.db_min / 10.0)
        db = 10.0 * torch.log10(self.mel_power(wav).clamp_min(amin))
        return db_to_unit(db, self.cfg)


_CACHE: dict = {}


def mel_spectrogram(wav: np.ndarray | torch.Tensor, cfg: MelConfig | None = None) -> np.ndarray:
    """Convenience: numpy/torch waveform -> numpy scaled log-mel (no grad)."""
    cfg = cfg or MelConfig()
    mod = _CACHE.get(cfg)
    if mod is None:
        mod = _CACHE[cfg] = MelSpectrogram(cfg)
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    with torch.no_grad():
        return mod(x).numpy()
