"""Control targets built from user inputs, plus the painting masks and stitching.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig, MelSpectrogram
from dittomusic.errors import DittoError

from . import features as feat


def _cfg(cfg: MelConfig | None) -> MelConfig:
    return cfg or MelConfig()


def _check_frames(frames: int) -> int:
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
    frames = _check_frames(frames)
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
    cfg, frames = _cfg(cfg), _check_frames(frames)
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
    cfg, frames = _cfg(cfg), _check_frames(frames)
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
    n = _check_frames(frames) if frames is not None else max(1, int(math.ceil(t * cfg.frame_rate - 1e-9)))
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
    n = _check_frames(frames) if frames is not None else max(1, int(math.ceil(end * cfg.frame_rate - 1e-9)))
    top = _events_to_frames(events, n, cfg, offset_s)
    return torch.from_numpy(np.where(top >= 0, top % 12, -1))


def melody_from_audio(src, frames: int, cfg: MelConfig | None = None, offset_s: float = 0.0,
                      silence_db: float = 40.0) -> Tensor:
    """The reference's waveform chroma argmax per frame (the melody metric's own reading).
    Frames quieter than silence_db below the loudest, and frames past the end, are -1."""
    cfg, frames = _cfg(cfg), _check_frames(frames)
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
    cfg, frames = _cfg(cfg), _check_frames(frames)
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
    cfg, frames = _cfg(cfg), _check_frames(frames)
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


# ------------------------------------------------------------------ painting masks

def _ref_mel(ref_mel) -> Tensor:
    r = torch.as_tensor(ref_mel.detach() if isinstance(ref_mel, Tensor) else np.asarray(ref_mel))
    if r.dim() != 2 or r.shape[-1] < 1:
        raise DittoError(f"reference mel must be [n_mels, frames], got shape {tuple(r.shape)}")
    return r.float().cpu()


MAX_SECONDS = 86400.0  # any time a painting option gives; beyond it frame counts overflow soon after


def _seconds_to_frames(seconds: float, cfg: MelConfig, what: str) -> int:
    if not (math.isfinite(seconds) and abs(seconds) <= MAX_SECONDS):
        raise DittoError(f"{what} must be a number of seconds within +-{MAX_SECONDS:g}, got {seconds}")
    return cfg.frames_for(seconds)


def _overlap_frames(overlap_s: float, cfg: MelConfig) -> int:
    o = _seconds_to_frames(overlap_s, cfg, "overlap")
    if o < 1:
        raise DittoError(f"overlap must be at least one frame ({1 / cfg.frame_rate:.3f}s), got {overlap_s}s")
    return o


@dataclass
class PaintMasks:
    """Time masks of a painting task. Frame gen_idx[i] of the generated clip x0 must equal frame
    ref_idx[i] of ref_mel, or, for reference-free looping (ref_mel None), frame ref_idx[i] of x0
    itself. gen_mask / ref_mask are the papers' binary masks M_gen / M_ref over time."""

    kind: str  # "outpaint" | "inpaint" | "loop" | "loop-free"
    frames: int  # generated clip length F
    gen_idx: Tensor  # int64 [K]
    ref_idx: Tensor  # int64 [K]
    ref_mel: Tensor | None  # [n_mels, R] (CPU float32) or None = x0 itself
    cfg: MelConfig = field(default_factory=MelConfig)
    overlap: int = 0  # outpaint/loop: matched frames per side
    window_start: int = 0  # inpaint: reference frame where the generated window starts
    gap: tuple[int, int] = (0, 0)  # inpaint: gap [start, end) in generated-window frames
    loop_frames: int = 0  # loop-free: loop period L

    @property
    def self_referenced(self) -> bool:
        return self.ref_mel is None

    @property
    def gen_mask(self) -> Tensor:
        m = torch.zeros(self.frames, dtype=torch.bool)
        m[self.gen_idx] = True
        return m

    @property
    def ref_mask(self) -> Tensor:
        n = self.frames if self.ref_mel is None else self.ref_mel.shape[-1]
        m = torch.zeros(n, dtype=torch.bool)
        m[self.ref_idx] = True
        return m

    def target(self) -> Tensor | None:
        """y = M_ref (.) x_ref as the matched frames [n_mels, K]; None when self-referenced."""
        return None if self.ref_mel is None else self.ref_mel[:, self.ref_idx]


