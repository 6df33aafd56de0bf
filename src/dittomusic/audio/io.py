"""Audio file I/O: load anything libsndfile reads, resampled and downmixed; save wav atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path

SUPPORTED = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
MIN_RATE, MAX_RATE = 1000, 768000
SILENCE_DBFS = -90.0  # about one step of 16-bit PCM
SILENCE_PEAK = 10 ** (SILENCE_DBFS / 20)
log = logging.getLogger(__name__)


def load_audio(path: str | os.PathLike, sample_rate: int = 22050) -> np.ndarray:
    """Read an audio file as float32 mono at `sample_rate` (downmix by mean, soxr resampling).
    Refuses non-finite samples; warns (logging) about a silent file."""
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
    if not MIN_RATE <= sr <= MAX_RATE:  # resampling from 1 Hz would make 22,050 samples of each one
        raise DittoError(f"audio file {path} has a sample rate of {sr} Hz; accepted: {MIN_RATE}-{MAX_RATE} Hz")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DittoError(f"audio file {path} has {bad} NaN or infinite sample(s) of {data.size}; "
                         "give audio whose samples are all finite numbers (e.g. 16-bit PCM wav)")
    peak = float(np.abs(data).max())
    if peak < SILENCE_PEAK:
        log.warning("audio file %s is silent (peak %s dBFS, below %g dBFS): a target or reference taken from "
                    "it asks for silence", path, f"{20 * np.log10(peak):.0f}" if peak > 0 else "-inf", SILENCE_DBFS)
    too_large = DittoError(f"audio file {path} has samples too large to process (peak {peak:.3g}); "
                           "give audio in the usual [-1, 1] range")
    with np.errstate(over="ignore"):  # float files can hold values near float32's limit
        mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise too_large
    if sr != sample_rate:
        import librosa

        with np.errstate(over="ignore"):
            mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
        if not np.all(np.isfinite(mono)):  # the resampler's ringing can overflow too
            raise too_large
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
