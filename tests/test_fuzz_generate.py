"""Fuzzing captions, tag names and tempos: only tags the model can be conditioned on, or a DittoError."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dittomusic.checkpoint import load_tensors
from dittomusic.generate import caption_to_tags, cond_tensors, make_tags, tags_from_options, tempo_to_bucket
from dittomusic.models.loading import bundled_path

from .fuzzing import accepts_or_refuses


@pytest.fixture(scope="module")
def vocab():
    return load_tensors(bundled_path())[1]["model_config"]["vocab"]  # the bundled model's tags


def words(vocab):
    known = [w for k in ("collections", "instruments", "tempo_buckets", "modes") for w in vocab[k]]
    return st.sampled_from(known + ["strings", "organ", "Irish", "reel", "120 bpm", "lively", "MAJOR", "jazz", ""])


def _usable(tags, vocab):
    """The tags index the model's embeddings (what Pipeline.cond does with them)."""
    if tags is not None:
        c = cond_tensors(tags, vocab, 1, "cpu")
        assert c["instruments"].shape == (1, len(vocab["instruments"]))


captions = st.text(max_size=80) | st.lists(st.text(max_size=6) | st.sampled_from(
    ["irish", "reel", "bach", "fiddle", "strings", "120bpm", "999 bpm", "١٢٠ bpm", "minor", "slow"]), max_size=10).map(" ".join)


@given(caption=captions)
@example("a reel at 19 bpm")  # below the 20-400 BPM the tempo parser accepts
def test_fuzz_captions(vocab, caption):
    _usable(accepts_or_refuses(caption_to_tags, caption, vocab), vocab)


@given(data=st.data())
def test_fuzz_tag_names(vocab, data):
    w = words(vocab) | st.text(max_size=12)
    coll, mode = data.draw(st.none() | w), data.draw(st.none() | w)
    insts = data.draw(st.none() | st.lists(w, max_size=4))
    tempo = data.draw(st.none() | w | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**9, 10**9))
    _usable(accepts_or_refuses(make_tags, vocab, coll, insts, tempo, mode), vocab)


@given(data=st.data())
def test_fuzz_cli_tag_options(vocab, data):
    w = words(vocab) | st.text(max_size=12)
    caption, coll, mode, tempo = (data.draw(st.none() | w | captions) for _ in range(4))
    insts = data.draw(st.none() | st.lists(w, max_size=4).map(",".join))
    _usable(accepts_or_refuses(tags_from_options, vocab, caption, coll, insts, tempo, mode, data.draw(st.booleans())), vocab)


@given(tempo=st.text(max_size=12) | st.floats(allow_nan=True, allow_infinity=True) | st.integers())
@example("1e400 bpm")
@example("nan")
def test_fuzz_tempo(vocab, tempo):
    b = accepts_or_refuses(tempo_to_bucket, tempo, vocab)
    assert b is None or b in vocab["tempo_buckets"]
