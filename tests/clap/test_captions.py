import re

import numpy as np
import pytest

from dittomusic.clap.captions import (BY_ID, COLLECTION_WORDS, FAMILY_WORDS, INSTRUMENT_WORDS, MODE_WORDS, TEMPLATES,
                                      TEMPO_WORDS, TREND_WORDS, CaptionConfig, build_captions, loudness_trend, matches,
                                      read_captions)
from dittomusic.errors import DittoError

HELD_WORDS = [w for table in (COLLECTION_WORDS, INSTRUMENT_WORDS, FAMILY_WORDS, TEMPO_WORDS, MODE_WORDS, TREND_WORDS)
              for _, held in table.values() for w in held]


@pytest.fixture(scope="module")
def table(synth):
    return read_captions(synth[1])


def _texts(table, split, key):
    return [table["texts"][i] for ids in table["splits"][split][key] for i in ids]


def test_captions_are_diverse(table):
    train = table["splits"]["train"]
    assert all(len(set(ids)) == 5 for ids in train["train"])  # 5 distinct phrasings per clip
    texts = _texts(table, "train", "train")
    assert len(set(texts)) > 0.6 * len(texts)
    used = {t.id for t in TEMPLATES if not t.heldout if any(t.pattern().match(x) for x in texts)}
    assert used == {t.id for t in TEMPLATES if not t.heldout}
    joined = " ".join(texts).lower()
    # instrument names, families, tempo words and BPM, keys, collections, dynamics all show up
    for word in ("bpm", "major", "minor", "chorale", "louder", "softer", "flute", "woodwind", "piece in", "the key of"):
        assert word in joined, word
    assert any(len(x.split()) <= 3 for x in texts)  # partial descriptions
    assert re.search(r"\b[A-G](-sharp|-flat|#|b) (major|minor)\b", " ".join(texts))  # accidentals, spelled out or not


def test_held_out_phrasings_never_appear_in_training_captions(table):
    train_texts = _texts(table, "train", "train")
    for t in (t for t in TEMPLATES if t.heldout):
        assert not any(t.pattern().match(x) for x in train_texts), t.id
    for w in HELD_WORDS:
        rx = re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE)
        assert not any(rx.search(x) for x in train_texts), w
    # ... and they are what the eval uses
    held = _texts(table, "test", "heldout_all")
    for t in (t for t in TEMPLATES if t.heldout):
        assert any(t.pattern().match(x) for x in held), t.id
    assert all(BY_ID["h_recording"].pattern().match(x) for x in _texts(table, "test", "heldout"))


def test_every_caption_truthfully_describes_its_clip_and_not_every_clip(table):
    cons = np.asarray(table["constraints"], dtype=np.int64)
    for split, key in (("train", "train"), ("test", "seen"), ("test", "heldout_all")):
        s = table["splits"][split]
        attrs = np.asarray(s["attrs"], dtype=np.int64)
        for i, ids in enumerate(s[key]):
            assert matches(cons[ids], attrs[i:i + 1]).all(), [table["texts"][j] for j in ids]
    s = table["splits"]["test"]
    full = cons[[ids[0] for ids in s["seen"]]]
    m = matches(full, np.asarray(s["attrs"], dtype=np.int64))
    assert m.mean() < 0.5  # a full description singles out few clips


def test_captions_are_deterministic(synth, table):
    again = build_captions(synth[0], CaptionConfig(), progress=False)
    assert again["texts"] == table["texts"] and again["splits"] == table["splits"]
    other = build_captions(synth[0], CaptionConfig(seed=1), progress=False)
    assert other["texts"] != table["texts"]


def test_loudness_trend_reads_the_clip():
    t = np.linspace(0, 1, 200)
    base = np.full((32, 200), -0.2)
    assert loudness_trend(base + 0.15 * t) == "rising"
    assert loudness_trend(base - 0.15 * t) == "falling"
    assert loudness_trend(base + 0.01 * np.sin(20 * t)) == "steady"


def test_missing_or_bad_caption_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DittoError, match="run `dittomusic clap captions` first"):
        read_captions(tmp_path)
    (tmp_path / "captions.json").write_text("{\"version\": 7}")
    with pytest.raises(DittoError, match="not a dittomusic caption table"):
        read_captions(tmp_path)


def test_embeddings_of_other_captions_are_refused(synth, tmp_path):
    import shutil

    from dittomusic.clap.train import load_text_embeddings

    shutil.copy(synth[1] / "text_embeddings.safetensors", tmp_path / "text_embeddings.safetensors")
    table = read_captions(synth[1])
    table["texts_sha1"] = "0" * 40
    with pytest.raises(DittoError, match="does not belong to the captions"):
        load_text_embeddings(tmp_path, table)