def outpaint_masks(ref_mel, overlap_s: float, frames: int | None = None, cfg: MelConfig | None = None) -> PaintMasks:
    """Continue the reference: the first overlap_s of the generated clip must match the last
    overlap_s of ref_mel [n_mels, R]. frames = generated length (default: the model's clip)."""
    cfg = _cfg(cfg)
    r = _ref_mel(ref_mel)
    n = _check_frames(frames if frames is not None else cfg.clip_frames)
    o = _overlap_frames(overlap_s, cfg)
    if o > r.shape[-1] or o >= n:
        raise DittoError(f"outpaint overlap of {overlap_s}s ({o} frames) must be shorter than the generated clip "
                         f"({n} frames) and no longer than the reference ({r.shape[-1]} frames)")
    R = r.shape[-1]
    return PaintMasks("outpaint", n, torch.arange(o), torch.arange(R - o, R), r, cfg, overlap=o)


def inpaint_masks(ref_mel, gap_start_s: float, gap_s: float, frames: int | None = None,
                  cfg: MelConfig | None = None) -> PaintMasks:
    """Fill a gap: everything of the generated window outside [gap_start_s, gap_start_s + gap_s)
    must match the reference. frames=None: the window is the whole reference; otherwise a
    `frames`-long window of the reference centred on the gap (for references longer than the
    model's clip)."""
    cfg = _cfg(cfg)
    r = _ref_mel(ref_mel)
    R = r.shape[-1]
    n = _check_frames(frames if frames is not None else R)
    g0, glen = _seconds_to_frames(gap_start_s, cfg, "inpaint gap start"), _seconds_to_frames(gap_s, cfg, "inpaint gap")
    if glen < 1 or g0 < 0 or g0 + glen > R:
        raise DittoError(f"inpaint gap {gap_start_s}s + {gap_s}s must be at least one frame long and lie inside "
                         f"the reference (0..{R / cfg.frame_rate:.2f}s)")
    if n > R:
        raise DittoError(f"inpaint window of {n} frames is longer than the reference ({R} frames)")
    if glen >= n:
        raise DittoError(f"inpaint gap ({glen} frames) leaves no context in a {n}-frame window; "
                         "use a shorter gap or a longer window")
    ws = min(max(0, int(round(g0 + glen / 2 - n / 2))), R - n)
    keep = torch.tensor([t for t in range(n) if not g0 <= ws + t < g0 + glen], dtype=torch.long)
    return PaintMasks("inpaint", n, keep, keep + ws, r, cfg, window_start=ws, gap=(g0 - ws, g0 - ws + glen))


def loop_masks(ref_mel=None, overlap_s: float = 0.5, frames: int | None = None, loop_s: float | None = None,
               cfg: MelConfig | None = None) -> PaintMasks:
    """Looping.

    With ref_mel [n_mels, R]: the generated clip bridges the reference's end back to its start:
    its first overlap_s match the reference's last overlap_s and its last overlap_s match the
    reference's first overlap_s, so reference + generated middle repeats seamlessly.

    Without a reference (App. E): the clip loops on itself with period L = loop_s (default:
    clip length - overlap): frames [L, L + o) must match frames [0, o), so x0[:L] repeated joins
    its own continuation.
    """
    cfg = _cfg(cfg)
    n = _check_frames(frames if frames is not None else cfg.clip_frames)
    o = _overlap_frames(overlap_s, cfg)
    if ref_mel is None:
        L = _seconds_to_frames(loop_s, cfg, "loop length") if loop_s is not None else n - o
        if L < o or L + o > n:
            raise DittoError(f"reference-free loop of {L} frames with a {o}-frame overlap needs overlap <= loop "
                             f"and loop + overlap <= clip length ({n} frames)")
        return PaintMasks("loop-free", n, torch.arange(L, L + o), torch.arange(o), None, cfg, overlap=o, loop_frames=L)
    if loop_s is not None:
        raise DittoError("loop_s applies to reference-free looping only; with a reference the loop length is "
                         "reference + generated clip - 2 * overlap")
    r = _ref_mel(ref_mel)
    R = r.shape[-1]
    if 2 * o >= n or o > R:
        raise DittoError(f"loop overlap of {overlap_s}s ({o} frames) must leave new material in the generated "
                         f"clip (2 * overlap < {n} frames) and fit in the reference ({R} frames)")
    gen = torch.cat([torch.arange(o), torch.arange(n - o, n)])
    ref = torch.cat([torch.arange(R - o, R), torch.arange(o)])
    return PaintMasks("loop", n, gen, ref, r, cfg, overlap=o)


