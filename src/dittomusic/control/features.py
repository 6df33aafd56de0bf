"""Control features: differentiable ones computed from the scaled log-mel, and "metric" twins
computed from a waveform with librosa/numpy.

The vocoder is not differentiable, so DITTO's features f(V(x0)) are re-derived here straight
from the generated mel x0 [B, n_mels, F] (values in [-1, 1], see dittomusic.audio.mel). Each
mel feature has a waveform twin used to score the final vocoded audio, and the two agree on
real music (numbers below and in tests/control).

Intensity: frame energy in dB, Savitzky-Golay smoothed over ~1 s (Music ControlNet's smoother).
  The mel power is turned back into linear-spectrum frame energy by weighting each Slaney band
  with its bandwidth (f_hi - f_lo) / 2 in Hz: that undoes librosa's Slaney normalisation, and the
  un-normalised triangles sum to exactly 1 at every FFT bin between the first and last band
  centre, so sum_k w_k mel_k = sum_f |X_f|^2. Parseval for the Hann-windowed frame then gives the
  mean square 2 E / (n_fft * sum(w^2)), the same quantity librosa.feature.rms measures on the raw
  (unwindowed) frame. Measured on rendered Bach chorales (12 s, two orchestrations): the smoothed
  mel curve is within 0.12 dB RMS of the smoothed librosa RMS curve (0.44-0.74 dB before
  smoothing), and within 0.15 dB of the curve of the Griffin-Lim-vocoded mel.
  SG polyorder 3: a cubic follows 1-s crescendo shapes (tanh/cosine presets) without lag and
  still removes note-level flicker; scipy's savgol_filter(mode="interp") is reproduced exactly.

Melody: 12-bin chroma in the power domain. Each mel band's triangle (lo, centre, hi) is split
  over the pitch classes it covers (integrated triangle mass per class), because below ~600 Hz a
  band is wider than a semitone (21 Hz spacing vs 15.6 Hz semitone at middle C). Only bands
  whose centre is above middle C (261.6 Hz) count: the paper's high-pass at middle C.
  Measured agreement of the frame-wise argmax with the waveform metric (2nd-order Butterworth
  high-pass + librosa chroma_stft) on two renders: 97.5% / 93.7%; assigning each band wholly to
  its centre's pitch class gave 85.9% / 84.3%, a Gaussian over pitch distance 96.4% / 89.2%,
  librosa's octave weighting did not help (97.4% / 92.5%).
  The feature is log(C_c / sum_c' C_c') = log_softmax(log C) with temperature 1, i.e. the log of
  each class's share of the high-passed energy. The NLL gradient w.r.t. the target's log-energy
  is -(1 - p_target): it never vanishes on a wrong frame (unlike a sharpened softmax) and p is
  exactly the energy share whose argmax the metric reads. On the renders, NLL against their own
  waveform melody is 0.9-1.0 nats, against random pitch classes 3.3-3.8 (uniform = ln 12 = 2.48).
  librosa chroma_stft runs with tuning=0 (A440, like the mel weighting) so the metric does not
  depend on a tuning estimate from a few seconds of audio (estimated tuning changed 0.2-4% of
  frames on the renders).

Structure: MFCC (dB log-mel -> orthonormal DCT-II, c1..c12), z-scored per coefficient over
  time, cosine self-similarity in [-1, 1], separable 2-D Savitzky-Golay smoothing (default 87
  frames ~ 1 s, polyorder 3). The window was chosen on synthetic ABBA/ABAB/ABA/AABA/ABCA
  concatenations of real renders: 87 frames gave the largest margin between the MSE to the right
  pattern target and to the nearest wrong one (2.03x vs 1.75x unsmoothed, 1.94x at 43 frames).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as Fnn
from torch import Tensor

from dittomusic.audio.mel import MelConfig, MelSpectrogram, mel_frequencies, unit_to_db
from dittomusic.errors import DittoError

MIDDLE_C_HZ = 261.6  # chroma bands: only centres above middle C count
HIGHPASS_HZ = 261.2  # Music ControlNet's biquad high-pass cutoff for the waveform chroma
INTENSITY_AMIN = 1e-10  # mean-square floor (-100 dB); added, not clamped, so gradients never die
INTENSITY_POLYORDER = 3
STRUCTURE_POLYORDER = 3
N_MFCC = 12  # c1..c12 (c0, the loudness, is dropped)
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def sg_window(cfg: MelConfig, seconds: float = 1.0) -> int:
    """Odd number of frames closest to `seconds` (1 s at 86.13 frames/s -> 87)."""
    return int(round(seconds * cfg.frame_rate)) | 1


def _as_batch(mel: Tensor) -> tuple[Tensor, bool]:
    if mel.dim() == 2:
        return mel.unsqueeze(0), True
    if mel.dim() != 3:
        raise DittoError(f"expected a mel tensor [B, n_mels, frames] or [n_mels, frames], got shape {tuple(mel.shape)}")
    return mel, False


def _work_dtype(mel: Tensor) -> torch.dtype:
    # power-domain sums overflow in half precision: compute in at least float32
    return torch.promote_types(mel.dtype, torch.float32)


def _const(a: np.ndarray, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    return torch.as_tensor(a, device=like.device, dtype=dtype or like.dtype)


# ------------------------------------------------------------------ Savitzky-Golay smoothing

@lru_cache(maxsize=64)
def _sg_kernels(window: int, polyorder: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import savgol_coeffs

    half = (window - 1) // 2
    centre = savgol_coeffs(window, polyorder, use="dot")
    left = np.stack([savgol_coeffs(window, polyorder, pos=i, use="dot") for i in range(half)])
    right = np.stack([savgol_coeffs(window, polyorder, pos=window - half + j, use="dot") for j in range(half)])
    return centre, left, right


def effective_window(n: int, window: int, polyorder: int) -> int:
    """The window actually used on a length-n axis: shrunk to the largest odd length <= n.
    Returns 0 (no smoothing) when that is too short to fit the polynomial: a polynomial of
    degree polyorder through <= polyorder + 1 points is the identity."""
    w = min(int(window), n if n % 2 else n - 1)
    return w if w > polyorder and w >= 3 else 0


def savgol_smooth(x: Tensor, window: int, polyorder: int, dim: int = -1) -> Tensor:
    """Differentiable Savitzky-Golay filter along `dim`, equal to
    scipy.signal.savgol_filter(x, window, polyorder, axis=dim, mode="interp").

    The interior is a fixed conv1d kernel from scipy.signal.savgol_coeffs; the first and last
    (window-1)/2 samples use the polynomial fitted to the first/last `window` samples (scipy's
    "interp" edges), so a rising curve is not pulled towards a padded value at the ends.
    """
    n = x.shape[dim]
    w = effective_window(n, window, polyorder)
    if w == 0:
        return x
    centre, left, right = _sg_kernels(w, polyorder)
    xt = x.movedim(dim, -1)
    shape = xt.shape
    flat = xt.reshape(-1, 1, n)
    mid = Fnn.conv1d(flat, _const(centre, flat).view(1, 1, w)).squeeze(1)
    lo = flat[:, 0, :w] @ _const(left, flat).T
    hi = flat[:, 0, n - w:] @ _const(right, flat).T
    out = torch.cat([lo, mid, hi], dim=-1)
    return out.reshape(shape).movedim(-1, dim)


@lru_cache(maxsize=16)
def savgol_matrix(n: int, window: int, polyorder: int) -> np.ndarray:
    """The [n, n] matrix A^T of `savgol_smooth` along an n-long axis: savgol_smooth(x) = x @ A^T."""
    eye = torch.eye(n, dtype=torch.float64)
    return savgol_smooth(eye, window, polyorder, dim=-1).numpy()


# ------------------------------------------------------------------ intensity

@lru_cache(maxsize=8)
def _intensity_consts(cfg: MelConfig) -> tuple[np.ndarray, float]:
    from scipy.signal import get_window

    fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
    edges = mel_frequencies(cfg.n_mels + 2, cfg.fmin, fmax)
    bandwidth = (edges[2:] - edges[:-2]) / 2.0  # inverse of librosa's Slaney norm 2/(f_hi - f_lo)
    win_sq = float(np.sum(get_window("hann", cfg.n_fft, fftbins=True) ** 2))  # 3/8 n_fft
    # one-sided spectrum energy E -> mean square of the unwindowed frame (Parseval)
    scale = 2.0 / (cfg.n_fft * win_sq)
    return bandwidth, scale


@lru_cache(maxsize=8)
def intensity_db_range(cfg: MelConfig) -> tuple[float, float]:
    """The dB values the intensity feature can take on the model's mel: from the mean-square floor
    (INTENSITY_AMIN, -100 dB) to a mel at the top of its fixed window in every band (+21.4 dB at
    the default config). A target outside cannot be reached by any generated clip."""
    top = frame_energy_db(torch.ones(1, cfg.n_mels, 1, dtype=torch.float64), cfg)
    return 10.0 * math.log10(INTENSITY_AMIN), float(top.max())


def frame_energy_db(mel: Tensor, cfg: MelConfig) -> Tensor:
    """Unsmoothed frame energy 10*log10(mean square) in dB from the scaled mel: [B, n_mels, F] -> [B, F].
    Matches 20*log10(librosa.feature.rms(frame_length=n_fft, hop_length=hop, center=True,
    pad_mode="constant")) of the same audio."""
    mel, squeeze = _as_batch(mel)
    x = mel.to(_work_dtype(mel))
    bandwidth, scale = _intensity_consts(cfg)
    power = torch.pow(10.0, unit_to_db(x, cfg) / 10.0)
    energy = torch.einsum("k,bkf->bf", _const(bandwidth, x), power)
    db = 10.0 * torch.log10(energy * scale + INTENSITY_AMIN)
    return db[0] if squeeze else db


def intensity_curve(mel: Tensor, cfg: MelConfig, window: int | None = None,
                    polyorder: int = INTENSITY_POLYORDER) -> Tensor:
    """Smoothed intensity curve in dB, [B, n_mels, F] -> [B, F] (or [n_mels, F] -> [F])."""
    window = sg_window(cfg) if window is None else window
    return savgol_smooth(frame_energy_db(mel, cfg), window, polyorder, dim=-1)


def audio_array(audio, sr: int | None, cfg: MelConfig) -> np.ndarray:
    a = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float64)
    if a.ndim != 1:
        raise DittoError(f"expected mono audio [samples], got shape {a.shape}")
    if a.size == 0:
        raise DittoError("audio contains no samples")
    if sr is not None and sr != cfg.sample_rate:
        import librosa

        a = librosa.resample(a, orig_sr=sr, target_sr=cfg.sample_rate, res_type="soxr_hq")
    return a


def intensity_curve_from_audio(audio, sr: int | None, cfg: MelConfig, window: int | None = None,
                               polyorder: int = INTENSITY_POLYORDER) -> np.ndarray:
    """Waveform twin of `intensity_curve`: librosa RMS -> dB -> the same smoothing. [frames] float64."""
    import librosa
    from scipy.signal import savgol_filter

    a = audio_array(audio, sr, cfg)
    rms = librosa.feature.rms(y=a, frame_length=cfg.n_fft, hop_length=cfg.hop_length, center=True,
                              pad_mode="constant")[0]
    db = 10.0 * np.log10(rms ** 2 + INTENSITY_AMIN)
    window = sg_window(cfg) if window is None else window
    w = effective_window(len(db), window, polyorder)
    return savgol_filter(db, w, polyorder, mode="interp") if w else db


# ------------------------------------------------------------------ melody (chroma)

def pitch_class_of(freq_hz) -> np.ndarray:
    """Nearest equal-tempered pitch class (A440), 0 = C ... 11 = B."""
    f = np.asarray(freq_hz, dtype=np.float64)
    return np.round(12.0 * np.log2(f / 440.0) + 9.0).astype(np.int64) % 12


@lru_cache(maxsize=8)
def chroma_weights(cfg: MelConfig) -> np.ndarray:
    """[12, n_mels] pitch-class share of each mel band's triangle; zero for bands centred at or
    below middle C. Columns of counted bands sum to 1 (energy is split, not duplicated)."""
    fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
    edges = mel_frequencies(cfg.n_mels + 2, cfg.fmin, fmax)
    weights = np.zeros((12, cfg.n_mels))
    for k in range(cfg.n_mels):
        lo, c, hi = edges[k], edges[k + 1], edges[k + 2]
        if c <= MIDDLE_C_HZ:
            continue
        f = np.linspace(lo, hi, 403)[1:-1]
        tri = np.where(f < c, (f - lo) / (c - lo), (hi - f) / (hi - c))
        np.add.at(weights[:, k], pitch_class_of(f), tri)
        weights[:, k] /= weights[:, k].sum()
    return weights


def chroma_energy(mel: Tensor, cfg: MelConfig) -> Tensor:
    """High-passed pitch-class energy [B, 12, F] (power domain)."""
    mel, squeeze = _as_batch(mel)
    x = mel.to(_work_dtype(mel))
    power = torch.pow(10.0, unit_to_db(x, cfg) / 10.0)
    c = torch.matmul(_const(chroma_weights(cfg), x), power)
    return c[0] if squeeze else c


def log_chroma(mel: Tensor, cfg: MelConfig) -> Tensor:
    """log of each pitch class's share of the high-passed energy, [B, 12, F] (log-probabilities).
    The floor 1e-12 is the mel's own -120 dB floor: a silent frame gives a uniform distribution."""
    c = chroma_energy(mel, cfg)
    return torch.log_softmax(torch.log(c + 1e-12), dim=-2)


