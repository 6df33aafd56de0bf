"""Audio file I/O: load anything libsndfile reads, resampled and downmixed; save wav atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path

SUPPORTED = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def load_audio(path: str | os.PathLike, sample_rate: int = 22050) -> np.ndarray:
    """Read an audio file as float32 mono at `sample_rate` (downmix by mean, soxr resampling)."""
    import librosa
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DittoError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's message names the problem but not what we accept
        raise DittoError(
            f"cannot read audio file {path}: {e}. Accepted formats: {', '.join(SUPPORTED)} "
            f"(anything libsndfile {sf.__libsndfile_version__} reads)"
        ) from None
    if data.shape[0] == 0:
        raise DittoError(f"audio file {path} contains no samples")
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def save_wav(path: str | os.PathLike, audio, sample_rate: int = 22050) -> Path:
    """Write 16-bit PCM wav via a temp file + rename, so a crash never leaves half a file."""
    import soundfile as sf

    a = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    if a.ndim == 2 and a.shape[0] < a.shape[1]:
        a = a.T  # [channels, samples] -> [samples, channels]
    if not np.all(np.isfinite(a)):
        raise DittoError(f"refusing to write {path}: audio contains NaN or inf")
    a = np.clip(a, -1.0, 1.0)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), a, sample_rate, format="WAV", subtype="PCM_16")
    return path