# ------------------------------------------------------------------ stitching

# Crossfade at each junction. 0.2 s rather than 0.1: a residual mismatch between the generated
# overlap and the reference is spread over twice the frames, and on the control eval's DITTO
# outpaints (best cut) the seam ratios went from 1.18-1.52 (4 of 5 <= 1.5) to 0.91-1.38 (5 of 5).
CROSSFADE_S = 0.2


@dataclass
class Stitched:
    """A stitched result: mel [..., n_mels, N] and/or mono audio [samples], with the stitch
    boundaries (centres of the crossfades) in seconds of the output."""

    boundaries_s: list[float]
    mel: Tensor | None = None
    audio: np.ndarray | None = None


# Audio heard around a candidate fade when the cut is chosen by listening: the fade plus this
# much on each side, enough for the vocoder's window (n_fft 2048 = 93 ms) to settle before the
# frames the seam metric reads (+-50 ms of the fade centre).
LISTEN_CONTEXT_S = 0.25


def _fades(A: Tensor, a0: int, B: Tensor, b0: int, starts, x: int, ctx: int = 0
           ) -> tuple[list[Tensor], list[float]]:
    """Crossfades of x frames from A into B starting j frames into their matched run (A[a0:]
    against B[b0:]) for each j in starts, each cut out with up to ctx frames of A before the
    fade and of B after it: (stitched pieces [..., n_mels, T_j], the fade centres in frames of
    each piece)."""
    r = (torch.arange(x, dtype=A.dtype, device=A.device) + 0.5) / max(x, 1)
    shape = torch.broadcast_shapes(A.shape[:-1], B.shape[:-1])
    pieces, centres = [], []
    for j in starts:
        lo, hi = max(0, a0 + j - ctx), min(B.shape[-1], b0 + j + x + ctx)
        mix = A[..., a0 + j:a0 + j + x] * (1 - r) + B[..., b0 + j:b0 + j + x] * r
        parts = [A[..., lo:a0 + j], mix, B[..., b0 + j + x:hi]]
        pieces.append(torch.cat([q.expand(*shape, q.shape[-1]) for q in parts], dim=-1))
        centres.append(a0 + j - lo + x / 2)
    return pieces, centres


def _pick(costs: dict[int, float], default: int) -> int:
    """The start with the lowest cost; ties (within 1e-9) go to the one nearest `default`."""
    low = min(costs.values())
    return min((j for j, c in costs.items() if c <= low + 1e-9), key=lambda j: abs(j - default))


def _mel_costs(a: Tensor, b: Tensor, x: int) -> list[float]:
    """Per crossfade start: the largest frame-to-frame flux (mean |change| over mel bins) of the
    stitched frames from one frame before the fade to one after."""
    a, b = torch.broadcast_tensors(a.detach().float(), b.detach().float())
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    K = a.shape[-1]
    r = (torch.arange(x, dtype=a.dtype) + 0.5) / max(x, 1)
    costs = []
    for j in range(K - x + 1):
        lo, up = max(0, j - 1), min(K, j + x + 1)
        parts = [a[..., lo:j]] if j > lo else []
        if x:
            parts.append(a[..., j:j + x] * (1 - r) + b[..., j:j + x] * r)
        if up > j + x:
            parts.append(b[..., j + x:up])
        seg = torch.cat(parts, dim=-1)
        costs.append(float(seg.diff(dim=-1).abs().mean(dim=-2).amax()) if seg.shape[-1] > 1 else 0.0)
    return costs


def listen_costs(vocoder: Callable[[Tensor], Tensor], cfg: MelConfig, window_s: float | None = feat.SEAM_WINDOW_S
                 ) -> Callable[[list[Tensor], list[float], int], list[float]]:
    """A cut judge that listens: each candidate stitch is vocoded and scored by the largest
    spectral flux of its audio (`features.spectral_flux`) within +-window_s of the fade centre,
    the middle of the fade where the two sides mix most evenly and where the seam metric reads a
    boundary (None: the whole fade and one frame on each side); over a batch, the worst item
    counts."""
    sr = cfg.sample_rate

    def judge(pieces: list[Tensor], centres: list[float], x: int) -> list[float]:
        half = window_s if window_s is not None else (x / 2 + 1) / cfg.frame_rate
        costs = [0.0] * len(pieces)
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(pieces):
            by_len.setdefault(p.shape[-1], []).append(i)
        for idx in by_len.values():  # one vocoder batch per piece length
            batch = torch.stack([pieces[i] for i in idx])
            with torch.no_grad():
                audio = vocoder(batch.reshape(-1, *batch.shape[-2:])).detach().cpu().numpy()
            for i, clips in zip(idx, audio.reshape(len(idx), -1, audio.shape[-1])):
                for a in clips:
                    flux, t = feat.spectral_flux(a, sr)
                    near = np.abs(t - centres[i] / cfg.frame_rate) <= half
                    costs[i] = max(costs[i], float(flux[near].max()) if near.any() else 0.0)
        return costs

    return judge