def chroma_from_audio(audio, sr: int | None, cfg: MelConfig) -> np.ndarray:
    """Waveform chroma [12, frames]: 2nd-order Butterworth high-pass at 261.2 Hz (a biquad, as in
    Music ControlNet), then librosa.feature.chroma_stft (n_fft, hop of cfg, tuning 0)."""
    import librosa
    from scipy.signal import butter, sosfilt

    a = audio_array(audio, sr, cfg)
    sos = butter(2, HIGHPASS_HZ, btype="highpass", fs=cfg.sample_rate, output="sos")
    y = sosfilt(sos, a)
    return librosa.feature.chroma_stft(y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                       tuning=0.0)


def pitch_classes_from_audio(audio, sr: int | None, cfg: MelConfig, silence_db: float | None = None) -> np.ndarray:
    """Frame-wise argmax pitch class [frames] int64 of `chroma_from_audio`. With silence_db, frames
    whose high-passed RMS is more than silence_db below the loudest frame (or below -80 dBFS)
    get -1: the argmax of silence is noise."""
    pcs = np.argmax(chroma_from_audio(audio, sr, cfg), axis=0).astype(np.int64)
    if silence_db is not None:
        import librosa
        from scipy.signal import butter, sosfilt

        a = audio_array(audio, sr, cfg)
        y = sosfilt(butter(2, HIGHPASS_HZ, btype="highpass", fs=cfg.sample_rate, output="sos"), a)
        rms = librosa.feature.rms(y=y, frame_length=cfg.n_fft, hop_length=cfg.hop_length, center=True,
                                  pad_mode="constant")[0]
        db = 20 * np.log10(rms + 1e-10)
        n = min(len(db), len(pcs))
        quiet = (db[:n] < db.max() - silence_db) | (db[:n] < -80.0)
        pcs[:n][quiet] = -1
    return pcs


