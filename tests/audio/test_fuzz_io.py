"""Fuzzing the audio loader with arbitrary bytes and with WAV files whose header fields and samples
are drawn at random: only finite mono float32 audio, or a DittoError."""

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dittomusic.audio.io import load_audio

from ..fuzzing import accepts_or_refuses, no_hang


@st.composite
def wav_files(draw):
    fmt = draw(st.sampled_from([1, 3, 0xFFFE, 2, 0]))  # PCM, IEEE float, extensible, ADPCM, bogus
    channels = draw(st.sampled_from([1, 2, 0, 3, 255]))
    rate = draw(st.sampled_from([22050, 44100, 8000, 1, 0, 999, 768000, 2**32 - 1]))
    bits = draw(st.sampled_from([8, 16, 24, 32, 64, 0, 12]))
    if fmt == 3 and bits in (32, 64) and draw(st.booleans()):
        # real float samples, NaN / inf / huge among them
        dtype = "<f4" if bits == 32 else "<f8"
        samples = draw(st.lists(st.floats(width=bits, allow_nan=True, allow_infinity=True) |
                                st.sampled_from([0.0, 0.5, -1.0, 3e38]), max_size=64))
        data = np.array(samples, dtype=dtype).tobytes()
    else:
        data = draw(st.binary(max_size=256))
    block = max(1, channels * bits // 8)
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block % 2**32, block % 2**16, bits)
    length = draw(st.sampled_from([len(data), len(data) + 100, 2**32 - 1]))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", length) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module", autouse=True)
def resampler_imported(tmp_path_factory):
    """Import librosa's resampler once (seconds on a busy machine): the deadline is for the parser."""
    import soundfile as sf

    p = tmp_path_factory.mktemp("warm") / "a.wav"
    sf.write(p, np.zeros(441, dtype=np.float32), 44100)
    load_audio(p)


@given(content=wav_files() | st.binary(max_size=300), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".aif"]))
@example(struct.pack("<4sI4s", b"RIFF", 0, b"WAVE"), ".wav")
def test_fuzz_audio_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"fuzz{suffix}"
        p.write_bytes(content)
        with no_hang():
            a = accepts_or_refuses(load_audio, p)
    if a is not None:
        assert a.dtype == np.float32 and a.ndim == 1 and a.size > 0 and np.isfinite(a).all()