def _best_start(A: Tensor, a0: int, B: Tensor, b0: int, K: int, x: int, default: int,
                judge: Callable | None = None, ctx: int = 0) -> int:
    """Where in a matched run of K frames (A[a0:a0 + K] before the junction against B[b0:b0 + K]
    after it) to start a crossfade of x frames; the lowest cost wins, ties go to `default`.

    Without a judge the cost is scored on the mel like the seam metric: the largest
    frame-to-frame flux of the stitched frames around the fade. With one (`listen_costs`) each
    candidate is vocoded with ctx frames of context and judged on the audio, the domain in
    which the seam is heard and scored (mel bins weigh low frequencies far more than an STFT).
    Cutting where both sides agree and the music is steady is what an editor does by hand: a
    mismatch spread over the fade or an onset right at the junction is what makes a seam audible."""
    hi = K - x
    if hi <= 0:
        return 0
    if judge is None:
        return _pick(dict(enumerate(_mel_costs(A[..., a0:a0 + K], B[..., b0:b0 + K], x))), default)
    A, B = A.detach().float(), B.detach().float()
    # every other start, then the neighbours of the best: half the vocoding, and the metric's
    # +-50 ms window spans about 9 frames, so adjacent starts are heard alike
    coarse = sorted({*range(0, hi + 1, 2), hi, default})
    costs = dict(zip(coarse, judge(*_fades(A, a0, B, b0, coarse, x, ctx), x)))
    b = _pick(costs, default)
    fine = [j for j in (b - 1, b + 1) if 0 <= j <= hi and j not in costs]
    if fine:
        costs.update(zip(fine, judge(*_fades(A, a0, B, b0, fine, x, ctx), x)))
    return _pick(costs, default)


def _plan(m: PaintMasks, xf: int, tail: int = 0, gen: Tensor | None = None, judge: Callable | None = None,
          ) -> tuple[list[tuple[str, int, int]], list[int], int | None]:
    """Segments (source, start, end) in frames, the crossfade length at each junction between
    consecutive segments, and for loops the crossfade at the wrap (None: not cyclic). Each
    crossfade lies inside a matched region, where both sides should already agree. With the
    generated mel `gen`, each junction moves within its matched region to where the stitch is
    smoothest (`_best_start`, judged by `judge` if given); without it, junctions sit at the end
    of the region next to the new material.

    tail: frames at the end of each source that a junction may not use. Audio needs 1: a
    mel of N frames covers only (N - 1) * hop samples (+ less than a hop), so the last frame's
    span is not (fully) in the audio; junctions move one frame earlier, inside the match."""
    n = m.frames
    ref = m.ref_mel if m.ref_mel is None or gen is None else m.ref_mel.to(gen)
    ctx = m.cfg.frames_for(LISTEN_CONTEXT_S)

    def start(A, a0, B, b0, x, K, default):
        # a crossfade start j in [0, K - x] of a K-frame matched run A[a0:] against B[b0:]
        return default if gen is None else _best_start(A, a0, B, b0, K, x, default, judge, ctx)

    if m.kind == "outpaint":
        R, o = m.ref_mel.shape[-1], m.overlap
        x = max(0, min(xf, o - tail))
        K = o - tail
        j = start(ref, R - o, gen, 0, x, K, K - x)
        return [("ref", 0, R - o + j + x), ("gen", j, n)], [x], None
    if m.kind == "inpaint":
        R, ws = m.ref_mel.shape[-1], m.window_start
        g0, g1 = m.gap
        xl, xr = min(xf, g0), max(0, min(xf, n - g1 - tail))
        segs, joins = [], []
        jl = start(ref, ws, gen, 0, xl, g0, g0 - xl)
        if ws + g0 > 0:
            segs.append(("ref", 0, ws + jl + xl))
            joins.append(xl)
        if ws + g1 < R:
            K = n - tail - g1
            jr = start(gen, g1, ref, ws + g1, xr, K, 0)
            segs += [("gen", jl, g1 + jr + xr), ("ref", ws + g1 + jr, R)]
            joins.append(xr)
        else:
            segs.append(("gen", jl, n))
        return segs, joins, None
    if m.kind == "loop":
        R, o = m.ref_mel.shape[-1], m.overlap
        x = max(0, min(xf, o - tail))
        K = o - tail
        jh = start(ref, R - o, gen, 0, x, K, K - x)
        jw = start(gen, n - o, ref, 0, x, K, 0)
        # the cycle starts where the wrap's fade ends in the reference, so its length stays R + n - 2o
        return [("ref", jw, R - o + jh + x), ("gen", jh, n - o + jw + x)], [x], x
    if m.kind == "loop-free":
        L = m.loop_frames
        K = min(m.overlap, n - tail - L)
        x = max(0, min(xf, K))
        d = start(gen, L, gen, 0, x, K, 0)
        return [("gen", d, L + d + x)], [], x
    raise DittoError(f"unknown painting kind {m.kind!r}")


