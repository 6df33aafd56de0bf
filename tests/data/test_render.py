import numpy as np
import pytest

from dittomusic.data.arrange import BY_NAME, Arrangement, RenderPart
from dittomusic.data.render import FluidRenderer, find_soundfont
from dittomusic.errors import PieceError, SoundfontNotFound


def _arr(notes, seconds=2.0, gain_db=0.0):
    return Arrangement([RenderPart(BY_NAME["piano"], np.asarray(notes, dtype=float))], seconds, 120, 0, "C",
                       "major", 0.0, "flat", gain_db)


def test_missing_soundfont_has_clear_message(tmp_path, monkeypatch):
    with pytest.raises(SoundfontNotFound, match="apt-get install fluidsynth fluid-soundfont-gm"):
        find_soundfont(tmp_path / "missing.sf2")
    monkeypatch.setenv("DITTOMUSIC_SOUNDFONT", str(tmp_path / "nope.sf2"))
    with pytest.raises(SoundfontNotFound, match="nope.sf2"):
        FluidRenderer()


def test_invalid_soundfont_file(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF....not a soundfont" * 20)
    with pytest.raises(SoundfontNotFound, match="not a valid SF2"):
        FluidRenderer(bad)


def test_render_length_loudness_and_determinism():
    r = FluidRenderer()
    arr = _arr([[0.0, 0.5, 60, 90], [0.5, 0.5, 64, 90], [1.0, 0.8, 67, 90]])
    a, b = r.render(arr), r.render(arr)
    assert a.shape == (2 * 22050,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # synth state is reset between renders
    assert abs(20 * np.log10(np.sqrt(np.mean(a**2))) + 20) < 0.5
    louder = r.render(_arr(arr.parts[0].notes, gain_db=6.0))
    assert abs(20 * np.log10(np.sqrt(np.mean(louder**2))) + 14) < 0.5


def test_silent_render_is_a_piece_error():
    with pytest.raises(PieceError, match="silent"):
        FluidRenderer().render(_arr(np.zeros((0, 4))))


def test_importing_fluidsynth_keeps_stdout_clean():
    """pyfluidsynth prints its library path to stdout when $CI is set; JSON-printing benchmarks need a clean stdout."""
    import os
    import subprocess
    import sys

    code = "from dittomusic.data.render import _load_fluidsynth; _load_fluidsynth()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "CI": "true"},
                       timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout == ""
