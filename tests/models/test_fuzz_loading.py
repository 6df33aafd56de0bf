"""Fuzzing model loading: the tiny model's weights under a model config (and tag vocabulary) with
fields drawn at random. Only a model that runs, or a DittoError."""

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.generate import Pipeline
from dittomusic.models.loading import load_model
from dittomusic.models.transformer import ModelConfig

from ..fuzzing import accepts_or_refuses, fewer, no_hang

FIELDS = list(ModelConfig.__dataclass_fields__)
odd_values = (st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([2**40, -2**40, 10**30])
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
              | st.lists(st.integers(0, 3), max_size=3) | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_tensors(tiny_model_path)


def vocab_edits(vocab):
    keys = ["collections", "instruments", "tempo_buckets", "modes"]
    return st.fixed_dictionaries({}, optional={k: st.lists(st.text(max_size=5) | st.integers(), max_size=4) | odd_values
                                               for k in keys}).map(lambda e: {**vocab, **e})


@fewer(30)
@given(data=st.data())
@example(data=None)  # the config as saved: must load and run
def test_fuzz_model_config(tiny, data):
    tensors, meta = tiny
    cfg = dict(meta["model_config"])
    if data is not None:
        for k in data.draw(st.lists(st.sampled_from(FIELDS + ["unknown"]), max_size=3, unique=True)):
            cfg[k] = data.draw(vocab_edits(cfg["vocab"]) if k == "vocab" else odd_values)
        if data.draw(st.booleans()):
            cfg = data.draw(odd_values)  # not even a dict
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.safetensors"
        save_tensors(p, tensors, {**meta, "model_config": cfg})
        with no_hang():
            loaded = accepts_or_refuses(load_model, p, "cpu")
            pipe = accepts_or_refuses(Pipeline, p, "cpu")
    if loaded is not None:
        model, _ = loaded
        c = model.cfg
        x = torch.randn(1, c.n_mels, 2 * c.patch_frames, generator=torch.Generator().manual_seed(0))
        out = model(x, torch.tensor([500]), model.null_cond(1))
        assert out.shape == x.shape and torch.isfinite(out).all()
    if pipe is not None:
        assert all(isinstance(pipe.vocab[k], list) for k in ("collections", "instruments", "tempo_buckets", "modes"))
