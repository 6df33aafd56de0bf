import numpy as np
import pytest
import soundfile as sf

from dittomusic.audio import load_audio, save_wav
from dittomusic.errors import DittoError


def _tone(sr, seconds=1.0, freq=440.0, channels=2):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def _peak_freq(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()]


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_load_resamples_and_downmixes(tmp_path, fmt, ext):
    if fmt not in sf.available_formats():
        pytest.fail(f"libsndfile without {fmt}: the audio backend lost a format we document")
    p = tmp_path / f"tone.{ext}"
    sf.write(p, _tone(44100), 44100, format=fmt)
    y = load_audio(p, 22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 22050) < 2000  # mp3/ogg encoders add a little padding
    assert abs(_peak_freq(y, 22050) - 440) < 3
    # downmix is the channel mean: 0.75 of the left channel's amplitude
    assert 0.3 < np.abs(y[2000:-2000]).max() < 0.45


def test_load_mono_at_native_rate_is_unchanged(tmp_path):
    x = _tone(22050, channels=1)
    sf.write(tmp_path / "a.wav", x, 22050, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), x)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(DittoError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    with pytest.raises(DittoError, match="Accepted formats"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), dtype=np.float32), 22050)
    with pytest.raises(DittoError, match="no samples"):
        load_audio(empty)


def test_save_wav_round_trip_and_atomicity(tmp_path):
    x = _tone(22050, channels=1)
    out = save_wav(tmp_path / "sub" / "x.wav", x)
    y, sr = sf.read(out, dtype="float32")
    assert sr == 22050 and np.abs(y - x).max() < 1e-4
    with pytest.raises(DittoError, match="NaN"):
        save_wav(tmp_path / "nan.wav", np.full(100, np.nan))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.wav"]


def test_non_finite_samples_are_refused(tmp_path):
    x = _tone(22050, channels=1)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 22050, subtype="FLOAT")
    with pytest.raises(DittoError, match=r"1 NaN or infinite sample\(s\) of 22050.*finite"):
        load_audio(tmp_path / "nan.wav")
    x[100] = np.inf
    sf.write(tmp_path / "inf.wav", x, 22050, subtype="DOUBLE")
    with pytest.raises(DittoError, match="NaN or infinite"):
        load_audio(tmp_path / "inf.wav")
    big = np.full((100, 2), 3e38, dtype=np.float32)  # finite, but the downmix overflows float32
    sf.write(tmp_path / "big.wav", big, 22050, subtype="FLOAT")
    with pytest.raises(DittoError, match="too large to process"):
        load_audio(tmp_path / "big.wav")


def test_silent_audio_loads_with_a_warning(tmp_path, caplog):
    sf.write(tmp_path / "quiet.wav", np.zeros(2205, dtype=np.float32), 22050)
    with caplog.at_level("WARNING", logger="dittomusic.audio.io"):
        y = load_audio(tmp_path / "quiet.wav")
    assert len(y) == 2205 and "is silent (peak -inf dBFS" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="dittomusic.audio.io"):
        load_audio(save_wav(tmp_path / "tone.wav", _tone(22050, channels=1)))
    assert caplog.text == ""


def test_absurd_sample_rates_are_refused(tmp_path):
    sf.write(tmp_path / "slow.wav", np.zeros(50, dtype=np.float32), 10, subtype="FLOAT")
    with pytest.raises(DittoError, match="sample rate of 10 Hz; accepted: 1000-768000 Hz"):
        load_audio(tmp_path / "slow.wav")
