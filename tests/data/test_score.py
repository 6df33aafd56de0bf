import numpy as np
import pytest

from dittomusic.data.score import parse_piece
from dittomusic.data.sources import PieceRef, music21_corpus_dir
from dittomusic.errors import PieceError


def _ref(path, collection="test", number=None):
    return PieceRef(f"t:{path}", str(path), collection, number)


def test_chorale_parts_and_tie_merging_match_music21():
    from music21 import converter

    path = music21_corpus_dir() / "bach/bwv66.6.mxl"
    sc = parse_piece(_ref(path, "chorale"))
    stripped = converter.parse(path).stripTies()
    assert [len(p.notes) for p in sc.parts] == [len(list(p.flatten().notes)) for p in stripped.parts]
    # merged durations equal music21's stripTies durations
    ref_dur = sorted(float(n.duration.quarterLength) for n in stripped.parts[0].flatten().notes)
    assert sorted(sc.parts[0].notes[:, 1].tolist()) == ref_dur
    assert sc.mode in ("major", "minor") and sc.tonic


def test_abc_tune_with_chords_gets_harmony_part(tmp_path):
    p = tmp_path / "tune.abc"
    p.write_text('X:1\nT:Test\nM:4/4\nL:1/8\nK:G\n"G"GABc dedB|"D"A2F2 D4|"G"GABc dedB|"C"c2"D"A2 "G"G4|]\n')
    sc = parse_piece(_ref(p))
    harm = [q for q in sc.parts if q.is_harmony]
    assert len(sc.melodic_parts) == 1 and len(harm) == 1
    assert harm[0].notes[:, 2].min() >= 48 and harm[0].notes[:, 2].max() <= 67
    assert sc.tonic == "G" and sc.mode == "major"


def test_abc_tune_selected_by_number(tmp_path):
    p = tmp_path / "two.abc"
    p.write_text("X:1\nT:one\nL:1/4\nK:C\nCDEF|\n\nX:2\nT:two\nL:1/4\nK:C\nGABc|cBAG|\n")
    a, b = parse_piece(_ref(p, number=1)), parse_piece(_ref(p, number=2))
    assert len(a.parts[0].notes) == 4 and len(b.parts[0].notes) == 8


@pytest.mark.parametrize("name,content,reason", [
    ("empty.mid", b"", "empty file"),
    ("corrupt.mid", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xff\x00\x90", "cannot parse"),
    ("notmusic.mid", b"%PDF-1.4 definitely not a MIDI file" * 10, "cannot parse"),
    ("notmusic.xml", b"<html><body>hello</body></html>", "(cannot parse|no pitched notes)"),
    ("rests.abc", b"X:1\nT:silence\nL:1/4\nK:C\nz4|z4|\n", "no pitched notes"),
])
def test_malformed_inputs_raise_piece_error_with_reason(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(PieceError, match=reason):
        parse_piece(_ref(p))


def test_missing_file(tmp_path):
    with pytest.raises(PieceError, match="not found"):
        parse_piece(_ref(tmp_path / "gone.mid"))
