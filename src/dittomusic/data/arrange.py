"""Randomized but seeded arrangements: instruments per part, transposition, tempo, dynamics.

Everything random comes from one numpy Generator, so (piece, variant, seed) always gives
the same arrangement. Dynamics follow a random envelope (crescendi, swells, dips) so the
data spans the loudness shapes that intensity control later asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dittomusic.data.score import PieceScore


@dataclass(frozen=True)
class Instrument:
    name: str
    program: int  # General MIDI program, 0-based
    family: str
    low: int  # comfortable MIDI range
    high: int

    @property
    def center(self) -> float:
        return (self.low + self.high) / 2


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("piano", 0, "keyboard", 21, 108),
    Instrument("harpsichord", 6, "keyboard", 29, 89),
    Instrument("church organ", 19, "organ", 24, 96),
    Instrument("reed organ", 20, "organ", 36, 96),
    Instrument("accordion", 21, "organ", 53, 89),
    Instrument("harmonica", 22, "organ", 60, 84),
    Instrument("violin", 40, "strings", 55, 103),
    Instrument("fiddle", 110, "strings", 55, 96),
    Instrument("viola", 41, "strings", 48, 88),
    Instrument("cello", 42, "strings", 36, 76),
    Instrument("contrabass", 43, "strings", 28, 67),
    Instrument("string ensemble", 48, "strings", 28, 96),
    Instrument("trumpet", 56, "brass", 54, 84),
    Instrument("french horn", 60, "brass", 41, 77),
    Instrument("trombone", 57, "brass", 40, 72),
    Instrument("tuba", 58, "brass", 28, 58),
    Instrument("flute", 73, "woodwinds", 60, 96),
    Instrument("recorder", 74, "woodwinds", 60, 96),
    Instrument("tin whistle", 78, "woodwinds", 62, 98),
    Instrument("oboe", 68, "woodwinds", 58, 91),
    Instrument("clarinet", 71, "woodwinds", 50, 91),
    Instrument("bassoon", 70, "woodwinds", 34, 75),
    Instrument("acoustic guitar", 24, "plucked", 40, 83),
    Instrument("harp", 46, "plucked", 24, 103),
    Instrument("banjo", 105, "plucked", 48, 84),
    Instrument("vibraphone", 11, "mallets", 53, 89),
    Instrument("marimba", 12, "mallets", 45, 96),
    Instrument("choir", 52, "choir", 36, 84),
)
BY_NAME = {i.name: i for i in INSTRUMENTS}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(i.family for i in INSTRUMENTS))

# Per collection: how parts get instruments ("family:<f>" = one family voiced by register,
# "single:<name>" = every part on one instrument, "mixed" = any instrument per part),
# with weights; and the quarter-note tempo range used when the score has no tempo mark.
STYLE: dict[str, dict] = {
    "chorale": dict(tempo=(60, 96), ensembles={
        "family:choir": 2, "single:church organ": 2, "family:strings": 2, "family:brass": 1.5,
        "family:woodwinds": 1, "single:piano": 1, "single:harpsichord": 0.5, "mixed": 0.5}),
    "renaissance polyphony": dict(tempo=(100, 160), ensembles={
        "family:choir": 2, "family:strings": 1.5, "family:woodwinds": 1.5, "family:brass": 1,
        "single:church organ": 1, "single:harp": 0.5, "single:acoustic guitar": 0.5, "mixed": 0.5}),
    "medieval polyphony": dict(tempo=(90, 150), ensembles={
        "family:woodwinds": 2, "single:harp": 1.5, "family:choir": 1, "family:strings": 1,
        "single:reed organ": 1, "single:acoustic guitar": 1, "mixed": 1}),
    "Irish folk tune": dict(tempo=(120, 200), lead=(
        "fiddle", "violin", "flute", "tin whistle", "accordion", "banjo", "harmonica", "piano",
        "acoustic guitar", "harp", "clarinet", "marimba"),
        accompaniment=("acoustic guitar", "piano", "harp", "accordion", "string ensemble")),
    "folk song": dict(tempo=(80, 150), lead=(
        "flute", "recorder", "clarinet", "oboe", "violin", "piano", "acoustic guitar", "accordion",
        "harmonica", "vibraphone", "marimba", "choir", "trumpet", "harp"),
        accompaniment=("acoustic guitar", "piano", "harp", "string ensemble", "church organ")),
    "classical string quartet": dict(tempo=(72, 152), ensembles={
        "family:strings": 4, "family:woodwinds": 1.5, "family:brass": 1, "single:piano": 1,
        "single:harpsichord": 0.5, "mixed": 1}),
}
DEFAULT_STYLE = dict(tempo=(70, 150), ensembles={
    "family:strings": 2, "family:woodwinds": 1, "family:brass": 1, "single:piano": 2, "mixed": 1},
    lead=("piano", "violin", "flute", "clarinet", "acoustic guitar"),
    accompaniment=("piano", "acoustic guitar", "string ensemble"))

TEMPO_BUCKETS: tuple[tuple[str, float], ...] = (("slow", 80), ("moderate", 120), ("fast", 160), ("very fast", 1e9))


def tempo_bucket(bpm: float) -> str:
    for name, upper in TEMPO_BUCKETS:
        if bpm < upper:
            return name
    return TEMPO_BUCKETS[-1][0]


PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_PC_INDEX = {**{n: i for i, n in enumerate(PITCH_CLASSES)},
             "Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "B#": 0, "E#": 5, "Fb": 4}


def transpose_name(tonic: str, semitones: int) -> str:
    base = _PC_INDEX.get(tonic[:2], _PC_INDEX.get(tonic[:1], 0))
    return PITCH_CLASSES[(base + semitones) % 12]


@dataclass
class RenderPart:
    instrument: Instrument
    notes: np.ndarray  # [N, 4]: onset s, duration s, MIDI pitch, velocity


@dataclass
class Arrangement:
    parts: list[RenderPart]
    seconds: float  # length to render (notes are already shifted so the window starts at 0)
    tempo_bpm: int
    transpose: int
    tonic: str
    mode: str
    window_start: float  # seconds into the piece
    dynamics: str
    gain_db: float

    @property
    def instruments(self) -> list[str]:
        return list(dict.fromkeys(p.instrument.name for p in self.parts))

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(p.instrument.family for p in self.parts))


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    w = np.asarray([weights[k] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), p=w / w.sum())]


def _by_register(rng, pool: list[Instrument], median: float) -> Instrument:
    fits = [i for i in pool if i.low + 3 <= median <= i.high - 3]
    if fits and rng.random() < 0.4:
        return fits[rng.integers(len(fits))]
    if fits:  # usually the instrument whose range is centred nearest: cello on the bass line
        return min(fits, key=lambda i: abs(i.center - median))
    return min(pool, key=lambda i: abs(i.center - median))


def _dynamics_curve(rng, t: np.ndarray, seconds: float) -> tuple[np.ndarray, str]:
    """Velocity offsets over time: a global shape plus slow phrase-level wandering."""
    shape = str(rng.choice(["flat", "crescendo", "decrescendo", "swell", "dip", "wander"]))
    depth = rng.uniform(12, 36)
    u = np.clip(t / max(seconds, 1e-6), 0, 1)
    base = {
        "flat": np.zeros_like(u),
        "crescendo": (u - 0.5),
        "decrescendo": (0.5 - u),
        "swell": 0.5 - np.abs(u - 0.5) * 2 + 0.0,
        "dip": np.abs(u - 0.5) * 2 - 0.5,
        "wander": np.zeros_like(u),
    }[shape]
    k = np.arange(1, 4)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    periods = rng.uniform(4, 16, size=3)
    wander = sum(np.sin(2 * np.pi * t / periods[i] + phases[i]) / k[i] for i in range(3)) / 1.8
    amount = 1.0 if shape == "wander" else 0.3
    return depth * (base + amount * 0.5 * wander), shape


def arrange(score: PieceScore, rng: np.random.Generator, max_seconds: float = 60.0) -> Arrangement:
    style = STYLE.get(score.ref.collection, DEFAULT_STYLE)
    melodic = score.melodic_parts
    all_notes = np.concatenate([p.notes for p in melodic])
    lo, hi = all_notes[:, 2].min(), all_notes[:, 2].max()
    # transpose within +-6 semitones, never leaving the piano's range
    choices = [k for k in range(-5, 7) if lo + k >= 28 and hi + k <= 103] or [0]
    transpose = int(rng.choice(choices))

    lo_t, hi_t = style["tempo"]
    if score.tempo_qpm:
        bpm = score.tempo_qpm * rng.uniform(0.85, 1.15)
    else:
        bpm = rng.uniform(lo_t, hi_t)
    bpm = int(round(float(np.clip(bpm, 40, 240))))
    sec_per_ql = 60.0 / bpm

    # instruments
    assigned: list[tuple[object, Instrument]] = []
    if len(melodic) == 1 and "lead" in style:
        lead = BY_NAME[str(rng.choice(style["lead"]))]
        assigned.append((melodic[0], lead))
        harmony = [p for p in score.parts if p.is_harmony]
        if harmony and rng.random() < 0.75:
            acc = [BY_NAME[n] for n in style["accompaniment"] if n != lead.name]
            assigned.append((harmony[0], acc[rng.integers(len(acc))]))
    else:
        ens = _choose(rng, style.get("ensembles", DEFAULT_STYLE["ensembles"]))
        kind, _, arg = ens.partition(":")
        for p in melodic:
            if kind == "single":
                inst = BY_NAME[arg]
            elif kind == "family":
                inst = _by_register(rng, [i for i in INSTRUMENTS if i.family == arg], p.median_pitch + transpose)
            else:
                inst = _by_register(rng, list(INSTRUMENTS), p.median_pitch + transpose)
            assigned.append((p, inst))

    # time window: long pieces are cut to a random window starting at a note onset
    total = score.length_ql * sec_per_ql
    start = 0.0
    if total > max_seconds:
        onsets = np.unique(all_notes[:, 0]) * sec_per_ql
        cands = onsets[onsets <= total - max_seconds]
        start = float(cands[rng.integers(len(cands))]) if len(cands) else 0.0
    seconds = min(max_seconds, total - start + 1.0)  # +1 s for release tails

    dyn_t = np.linspace(0, seconds, 256)
    dyn, dyn_name = _dynamics_curve(rng, dyn_t, seconds)
    base_vel = rng.uniform(60, 100)
    parts: list[RenderPart] = []
    top = max(range(len(assigned)), key=lambda j: assigned[j][0].median_pitch) if assigned else 0
    for j, (sp, inst) in enumerate(assigned):
        n = sp.notes
        on = n[:, 0] * sec_per_ql - start
        off = on + n[:, 1] * sec_per_ql
        keep = (on >= 0) & (on < seconds - 0.05)
        on, off, pitch = on[keep], np.minimum(off[keep], seconds), n[keep, 2] + transpose
        if len(on) == 0:
            continue
        vel = base_vel + np.interp(on, dyn_t, dyn) + rng.normal(0, 4, size=len(on))
        vel += 6 if j == top else (-8 if sp.is_harmony else 0)
        vel = np.clip(np.round(vel), 15, 127)
        parts.append(RenderPart(inst, np.stack([on, off - on, pitch, vel], axis=1)))
    return Arrangement(parts, float(seconds), bpm, transpose, transpose_name(score.tonic, transpose),
                       score.mode, float(start), dyn_name, float(rng.uniform(-6, 6)))


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def caption(collection: str, arr: Arrangement) -> str:
    bucket = tempo_bucket(arr.tempo_bpm)
    word = {"slow": "slow", "moderate": "moderate", "fast": "lively", "very fast": "very fast"}[bucket]
    article = "An" if word[0] in "aeiou" else "A"
    return (f"{article} {word} {collection} in {arr.tonic} {arr.mode}, played by "
            f"{_join(arr.instruments)}, at {arr.tempo_bpm} BPM.")
