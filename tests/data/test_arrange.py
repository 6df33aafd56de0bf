import numpy as np
import pytest

from dittomusic.data.arrange import BY_NAME, FAMILIES, arrange, caption, tempo_bucket, transpose_name
from dittomusic.data.score import parse_piece
from dittomusic.data.sources import PieceRef, music21_corpus_dir


@pytest.fixture(scope="module")
def chorale():
    path = music21_corpus_dir() / "bach/bwv66.6.mxl"
    return parse_piece(PieceRef("music21:bach/bwv66.6.mxl", str(path), "chorale"))


def _fingerprint(a):
    return (a.tempo_bpm, a.transpose, a.instruments, a.window_start, a.gain_db,
            [p.notes.tolist() for p in a.parts])


def test_same_seed_same_arrangement(chorale):
    a = arrange(chorale, np.random.default_rng(7))
    b = arrange(chorale, np.random.default_rng(7))
    assert _fingerprint(a) == _fingerprint(b)
    others = {tuple(map(str, _fingerprint(arrange(chorale, np.random.default_rng(s)))[:3])) for s in range(12)}
    assert len(others) > 6  # instruments, tempo and key really vary


def test_arrangement_is_well_formed(chorale):
    for s in range(20):
        a = arrange(chorale, np.random.default_rng(s), max_seconds=10.0)
        assert a.seconds <= 10.0 + 1e-9 and 40 <= a.tempo_bpm <= 240
        assert -5 <= a.transpose <= 6
        notes = np.concatenate([p.notes for p in a.parts])
        assert notes[:, 0].min() >= 0 and (notes[:, 0] + notes[:, 1]).max() <= a.seconds + 1e-6
        assert 15 <= notes[:, 3].min() and notes[:, 3].max() <= 127
        assert set(a.families) <= set(FAMILIES)
        assert a.tonic == transpose_name(chorale.tonic, a.transpose)
        text = caption("chorale", a)
        assert "chorale" in text and f"{a.tempo_bpm} BPM" in text and f"{a.tonic} {a.mode}" in text


def test_dynamics_envelope_spans_a_range(chorale):
    spans = []
    for s in range(10):
        v = np.concatenate([p.notes[:, 3] for p in arrange(chorale, np.random.default_rng(s)).parts])
        spans.append(v.max() - v.min())
    assert np.median(spans) > 15


def test_tempo_buckets_and_transposition_names():
    assert [tempo_bucket(b) for b in (60, 100, 130, 190)] == ["slow", "moderate", "fast", "very fast"]
    assert transpose_name("Bb", 2) == "C" and transpose_name("F#", -1) == "F"
    assert BY_NAME["cello"].family == "strings"