def _assemble(pieces: list, joins: list[int], fade: Callable, cat):
    """Overlap-add consecutive pieces (arrays along the last axis) with crossfades of joins[i]
    samples between piece i and i+1; fade(x, left_tail, right_head) gives the two gain curves.
    Returns (output, junction centres in samples)."""
    out, centres = pieces[0], []
    for piece, x in zip(pieces[1:], joins):
        if x > 0:
            a, b = fade(x, out[..., -x:], piece[..., :x])
            mixed = out[..., -x:] * a + piece[..., :x] * b
            centres.append(out.shape[-1] - x / 2)
            out = cat([out[..., :-x], mixed, piece[..., x:]])
        else:
            centres.append(float(out.shape[-1]))
            out = cat([out, piece])
    return out, centres


def _expand(segs, joins, wrap, repeats: int):
    if wrap is None:
        return segs, joins, 0
    if repeats < 1:
        raise DittoError(f"repeats must be >= 1, got {repeats}")
    all_segs = segs * repeats
    # later cycles enter where the wrap's fade ends; the first plays its source from the top
    all_segs[0] = (all_segs[0][0], 0, all_segs[0][2])
    all_joins = []
    for i in range(repeats):
        all_joins += joins + ([wrap] if i < repeats - 1 else [])
    return all_segs, all_joins, wrap  # the final cycle's wrap tail is trimmed


def stitch(masks: PaintMasks, gen_mel, crossfade_s: float = CROSSFADE_S, repeats: int = 2,
           vocoder: Callable[[Tensor], Tensor] | None = None, best_cut: bool = True, listen: bool = True
           ) -> Stitched:
    """The final mel: reference and generated clip joined at the matched regions (outpaint:
    reference then the continuation; inpaint: the reference with the gap filled; loops: one
    cycle repeated `repeats` times). Each junction is a linear crossfade (in the scaled-dB mel)
    of up to crossfade_s (CROSSFADE_S) inside the matched region, placed where the stitch is smoothest
    (best_cut; False: at the end of the region next to the new material). gen_mel:
    [..., n_mels, F]; a batch shares its cut points. With a vocoder, the stitched mel is also
    vocoded (one continuous synthesis), and unless listen=False the cut is chosen by listening:
    each candidate fade is vocoded and the one with the least spectral flux at its centre wins
    (`listen_costs`; on the control eval's 105 painted clips this cut the mean seam ratio from
    1.19 to 1.10, and from 1.32 to 1.25 at a finer STFT the judge does not use)."""
    cfg = masks.cfg
    g = torch.as_tensor(gen_mel)
    if g.shape[-1] != masks.frames:
        raise DittoError(f"generated mel has {g.shape[-1]} frames, the masks were built for {masks.frames}")
    judge = listen_costs(vocoder, cfg) if vocoder is not None and listen else None
    segs, joins, wrap = _plan(masks, max(0, cfg.frames_for(crossfade_s)), gen=g if best_cut else None, judge=judge)
    segs, joins, trim = _expand(segs, joins, wrap, repeats)
    ref = None if masks.ref_mel is None else masks.ref_mel.to(device=g.device, dtype=g.dtype)
    pieces = []
    for src, a, b in segs:
        block = g[..., a:b] if src == "gen" else ref[..., a:b]
        pieces.append(block.expand(*g.shape[:-1], b - a) if src == "ref" else block)

    def fade(x, left, right):
        r = (torch.arange(x, device=g.device, dtype=g.dtype) + 0.5) / x
        return 1 - r, r

    out, centres = _assemble(pieces, joins, fade, lambda xs: torch.cat(xs, dim=-1))
    if trim:
        out = out[..., :-trim]
    res = Stitched([c / cfg.frame_rate for c in centres], mel=out)
    if vocoder is not None:
        with torch.no_grad():
            res.audio = vocoder(out).detach().cpu().numpy()
    return res