# ------------------------------------------------------------------ structure (MFCC SSM)

@lru_cache(maxsize=8)
def _dct_matrix(n_mels: int, n_coeffs: int) -> np.ndarray:
    from scipy.fft import dct

    # rows c1..c_n of the orthonormal DCT-II (librosa.feature.mfcc's transform); c0 dropped
    return dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[1:n_coeffs + 1]


def mfcc(mel: Tensor, cfg: MelConfig, n_coeffs: int = N_MFCC) -> Tensor:
    """MFCCs c1..c_n from the scaled mel (dB log-mel, orthonormal DCT-II): [B, n_coeffs, F]."""
    mel, squeeze = _as_batch(mel)
    x = mel.to(_work_dtype(mel))
    c = torch.matmul(_const(_dct_matrix(cfg.n_mels, n_coeffs), x), unit_to_db(x, cfg))
    return c[0] if squeeze else c


def self_similarity(mel: Tensor, cfg: MelConfig, window: int | None = None,
                    polyorder: int = STRUCTURE_POLYORDER, n_coeffs: int = N_MFCC) -> Tensor:
    """Timbre self-similarity [B, F, F]: MFCCs z-scored per coefficient over time, cosine
    similarity of frame vectors, then separable 2-D Savitzky-Golay smoothing (window <= 1:
    none, the "structure transfer" variant)."""
    mel, squeeze = _as_batch(mel)
    c = mfcc(mel, cfg, n_coeffs)
    z = (c - c.mean(dim=-1, keepdim=True)) / torch.sqrt(c.var(dim=-1, unbiased=False, keepdim=True) + 1e-6)
    u = z / torch.sqrt(z.square().sum(dim=-2, keepdim=True) + 1e-8)
    window = sg_window(cfg) if window is None else window
    if window > 1:
        # smoothing both axes of S = u^T u is A S A^T = (u A^T)^T (u A^T): filter the n_coeffs
        # rows of u instead of the F x F matrix (same result, ~20x cheaper forward and backward)
        u = u @ _const(savgol_matrix(u.shape[-1], window, polyorder), u)
    s = u.transpose(-1, -2) @ u
    return s[0] if squeeze else s


