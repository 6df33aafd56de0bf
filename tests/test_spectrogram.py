"""The Pillow spectrogram PNG: colours, axes, layout and atomic writes."""

import numpy as np
import pytest
from PIL import Image

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError
from dittomusic.spectrogram import MAX_W, MIN_W, PLOT_H, colorize, magma_lut, plot_mels


def test_shipped_colormap_is_matplotlibs_magma():
    import matplotlib

    ref = np.round(matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(magma_lut(), ref)


def test_colorize_maps_the_scaled_range_and_puts_low_bins_at_the_bottom():
    mel = np.full((4, 3), -1.0)
    mel[0] = 1.0  # the lowest band loud
    mel[1, 0] = np.nan
    rgb = colorize(mel)
    assert rgb.shape == (4, 3, 3) and rgb.dtype == np.uint8
    lut = magma_lut()
    assert (rgb[-1] == lut[255]).all() and (rgb[0] == lut[0]).all()  # image row 0 is the top band
    assert (rgb[-2, 0] == lut[0]).all()  # NaN is drawn as the bottom of the range


def test_png_panels_show_the_mel_where_it_is(tmp_path):
    cfg = MelConfig()
    mel = np.full((cfg.n_mels, 516), -0.8, dtype=np.float32)
    mel[120:130] = 0.9  # a loud band high up
    out = plot_mels([mel, mel[:, :100]], ["first clip", "second " * 80], tmp_path / "sub" / "m.png", cfg)
    assert out == tmp_path / "sub" / "m.png"
    assert [p.name for p in out.parent.iterdir()] == ["m.png"]  # no temp file left behind
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[1] > 516 and img.shape[0] > 2 * PLOT_H
    bright = img.sum(axis=2) > 600  # magma's top end is pale yellow; the quiet level is dark
    from dittomusic.spectrogram import FONT_SIZE, LEFT, TOP

    top = TOP + 2 * (FONT_SIZE + 3) + 2  # the first panel's image starts below two title lines
    rows = np.flatnonzero(bright[top:top + PLOT_H, LEFT + 250]) / PLOT_H
    # bands 120-129 of 160 are drawn from 1 - 130/160 to 1 - 120/160 of the height, from the top
    assert len(rows) and rows.min() >= 1 - 130 / 160 - 0.01 and rows.max() <= 1 - 120 / 160 + 0.01


@pytest.mark.parametrize("frames, width", [(10, MIN_W), (516, 516), (5000, MAX_W)])
def test_width_follows_frames_within_bounds(tmp_path, frames, width):
    from dittomusic.spectrogram import LEFT, RIGHT

    out = plot_mels([np.zeros((160, frames))], ["t"], tmp_path / "w.png")
    assert Image.open(out).size[0] == LEFT + width + RIGHT


def test_bad_shapes_are_a_clear_error(tmp_path):
    with pytest.raises(DittoError, match="n_mels, frames"):
        plot_mels([np.zeros(10)], ["t"], tmp_path / "x.png")
    with pytest.raises(DittoError, match="n_mels, frames"):
        plot_mels([], [], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
