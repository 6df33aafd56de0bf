"""Spectrogram panels as a PNG, drawn with Pillow.

matplotlib + librosa.display took ~3 s of a 6-second `dittomusic generate` (imports, a
pcolormesh of 80k cells, a constrained layout); Pillow imports in ~20 ms and draws the same
panels (magma image, time axis in seconds, frequency axis in Hz, a dB colour bar, titles) in
a few tens of ms.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from dittomusic.audio.mel import MelConfig, hz_to_mel
from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path

PLOT_H = 200  # pixels per panel's image
MIN_W, MAX_W = 480, 1200  # image width: one pixel per frame, within these bounds
LEFT, RIGHT, TOP, BOTTOM, GAP = 58, 86, 8, 30, 8
FONT_SIZE = 11
FG, BG, GRID = (20, 20, 20), (255, 255, 255), (120, 120, 120)
HZ_TICKS = (0, 500, 1000, 2000, 4000, 8000, 16000)


@lru_cache(maxsize=1)
def magma_lut() -> np.ndarray:
    """matplotlib's "magma" as a [256, 3] uint8 table, shipped as 768 raw RGB bytes (a test checks it)."""
    raw = (resources.files("dittomusic") / "assets" / "magma.rgb").read_bytes()
    return np.frombuffer(raw, dtype=np.uint8).reshape(256, 3)


def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font, no font lookup


def colorize(mel: np.ndarray, vmin: float = -1.0, vmax: float = 1.0) -> np.ndarray:
    """[n_mels, frames] values -> [n_mels, frames, 3] uint8 RGB, low mel bins at the bottom."""
    x = np.nan_to_num(np.asarray(mel, dtype=np.float32), nan=vmin, posinf=vmax, neginf=vmin)
    idx = np.clip((x - vmin) / (vmax - vmin) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return magma_lut()[idx[::-1]]


def _time_step(seconds: float) -> float:
    """A tick spacing that gives at most ~12 labels."""
    for step in (0.5, 1, 2, 5, 10, 20, 30, 60):
        if seconds / step <= 12:
            return float(step)
    return 120.0


def _panel(draw, img, mel: np.ndarray, title: str, y0: int, width: int, cfg: MelConfig, font) -> None:
    from PIL import Image

    n_mels, frames = mel.shape
    rgb = Image.fromarray(colorize(mel)).resize((width, PLOT_H), Image.NEAREST)
    lines = textwrap.wrap(title, max(20, (width + LEFT) // 6)) or [""]
    if len(lines) > 2:
        lines = [lines[0], lines[1][:-1] + "…"]
    for i, line in enumerate(lines):
        draw.text((LEFT, y0 + i * (FONT_SIZE + 3)), line, fill=FG, font=font)
    top = y0 + 2 * (FONT_SIZE + 3) + 2
    img.paste(rgb, (LEFT, top))
    draw.rectangle((LEFT - 1, top - 1, LEFT + width, top + PLOT_H), outline=FG)
    # time axis: frame f is at f * hop / sr
    seconds = frames * cfg.hop_length / cfg.sample_rate
    step = _time_step(seconds)
    for k in range(int(seconds / step) + 1):
        x = LEFT + int(round(k * step / seconds * width))
        draw.line((x, top + PLOT_H, x, top + PLOT_H + 4), fill=FG)
        draw.text((x, top + PLOT_H + 6), f"{k * step:g}", fill=FG, font=font, anchor="mt")
    draw.text((LEFT + width, top + PLOT_H + 18), "s", fill=FG, font=font, anchor="rt")
    # frequency axis: the mel bin whose centre is nearest each tick frequency
    fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
    lo, hi = hz_to_mel(cfg.fmin)[0], hz_to_mel(fmax)[0]
    for hz in HZ_TICKS:
        if not cfg.fmin <= hz <= fmax:
            continue
        frac = (hz_to_mel(hz)[0] - lo) / (hi - lo)
        y = top + PLOT_H - int(round(frac * (PLOT_H - 1)))
        draw.line((LEFT - 5, y, LEFT - 1, y), fill=FG)
        draw.text((LEFT - 7, y), f"{hz / 1000:g}k" if hz >= 1000 else f"{hz}", fill=FG, font=font, anchor="rm")
    draw.text((4, top), "Hz", fill=FG, font=font)


def _colorbar(draw, img, x0: int, top: int, cfg: MelConfig, font) -> None:
    from PIL import Image

    h = PLOT_H
    ramp = magma_lut()[np.linspace(255, 0, h).round().astype(int)]
    img.paste(Image.fromarray(np.repeat(ramp[:, None, :], 12, axis=1)), (x0, top))
    draw.rectangle((x0 - 1, top - 1, x0 + 12, top + h), outline=FG)
    for db in (cfg.db_max, cfg.db_max - cfg.db_range / 2, cfg.db_min):
        y = top + int(round((cfg.db_max - db) / cfg.db_range * (h - 1)))
        draw.line((x0 + 12, y, x0 + 16, y), fill=FG)
        draw.text((x0 + 18, y), f"{db:g} dB", fill=FG, font=font, anchor="lm")


def plot_mels(mels: list[np.ndarray], titles: list[str], out_png: str | Path, cfg: MelConfig | None = None) -> Path:
    """Stacked spectrogram panels (scaled log-mel in [-1, 1], one per clip) with time and
    frequency axes and a dB colour bar, written atomically."""
    from PIL import Image, ImageDraw

    cfg = cfg or MelConfig()
    mels = [np.asarray(m) for m in mels]
    if not mels or any(m.ndim != 2 or m.shape[1] < 1 for m in mels):
        raise DittoError(f"plot_mels needs [n_mels, frames] arrays, got {[m.shape for m in mels]}")
    width = int(np.clip(max(m.shape[1] for m in mels), MIN_W, MAX_W))
    panel_h = 2 * (FONT_SIZE + 3) + 2 + PLOT_H + BOTTOM + GAP
    img = Image.new("RGB", (LEFT + width + RIGHT, TOP + panel_h * len(mels)), BG)
    draw, font = ImageDraw.Draw(img), _font()
    for i, (mel, title) in enumerate(zip(mels, titles)):
        y0 = TOP + i * panel_h
        _panel(draw, img, mel, title, y0, width, cfg, font)
        _colorbar(draw, img, LEFT + width + 12, y0 + 2 * (FONT_SIZE + 3) + 2, cfg, font)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        img.save(tmp, format="PNG")
    return out_png