def stitch_audio(masks: PaintMasks, gen_audio, ref_audio=None, crossfade_s: float = CROSSFADE_S,
                 repeats: int = 2, gen_mel=None) -> Stitched:
    """Audio-domain stitch that keeps the original reference recording: the vocoded generated
    clip (gen frame i at sample i*hop) is joined to ref_audio (the audio the reference mel was
    computed from) with correlation-matched constant-power crossfades at the junctions of
    `stitch` (moved one frame earlier: the last frame of a mel is not fully in its audio).
    ref_audio is not used for reference-free loops. With gen_mel (the generated mel the audio
    was vocoded from), the junctions move to where the stitch is smoothest, as in `stitch`."""
    cfg = masks.cfg
    hop = cfg.hop_length
    g = np.asarray(gen_audio, dtype=np.float64)
    if g.ndim != 1:
        raise DittoError(f"stitch_audio expects mono generated audio [samples], got shape {g.shape}")
    lengths = {"gen": len(g)}
    g = np.pad(g, (0, max(0, masks.frames * hop - len(g))))
    r = None
    if masks.ref_mel is not None:
        if ref_audio is None:
            raise DittoError(f"{masks.kind} stitching needs the reference audio (ref_audio)")
        r = np.asarray(ref_audio, dtype=np.float64)
        R = masks.ref_mel.shape[-1]
        if r.ndim != 1 or abs(len(r) // hop + 1 - R) > 1:
            raise DittoError(f"reference audio of {r.shape} samples does not match the reference mel "
                             f"({R} frames = about {(R - 1) * hop} samples)")
        lengths["ref"] = len(r)
        r = np.pad(r, (0, max(0, R * hop - len(r))))
    gm = None
    if gen_mel is not None:
        gm = torch.as_tensor(gen_mel)
        if gm.shape[-1] != masks.frames:
            raise DittoError(f"generated mel has {gm.shape[-1]} frames, the masks were built for {masks.frames}")
    segs, joins, wrap = _plan(masks, max(0, cfg.frames_for(crossfade_s)), tail=1, gen=gm)
    segs, joins, trim = _expand(segs, joins, wrap, repeats)
    pieces = [(g if src == "gen" else r)[a * hop:b * hop] for src, a, b in segs]
    # inner segments use the zero-padded sources so junctions stay aligned; the last one ends
    # where its source really ends (a mel of N frames vocodes to (N - 1) * hop samples)
    src, a, b = segs[-1]
    pieces[-1] = pieces[-1][:max(0, min(b * hop, lengths[src]) - a * hop)]

    def fade(x, left, right):
        # constant-power crossfade for the measured correlation rho of the two sides: gains
        # (1 - r, r) / sqrt((1 - r)^2 + r^2 + 2 rho r (1 - r)). rho = 1 (same waveform) gives
        # the plain linear fade, rho = 0 (unrelated phases) an equal-power one; a fixed
        # equal-power fade would swell identical signals by 3 dB mid-fade (an audible seam).
        rho = float(np.dot(left, right) / (np.linalg.norm(left) * np.linalg.norm(right) + 1e-12))
        rho = min(max(rho, 0.0), 1.0)
        r = (np.arange(x) + 0.5) / x
        norm = np.sqrt((1 - r) ** 2 + r ** 2 + 2 * rho * r * (1 - r))
        return (1 - r) / norm, r / norm

    out, centres = _assemble(pieces, [x * hop for x in joins], fade, np.concatenate)
    if trim:
        out = out[:-trim * hop]
    return Stitched([c / cfg.sample_rate for c in centres], audio=out.astype(np.float32))
