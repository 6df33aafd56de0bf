"""What a person gives the app, checked before anything runs: uploaded files (capped in size and
length), a loudness curve drawn on a canvas, and the melody target rendered to listen to.

Every check raises DittoError with a message the page shows as it is."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text

if TYPE_CHECKING:  # dittomusic.audio imports torch, which the page is served without
    from dittomusic.audio.mel import MelConfig

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_AUDIO_S = 60.0
CANVAS = (800, 240)  # the loudness canvas, pixels (width, height)
CURVE_POINTS = 100  # a drawn curve is kept as at most this many (time, dB) points


def check_file(path, what: str) -> Path:
    """An uploaded file that exists, is not empty and is within the size cap."""
    if not path:
        raise DittoError(f"no {what} given: upload one first")
    p = Path(path)
    if not p.is_file():
        raise DittoError(f"the {what} upload is missing on the server ({p.name}); upload it again")
    size = p.stat().st_size
    if size == 0:
        raise DittoError(f"the {what} {p.name} is empty")
    if size > MAX_UPLOAD_BYTES:
        raise DittoError(f"the {what} {p.name} is {size / 2**20:.1f} MB; uploads are capped at {MAX_UPLOAD_MB} MB")
    return p


def check_audio(path, what: str = "recording", cfg: MelConfig | None = None) -> Path:
    """An audio file libsndfile reads, with samples, at most MAX_AUDIO_S long."""
    import soundfile as sf

    from dittomusic.audio.io import SUPPORTED, load_audio
    from dittomusic.audio.mel import MelConfig

    p = check_file(path, what)
    try:
        info = sf.info(str(p))
    except Exception:  # libsndfile's own message names our temp file, not what the person did
        raise DittoError(f"the {what} {p.name} is not an audio file this app can read (corrupt, or not audio); "
                         f"accepted: {', '.join(SUPPORTED)}") from None
    if info.frames == 0 or info.samplerate <= 0:
        raise DittoError(f"the {what} {p.name} contains no audio")
    seconds = info.frames / info.samplerate
    if seconds > MAX_AUDIO_S:
        raise DittoError(f"the {what} {p.name} lasts {seconds:.1f} s; at most {MAX_AUDIO_S:g} s of audio is accepted")
    try:
        load_audio(p, (cfg or MelConfig()).sample_rate)
    except DittoError as e:
        raise DittoError(f"the {what} {p.name} cannot be used: {str(e).replace(str(p), p.name)}") from None
    return p


def check_midi(path, cfg: MelConfig | None = None) -> Path:
    """A MIDI file (or score) with at least one pitched note."""
    from dittomusic.control.targets import melody_from_midi

    p = check_file(path, "MIDI file")
    try:
        melody_from_midi(p, None, cfg)
    except DittoError as e:
        raise DittoError(str(e).replace(str(p), f"the MIDI file {p.name}")) from None
    return p


# ------------------------------------------------------------------ the drawn loudness curve

def sketch_background(size: tuple[int, int] = CANVAS) -> np.ndarray:
    """The canvas's light grid (RGB): quarters of the height, tenths of the width."""
    w, h = size
    img = np.full((h, w, 3), 250, dtype=np.uint8)
    for k in range(1, 4):
        img[k * h // 4, :] = 215
    for k in range(1, 10):
        img[:, k * w // 10] = 225
    return img


def _strokes(value) -> np.ndarray | None:
    """[H, W] bool of the drawn pixels of a gradio sketchpad value (its layers' alpha; without
    layers, where the composite differs from the background)."""
    if value is None:
        return None
    layers = [np.asarray(x) for x in (value.get("layers") or []) if x is not None]
    layers = [x for x in layers if x.ndim == 3 and x.shape[2] == 4]
    if layers:
        return np.any([x[..., 3] > 32 for x in layers], axis=0)
    comp, bg = value.get("composite"), value.get("background")
    if comp is None:
        return None
    comp = np.asarray(comp)[..., :3].astype(np.int16)
    if bg is None:
        return np.abs(comp - 255).sum(-1) > 96
    bg = np.asarray(bg)[..., :3].astype(np.int16)
    if bg.shape != comp.shape:
        return None
    return np.abs(comp - bg).sum(-1) > 96


def has_strokes(value) -> bool:
    """Whether anything is drawn on a gradio sketchpad value."""
    mask = _strokes(value)
    return mask is not None and bool(mask.any())


def curve_from_sketch(value, seconds: float, low_db: float, high_db: float,
                      points: int = CURVE_POINTS) -> list[tuple[float, float]]:
    """The drawn strokes as a loudness curve: left to right is 0..`seconds`, the bottom edge
    low_db and the top edge high_db; each column's strokes give its mean height. Columns with no
    stroke are left out (the curve holds or interpolates across them)."""
    mask = _strokes(value)
    if mask is None or not mask.any():
        raise DittoError("nothing is drawn on the loudness canvas: draw a line from left to right "
                         "(high = loud, low = quiet)")
    if not (math.isfinite(low_db) and math.isfinite(high_db)) or high_db <= low_db:
        raise DittoError(f"the canvas's loud end ({high_db:g} dB) must be above its quiet end ({low_db:g} dB)")
    h, w = mask.shape
    rows = np.arange(h, dtype=np.float64)[:, None]
    count = mask.sum(axis=0)
    cols = np.nonzero(count)[0]
    height = 1.0 - (rows * mask).sum(axis=0)[cols] / count[cols] / max(1, h - 1)  # 1 = top
    # bins of equal width in time, each the mean of its drawn columns
    edges = np.linspace(0, w, min(points, w) + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (cols >= a) & (cols < b)
        if sel.any():
            t = (cols[sel].mean() + 0.5) / w * seconds
            out.append((round(float(t), 4), round(float(low_db + (high_db - low_db) * height[sel].mean()), 2)))
    return out


def curve_csv(points: list[tuple[float, float]]) -> str:
    return "time_s,db\n" + "".join(f"{t:g},{d:g}\n" for t, d in points)


def write_curve(points: list[tuple[float, float]], path) -> Path:
    """The curve as the `time_s,db` CSV that `--target-curve` reads."""
    atomic_write_text(path, curve_csv(points))
    return Path(path)


# ------------------------------------------------------------------ hearing a melody target

def melody_notes(target, cfg: MelConfig | None = None) -> list[tuple[float, float, int]]:
    """A melody target [frames] of pitch classes (-1 free) as (start s, duration s, pitch class)
    notes, one per run of equal frames."""
    from dittomusic.audio.mel import MelConfig

    cfg = cfg or MelConfig()
    y = np.asarray(target).reshape(-1)
    notes, start = [], 0
    for f in range(1, len(y) + 1):
        if f == len(y) or y[f] != y[start]:
            if y[start] >= 0:
                notes.append((start / cfg.frame_rate, (f - start) / cfg.frame_rate, int(y[start])))
            start = f
    return notes


def render_melody(target, cfg: MelConfig | None = None, octave: int = 5) -> np.ndarray:
    """The melody target played on a piano by FluidSynth (pitch classes in `octave`; the control
    reads pitch classes only), mono float32 at cfg's rate and as long as the target."""
    from dittomusic.audio.mel import MelConfig
    from dittomusic.data.arrange import INSTRUMENTS, Arrangement, RenderPart
    from dittomusic.data.render import FluidRenderer

    cfg = cfg or MelConfig()
    notes = melody_notes(target, cfg)
    if not notes:
        raise DittoError("the melody target has no notes to play")
    piano = next(i for i in INSTRUMENTS if i.name == "piano")
    arr = np.array([(s, d, 12 * (octave + 1) + pc, 90) for s, d, pc in notes], dtype=np.float64)
    seconds = len(np.asarray(target).reshape(-1)) / cfg.frame_rate
    part = RenderPart(piano, arr)
    return FluidRenderer(sample_rate=cfg.sample_rate).render(
        Arrangement([part], seconds, 120, 0, "C", "major", 0.0, "mf", 0.0))
