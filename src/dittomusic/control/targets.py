"""Control targets built from user inputs (intensity curves, melodies, self-similarity matrices).
The painting tasks' masks are in masks.py, their stitching in stitching.py.

Frame f of a clip sits at time f * hop / sr (centred STFT frames), so a note or curve point at
t seconds lands on frame round(t * frame_rate). Every builder returns CPU tensors; the controls
move them to the mel's device.

Conventions:
  intensity  float32 [F] dB (20*log10 RMS, smoothed); NaN = frame not constrained
  melody     int64 [F] pitch class 0 = C ... 11 = B; -1 = not constrained
  structure  float32 [F, F] self-similarity in [-1, 1]
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig, MelSpectrogram
from dittomusic.errors import DittoError

from . import features as feat


def _cfg(cfg: MelConfig | None) -> MelConfig:
    return cfg or MelConfig()


def check_frames(frames: int) -> int:
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise DittoError(f"frames must be a positive integer, got {frames!r}")
    return int(frames)


def _audio(src, cfg: MelConfig) -> np.ndarray:
    """A path (any format load_audio reads, resampled to cfg's rate) or a mono array at cfg's rate."""
    if isinstance(src, (str, os.PathLike)):
        from dittomusic.audio.io import load_audio

        return load_audio(src, cfg.sample_rate).astype(np.float64)
    a = np.asarray(src.detach().cpu() if hasattr(src, "detach") else src, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise DittoError(f"reference audio must be a file path or a non-empty mono array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DittoError("reference audio contains NaN or infinite samples; give finite samples")
    return a


def _window(values: np.ndarray, frames: int, start: int, fill) -> np.ndarray:
    """values[start:start+frames], padded with `fill` past the end."""
    out = np.full(frames, fill, dtype=values.dtype)
    part = values[start:start + frames]
    out[:len(part)] = part
    return out


# ------------------------------------------------------------------ intensity

INTENSITY_SHAPES = ("linear", "tanh", "cosine")
INTENSITY_PRESETS = tuple(f"{s}-{d}" for s in INTENSITY_SHAPES for d in ("rise", "fall"))
TANH_STEEPNESS = 3.0  # tanh(3) = 0.995: the middle ~third carries most of the change


def _db_window(cfg: MelConfig) -> tuple[float, float, str]:
    lo, hi = feat.intensity_db_range(cfg)
    return lo, hi, (f"intensity targets must lie in [{lo:g}, {hi:+.1f}] dB, what the model's mel can express "
                    f"(20*log10 RMS; the mel's fixed window is [{cfg.db_min:g}, {cfg.db_max:+g}] dB per band); "
                    "rendered music sits around -35..-12 dB")


def _outside(db: float, lo: float, hi: float) -> bool:
    return not lo - 1e-6 <= db <= hi + 1e-6


def intensity_preset(name: str, frames: int, low_db: float, high_db: float,
                     cfg: MelConfig | None = None) -> Tensor:
    """Handcrafted dynamics curve (Music ControlNet's Linear / Tanh / Cosine, flipped or not):
    "<shape>-rise" goes from low_db at the first frame to high_db at the last, "-fall" the reverse.
    Endpoints are exact. Rendered music sits around -35..-12 dB (20*log10 RMS)."""
    frames = check_frames(frames)
    key = str(name).strip().lower()
    if key not in INTENSITY_PRESETS:
        raise DittoError(f"unknown intensity preset {name!r}; available: {', '.join(INTENSITY_PRESETS)}")
    if not (math.isfinite(low_db) and math.isfinite(high_db)):
        raise DittoError(f"intensity preset levels must be finite dB values, got {low_db}, {high_db}")
    lo, hi, window = _db_window(_cfg(cfg))
    for flag, db in (("--low-db", low_db), ("--high-db", high_db)):
        if _outside(db, lo, hi):
            raise DittoError(f"intensity preset level {flag} {db:g} dB is out of range; {window}")
    shape, direction = key.split("-")
    u = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    if shape == "linear":
        s = u
    elif shape == "tanh":
        s = 0.5 * (np.tanh(TANH_STEEPNESS * (2 * u - 1)) / np.tanh(TANH_STEEPNESS) + 1.0)
    else:
        s = 0.5 * (1.0 - np.cos(np.pi * u))
    if direction == "fall":
        s = s[::-1]
    return torch.tensor(low_db + (high_db - low_db) * s, dtype=torch.float32)


def intensity_from_csv(path: str | os.PathLike, frames: int, cfg: MelConfig | None = None) -> Tensor:
    """Curve from a CSV with header `time_s,db` and one point per row, linearly interpolated to
    frame times. Before the first / after the last point the end values are held. Times must
    be >= 0 and strictly increasing."""
    cfg, frames = _cfg(cfg), check_frames(frames)
    path = Path(path)
    if not path.is_file():
        raise DittoError(f"intensity CSV not found: {path}")
    accepted = "expected a header line `time_s,db` then rows like `0.0,-30` (seconds, dB)"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as e:
        raise DittoError(f"cannot read intensity CSV {path}: {e}; {accepted}") from None
    try:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(text.splitlines())) if any(c.strip() for c in r)]
    except csv.Error as e:  # e.g. a field beyond the csv module's 128 KiB limit
        raise DittoError(f"intensity CSV {path} is not a CSV file ({e}); {accepted}") from None
    if not rows:
        raise DittoError(f"intensity CSV {path} is empty; {accepted}")
    header = [c.strip().lower() for c in rows[0][1]]
    if header != ["time_s", "db"]:
        raise DittoError(f"intensity CSV {path} line {rows[0][0]}: header is {','.join(rows[0][1])!r}; {accepted}")
    lo, hi, window = _db_window(cfg)
    times, dbs = [], []
    for line, r in rows[1:]:
        if len(r) != 2:
            raise DittoError(f"intensity CSV {path} line {line}: {len(r)} columns; {accepted}")
        try:
            t, d = float(r[0]), float(r[1])
        except ValueError:
            raise DittoError(f"intensity CSV {path} line {line}: {','.join(r)!r} is not two numbers; {accepted}") from None
        if not (math.isfinite(t) and math.isfinite(d)):
            raise DittoError(f"intensity CSV {path} line {line}: values must be finite numbers")
        if _outside(d, lo, hi):
            raise DittoError(f"intensity CSV {path} line {line}: {d:g} dB is out of range; {window}")
        if t < 0:
            raise DittoError(f"intensity CSV {path} line {line}: time {t} is negative; times must be >= 0")
        if times and t <= times[-1]:
            raise DittoError(f"intensity CSV {path} line {line}: time {t} is not after the previous {times[-1]}; "
                             "times must be strictly increasing")
        times.append(t)
        dbs.append(d)
    if not times:
        raise DittoError(f"intensity CSV {path} has a header but no data rows; {accepted}")
    frame_t = np.arange(frames) * cfg.hop_length / cfg.sample_rate
    return torch.tensor(np.interp(frame_t, times, dbs), dtype=torch.float32)


def intensity_from_audio(src, frames: int, cfg: MelConfig | None = None, offset_s: float = 0.0) -> Tensor:
    """The reference's own intensity curve (waveform RMS -> dB -> 1-s smoothing), frames from
    offset_s on. Frames past the end of the reference are NaN (unconstrained)."""
    cfg, frames = _cfg(cfg), check_frames(frames)
    curve = feat.intensity_curve_from_audio(_audio(src, cfg), None, cfg)
    return torch.tensor(_window(curve, frames, cfg.frames_for(offset_s), np.nan), dtype=torch.float32)


# ------------------------------------------------------------------ melody

MAX_MELODY_S = 3600.0  # a melody target's length: an hour is far beyond any clip, and bounds the frames
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE_RE = re.compile(r"^([A-Ga-g])([#♯b♭]*)(-?\d+)?$")
_NOTE_HELP = ("expected space-separated NOTE:SECONDS tokens, NOTE a letter A-G with optional # or b "
              "and octave (C4, F#3, Bb5) or r for a rest, SECONDS a positive number, e.g. "
              "'C4:0.5 D4:0.5 E4:1 r:0.5'")


def parse_note(name: str) -> int:
    """Pitch class (0 = C) of a note name like C4, F#3, Bb, or -1 for a rest (r/rest)."""
    pc, _ = _note(name)
    return pc


def _note(name: str) -> tuple[int, int | None]:
    """(pitch class or -1 for a rest, MIDI number or None without an octave): C4 -> (0, 60)."""
    s = str(name).strip()
    if s.lower() in ("r", "rest"):
        return -1, None
    m = _NOTE_RE.match(s)
    if not m:
        raise DittoError(f"bad note name {name!r}; {_NOTE_HELP}")
    semis = _LETTER[m.group(1).upper()] + sum(1 if ch in "#♯" else -1 for ch in m.group(2))
    return semis % 12, None if m.group(3) is None else 12 * (int(m.group(3)) + 1) + semis


def max_midi(cfg: MelConfig | None = None) -> int:
    """The highest MIDI note whose fundamental is below the Nyquist frequency (E9 = 124 at
    22,050 Hz): above it the mel, and so the melody feature, has nothing to read."""
    cfg = _cfg(cfg)
    return min(127, int(math.floor(69 + 12 * math.log2(cfg.sample_rate / 2 / 440.0) + 1e-9)))


def midi_name(n: int) -> str:
    return f"{feat.PITCH_CLASSES[n % 12]}{n // 12 - 1}"


def _note_range(cfg: MelConfig) -> str:
    top = max_midi(cfg)
    return (f"notes must lie between C-1 (MIDI 0) and {midi_name(top)} (MIDI {top}, the highest below the "
            f"{cfg.sample_rate / 2:g} Hz Nyquist limit of {cfg.sample_rate} Hz audio); the melody control reads "
            "pitch classes, so any octave in that range works")


def _events_to_frames(events: Sequence[tuple[float, float, int]], frames: int, cfg: MelConfig,
                      offset_s: float = 0.0) -> np.ndarray:
    """(start_s, end_s, value) events -> [frames] int64 of the highest value sounding at each frame
    time (-1 where none); frame f is at offset_s + f*hop/sr, covered when start <= t < end."""
    out = np.full(frames, -1, dtype=np.int64)
    fr = cfg.frame_rate
    for start, end, value in events:
        a = max(0, int(math.ceil((start - offset_s) * fr - 1e-9)))
        b = min(frames, int(math.ceil((end - offset_s) * fr - 1e-9)))
        if b > a:
            out[a:b] = np.maximum(out[a:b], value)
    return out


def melody_from_string(text: str, frames: int | None = None, cfg: MelConfig | None = None) -> Tensor:
    """'C4:0.5 D4:0.5 E4:1 r:0.5' -> int64 [frames] pitch classes (rests -1). frames=None: as
    long as the melody; shorter melodies are padded with -1, longer ones cut."""
    cfg = _cfg(cfg)
    tokens = str(text).replace(",", " ").split()
    if not tokens:
        raise DittoError(f"empty melody; {_NOTE_HELP}")
    events, t = [], 0.0
    for i, tok in enumerate(tokens, 1):
        if tok.count(":") != 1:
            raise DittoError(f"melody token {i} {tok!r} has no ':SECONDS' duration; {_NOTE_HELP}")
        name, dur_s = tok.split(":")
        try:
            pc, midi = _note(name)
        except DittoError:
            raise DittoError(f"melody token {i} {tok!r}: {name!r} is not a note name; {_NOTE_HELP}") from None
        if midi is not None and not 0 <= midi <= max_midi(cfg):
            raise DittoError(f"melody token {i} {tok!r}: {name} is MIDI note {midi}, out of range; "
                             f"{_note_range(cfg)}")
        try:
            dur = float(dur_s)
        except ValueError:
            dur = float("nan")
        if not (math.isfinite(dur) and dur > 0):
            raise DittoError(f"melody token {i} {tok!r}: duration {dur_s!r} is not a positive number of seconds; "
                             f"{_NOTE_HELP}")
        if t + dur > MAX_MELODY_S:
            raise DittoError(f"melody token {i} {tok!r}: the melody would last {t + dur:.4g} s; at most "
                             f"{MAX_MELODY_S:g} s (a clip takes its first seconds only)")
        if pc >= 0:
            events.append((t, t + dur, pc))
        t += dur
    n = check_frames(frames) if frames is not None else max(1, int(math.ceil(t * cfg.frame_rate - 1e-9)))
    return torch.from_numpy(_events_to_frames(events, n, cfg))


def melody_from_midi(path: str | os.PathLike, frames: int | None = None, cfg: MelConfig | None = None,
                     offset_s: float = 0.0) -> Tensor:
    """Top line of a MIDI (or any music21-readable score): the highest sounding pitch at each
    frame, tempo changes respected (music21 secondsMap). Percussion (unpitched) is ignored.
    frames=None: up to the last note's end."""
    import music21

    cfg = _cfg(cfg)
    path = Path(path)
    if not path.is_file():
        raise DittoError(f"MIDI file not found: {path}")
    try:
        score = music21.converter.parse(str(path))
    except Exception as e:  # music21 raises many types for unreadable files
        raise DittoError(f"cannot parse {path} as MIDI/score with music21: {e}. Accepted: standard MIDI files "
                         "(.mid/.midi) or other scores music21 reads (.musicxml, .mxl, .abc)") from None
    events = []
    for d in score.flatten().secondsMap:
        el = d["element"]
        if isinstance(el, (music21.note.Note, music21.chord.Chord)) and d["durationSeconds"] > 0:
            top = max(p.ps for p in el.pitches)
            events.append((float(d["offsetSeconds"]), float(d["endTimeSeconds"]), int(round(top))))
    if not events:
        raise DittoError(f"{path} contains no pitched notes to take a melody from")
    bad = next(((t, n) for t, _, n in events if not 0 <= n <= max_midi(cfg)), None)
    if bad is not None:
        raise DittoError(f"{path}: the note at {bad[0]:.2f} s is MIDI {bad[1]}, out of range; {_note_range(cfg)}")
    end = max(e for _, e, _ in events) - offset_s
    if frames is None and end > MAX_MELODY_S:
        raise DittoError(f"{path}: its top line lasts {end:.4g} s; at most {MAX_MELODY_S:g} s unless frames is given")
    n = check_frames(frames) if frames is not None else max(1, int(math.ceil(end * cfg.frame_rate - 1e-9)))
    top = _events_to_frames(events, n, cfg, offset_s)
    return torch.from_numpy(np.where(top >= 0, top % 12, -1))


def melody_from_audio(src, frames: int, cfg: MelConfig | None = None, offset_s: float = 0.0,
                      silence_db: float = 40.0) -> Tensor:
    """The reference's waveform chroma argmax per frame (the melody metric's own reading).
    Frames quieter than silence_db below the loudest, and frames past the end, are -1."""
    cfg, frames = _cfg(cfg), check_frames(frames)
    pcs = feat.pitch_classes_from_audio(_audio(src, cfg), None, cfg, silence_db=silence_db)
    return torch.from_numpy(_window(pcs, frames, cfg.frames_for(offset_s), -1))


# ------------------------------------------------------------------ structure

# Within-segment timbre variation relative to the spread between segment prototypes, fitted to
# real renders: concatenating two different orchestrated pieces as ABBA (exact repeats) gives a
# mean unsmoothed similarity of +0.525 inside same-letter blocks and -0.513 across, i.e.
# 0.5 / (0.5 + nu) = 0.525 -> nu = 0.45. The same nu predicts the other patterns' block means
# (ABA: same 0.39 / diff -0.46 predicted, 0.40 / -0.45 measured; AABA: 0.26 / -0.39 vs
# 0.31 / -0.42), because z-scoring over time makes the achievable values depend on the pattern.
STRUCTURE_NOISE_RATIO = 0.45


def _letters(pattern: str) -> str:
    p = re.sub(r"[\s\-_,|]", "", str(pattern)).upper()
    if not p or not p.isalpha() or not p.isascii():
        raise DittoError(f"bad structure pattern {pattern!r}: expected letters naming equal-length segments, "
                         "e.g. ABBA, AABA, ABA (same letter = same material)")
    return p


def structure_from_pattern(pattern: str, frames: int, cfg: MelConfig | None = None, window: int | None = None,
                           polyorder: int = feat.STRUCTURE_POLYORDER,
                           noise_ratio: float = STRUCTURE_NOISE_RATIO) -> Tensor:
    """Target SSM [F, F] for a phrase pattern of equal-length segments ("ABBA", "AABA", ...).

    Values are the expected cosine similarity of the control's own feature for an idealised clip
    that follows the pattern: each letter a fixed timbre prototype (orthonormal) plus
    within-segment variation (noise_ratio). Z-scoring over time subtracts the clip's mean, so
    letter l's centred prototype is e_l - p (p = share of frames per letter) and
        S(l, k) = m_l . m_k / sqrt((|m_l|^2 + nu)(|m_k|^2 + nu)),  diagonal 1,
    then the same 2-D Savitzky-Golay smoothing as the feature. ABBA thus gets +-0.53 blocks,
    and a single letter ("AAAA") gets 0 off the diagonal: a clip with no contrasting section
    has no self-similarity structure left after z-scoring.
    """
    cfg, frames = _cfg(cfg), check_frames(frames)
    p = _letters(pattern)
    if len(p) > frames:
        raise DittoError(f"structure pattern {pattern!r} has more segments ({len(p)}) than frames ({frames})")
    if not noise_ratio > 0:
        raise DittoError(f"noise_ratio must be > 0, got {noise_ratio}")
    letters = sorted(set(p))
    seg = np.array([letters.index(p[t * len(p) // frames]) for t in range(frames)])
    share = np.bincount(seg, minlength=len(letters)) / frames
    m = np.eye(len(letters)) - share
    g = m @ m.T
    norm = np.diag(g) + noise_ratio
    sim = g / np.sqrt(np.outer(norm, norm))
    ssm = torch.tensor(sim[seg][:, seg], dtype=torch.float64)
    ssm.fill_diagonal_(1.0)
    window = feat.sg_window(cfg) if window is None else window
    if window > 1:
        ssm = feat.savgol_smooth(feat.savgol_smooth(ssm, window, polyorder, -1), window, polyorder, -2)
    return ssm.float()


def structure_from_audio(src, frames: int, cfg: MelConfig | None = None, window: int | None = None,
                         polyorder: int = feat.STRUCTURE_POLYORDER, n_coeffs: int = feat.N_MFCC) -> Tensor:
    """Structure transfer (App. F): the reference's MFCC SSM, computed at its own length and
    resized (bilinear) to [frames, frames], then smoothed like the feature (window <= 1: not)."""
    cfg, frames = _cfg(cfg), check_frames(frames)
    a = torch.from_numpy(_audio(src, cfg))
    with torch.no_grad():
        mel = MelSpectrogram(cfg).double()(a)
        ssm = feat.self_similarity(mel, cfg, window=1, n_coeffs=n_coeffs)
        if ssm.shape[-1] != frames:
            ssm = torch.nn.functional.interpolate(ssm[None, None], size=(frames, frames), mode="bilinear",
                                                  align_corners=True)[0, 0]
        window = feat.sg_window(cfg) if window is None else window
        if window > 1:
            ssm = feat.savgol_smooth(feat.savgol_smooth(ssm, window, polyorder, -1), window, polyorder, -2)
    return ssm.float()
