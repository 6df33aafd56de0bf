"""Parse a piece with music21 into plain note arrays (quarter-length time, MIDI pitch)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dittomusic.data.sources import PieceRef
from dittomusic.errors import PieceError


@dataclass
class ScorePart:
    name: str
    notes: np.ndarray  # [N, 3] float64: onset (quarter lengths), duration (ql), MIDI pitch
    is_harmony: bool = False  # realized chord symbols (ABC "G", "Am7" ...), used as accompaniment

    @property
    def median_pitch(self) -> float:
        return float(np.median(self.notes[:, 2]))


@dataclass
class PieceScore:
    ref: PieceRef
    parts: list[ScorePart]
    length_ql: float
    tonic: str  # pitch-class name, e.g. "F#", "Bb"
    mode: str  # "major" | "minor"
    tempo_qpm: float | None = None  # first metronome mark, if the score has one
    meta: dict = field(default_factory=dict)

    @property
    def melodic_parts(self) -> list[ScorePart]:
        return [p for p in self.parts if not p.is_harmony]


def _pitch_name(p) -> str:
    return p.name.replace("-", "b")


def parse_piece(ref: PieceRef) -> PieceScore:
    """Parse one piece; raise PieceError (with the reason) for anything unusable."""
    import music21
    from music21 import converter, harmony, stream, tempo

    path = Path(ref.path)
    if not path.is_file():
        raise PieceError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise PieceError("empty file")
    warnings.simplefilter("ignore")
    try:
        kw = {"number": ref.number} if ref.number is not None else {}
        s = converter.parse(str(path), **kw)
    except Exception as e:  # music21 raises many types for malformed input
        raise PieceError(f"cannot parse as music ({type(e).__name__}: {str(e)[:200]})") from None
    if isinstance(s, stream.Opus):
        if not s.scores:
            raise PieceError("file holds no scores")
        s = s.scores[0]
    if not isinstance(s, stream.Score):
        sc = stream.Score()
        sc.insert(0, s)
        s = sc
    # Repeats give folk tunes their AABB form; expanding a long movement costs seconds
    # and adds little, so only short scores are expanded.
    if len(s.flatten().notes) < 3000:
        try:
            s = s.expandRepeats()
        except Exception:
            pass  # inconsistent repeat marks: render as written

    parts_in = list(s.parts) or [s]
    parts: list[ScorePart] = []
    for i, part in enumerate(parts_in):
        rows: list[list[float]] = []
        chords = []
        open_ties: dict[int, int] = {}  # MIDI pitch -> row of the note its tie continues
        for n in part.flatten().notes:
            if isinstance(n, harmony.ChordSymbol):
                if not isinstance(n, harmony.NoChord) and n.pitches:
                    chords.append((float(n.offset), [p.midi for p in n.pitches]))
                continue
            ql = float(n.duration.quarterLength)
            if ql <= 0 or not hasattr(n, "pitches"):
                continue  # grace notes, unpitched percussion
            on = float(n.offset)
            subs = n.notes if hasattr(n, "notes") and not hasattr(n, "pitch") else (n,)
            for sub in subs:
                midi = sub.pitch.midi
                tie = (sub.tie or n.tie).type if (sub.tie or n.tie) is not None else None
                # music21's stripTies is O(n^2) here (seconds per part); ties are merged in one pass
                if tie in ("continue", "stop") and midi in open_ties:
                    row = rows[open_ties[midi]]
                    row[1] = on + ql - row[0]
                    if tie == "stop":
                        del open_ties[midi]
                    continue
                rows.append([on, ql, float(midi)])
                if tie in ("start", "continue"):
                    open_ties[midi] = len(rows) - 1
        if rows:
            parts.append(ScorePart(part.partName or f"part{i + 1}", np.asarray(rows, dtype=np.float64)))
        if chords:
            parts.append(_realize_chords(chords, float(s.highestTime)))
    if not any(not p.is_harmony for p in parts):
        raise PieceError("no pitched notes found")

    length = float(max(p.notes[:, 0].max() + p.notes[:, 1].max() for p in parts))
    try:
        k = s.analyze("key")
        tonic, mode = _pitch_name(k.tonic), (k.mode if k.mode in ("major", "minor") else "major")
    except Exception:
        tonic, mode = "C", "major"
    marks = s.flatten().getElementsByClass(tempo.MetronomeMark)
    qpm = None
    for mm in marks:
        try:
            q = float(mm.getQuarterBPM())
        except Exception:
            continue
        if 20 <= q <= 320:
            qpm = q
            break
    return PieceScore(ref, parts, length, tonic, mode, qpm, {"music21": music21.__version__})


def _realize_chords(chords: list[tuple[float, list[int]]], end: float) -> ScorePart:
    """Chord symbols -> held block chords voiced between C3 and G4."""
    rows = []
    for j, (on, pitches) in enumerate(chords):
        off = chords[j + 1][0] if j + 1 < len(chords) else end
        if off <= on:
            continue
        for m in pitches:
            while m < 48:
                m += 12
            while m > 67:
                m -= 12
            rows.append((on, off - on, float(m)))
    return ScorePart("chords", np.asarray(rows or [(0.0, 0.0, 60.0)], dtype=np.float64), is_harmony=True)
