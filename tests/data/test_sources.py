from collections import Counter

import pytest

from dittomusic.data.sources import abc_tune_numbers, corpus_pieces, folder_pieces
from dittomusic.errors import DittoError


def test_corpus_has_the_six_collections_with_unique_ids():
    refs = corpus_pieces()
    counts = Counter(r.collection for r in refs)
    assert set(counts) == {"chorale", "renaissance polyphony", "medieval polyphony", "Irish folk tune",
                           "folk song", "classical string quartet"}
    assert all(n >= 40 for n in counts.values()), counts
    assert len({r.piece_id for r in refs}) == len(refs)
    # multi-tune ABC files become one piece per tune
    essen = [r for r in refs if "essenFolksong" in r.piece_id]
    assert len(essen) > 10 * len({r.path for r in essen})
    assert all(r.number is not None for r in essen)


def test_collection_filter():
    refs = corpus_pieces(["chorale"])
    assert refs and {r.collection for r in refs} == {"chorale"}


def test_abc_tune_numbers_dedupes(tmp_path):
    p = tmp_path / "t.abc"
    p.write_text("X:1\nT:a\nK:G\nGAB|\n\nX:2\nT:b\nK:D\nDEF|\n\nX:2\nT:dup\nK:C\nC|\n")
    assert abc_tune_numbers(p) == [1, 2]


def test_folder_pieces_collections_from_subfolders(tmp_path):
    (tmp_path / "reels").mkdir()
    (tmp_path / "reels" / "a.abc").write_text("X:1\nT:a\nK:G\nGABc|\n")
    (tmp_path / "b.mid").write_bytes(b"MThd")
    (tmp_path / "notes.txt").write_text("ignored")
    refs = {r.path.split("/")[-1]: r for r in folder_pieces(tmp_path)}
    assert set(refs) == {"a.abc", "b.mid"}
    assert refs["a.abc"].collection == "reels" and refs["b.mid"].collection == tmp_path.name
    assert {r.collection for r in folder_pieces(tmp_path, collection="mine")} == {"mine"}


def test_folder_pieces_errors(tmp_path):
    with pytest.raises(DittoError, match="not a directory"):
        folder_pieces(tmp_path / "nope")
    with pytest.raises(DittoError, match="no score files.*\\.mid"):
        folder_pieces(tmp_path)