def self_similarity_from_audio(audio, sr: int | None, cfg: MelConfig, window: int | None = None,
                               polyorder: int = STRUCTURE_POLYORDER, n_coeffs: int = N_MFCC) -> np.ndarray:
    """Waveform twin: MelSpectrogram of the audio, then `self_similarity`. [frames, frames] float64."""
    a = torch.from_numpy(audio_array(audio, sr, cfg))
    with torch.no_grad():  # metric path only (scores final audio), never inside a loss
        mel = MelSpectrogram(cfg).double()(a)
        return self_similarity(mel, cfg, window, polyorder, n_coeffs).numpy()


# ------------------------------------------------------------------ seams

SEAM_WINDOW_S = 0.05
SEAM_FLUX_FLOOR_DB = 0.1  # mean |dB| change per bin that counts as "no change" (a steady tone: 0.08)


def spectral_flux(audio, sr: int, n_fft: int = 2048, hop_length: int = 256, top_db: float = 80.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Frame-to-frame spectral flux: mean over bins of |change| of the dB magnitude spectrum
    (floored top_db below the clip's maximum). Not rectified, so a seam into a quieter sound
    counts as much as one into a louder sound. Returns (flux [frames-1], times_s [frames-1]),
    each value placed midway between the two frames it compares."""
    import librosa

    a = np.asarray(audio, dtype=np.float64)
    if a.ndim != 1 or a.size < n_fft:
        raise DittoError(f"spectral flux needs mono audio of at least {n_fft} samples, got shape {a.shape}")
    mag = np.abs(librosa.stft(a, n_fft=n_fft, hop_length=hop_length, center=True, pad_mode="reflect"))
    db = librosa.amplitude_to_db(mag, ref=np.max, top_db=top_db)
    flux = np.mean(np.abs(np.diff(db, axis=1)), axis=0)
    times = (np.arange(len(flux)) + 0.5) * hop_length / sr
    return flux, times


def spectral_flux_seam_ratio(audio, sr: int, boundaries_s, window_s: float = SEAM_WINDOW_S) -> float:
    """Seam metric: the largest spectral flux within +-window_s of any stitch boundary divided by
    the clip's median flux (both + 0.1 dB, so a perfectly steady sound scores ~1 rather than a
    ratio of round-off). <= 1.5 reads as seamless.

    Measured (n_fft 2048, hop 256): steady tones 1.15; hard cuts between two different renders
    >= 3.0 (median 5); a jump cut inside one piece >= 2.1. Caveat: at arbitrary points of
    seamless real music only ~60% of positions score <= 1.5 (a note onset within 50 ms is
    enough to exceed it), so judge real music over several clips, not one boundary.
    """
    bounds = np.atleast_1d(np.asarray(boundaries_s, dtype=np.float64))
    if bounds.size == 0:
        raise DittoError("spectral_flux_seam_ratio needs at least one boundary time (seconds)")
    # the 2048/256 STFT it was calibrated with at 22.05 kHz, kept in seconds at other rates
    flux, times = spectral_flux(audio, sr, round(2048 * sr / 22050), round(256 * sr / 22050))
    dur = len(np.asarray(audio)) / sr
    peak = 0.0
    for b in bounds:
        if not 0.0 <= b <= dur:
            raise DittoError(f"seam boundary {b:.3f}s is outside the clip (0..{dur:.3f}s)")
        near = np.abs(times - b) <= window_s
        if not near.any():
            near = np.abs(times - b) == np.abs(times - b).min()
        peak = max(peak, float(flux[near].max()))
    return (peak + SEAM_FLUX_FLOOR_DB) / (float(np.median(flux)) + SEAM_FLUX_FLOOR_DB)
