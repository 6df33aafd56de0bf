import json

import numpy as np
import pytest
import torch

from dittomusic.checkpoint import save_tensors
from dittomusic.clap.model import ClapModelConfig, DomainClap
from dittomusic.clap.scorer import ClapScorer, DomainClapScorer, HFClapScorer, load_scorer
from dittomusic.errors import DittoError

from .conftest import TINY_CLAP, WordHashEncoder


@pytest.fixture(scope="module")
def domain_clap(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ClapModelConfig(n_mels=160, text_dim=WordHashEncoder.dim, text_encoder=WordHashEncoder.name, **TINY_CLAP)
    path = tmp_path_factory.mktemp("clap") / "clap.safetensors"
    save_tensors(path, {k: v.half() for k, v in DomainClap(cfg).state_dict().items()},
                 {"kind": "clap", "clap_config": cfg.to_dict()})
    return path


def _tiny_hf_clap(folder, fusion=False):
    """A random transformers CLAP small enough for a unit test, with its processor, saved like a Hub folder."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in [chr(i) for i in range(33, 127)] + ["\u0120"]:  # byte-level BPE's characters, no merges
        vocab.setdefault(c, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    fe = ClapFeatureExtractor(feature_size=16, sampling_rate=48000, hop_length=480, max_length_s=2,
                              fft_window_size=1024, truncation="fusion" if fusion else "rand_trunc")
    torch.manual_seed(0)
    cfg = ClapConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64),
                     audio_config=dict(spec_size=64, num_mel_bins=16, hidden_size=16, patch_embeds_hidden_size=8,
                                       depths=[1, 1], num_attention_heads=[2, 2], window_size=4, patch_size=4,
                                       patch_stride=[4, 4], enable_fusion=fusion),
                     projection_dim=16)
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(folder))
    ClapModel(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def hf_clap(tmp_path_factory):
    return _tiny_hf_clap(tmp_path_factory.mktemp("hfclap") / "tiny-clap")


def _grad_of(scorer, texts):
    mel = (torch.rand(2, 160, 120) * 1.2 - 0.9).requires_grad_(True)
    s = scorer.score(mel, texts)
    assert s.shape == (2, len(texts)) and (s.abs() <= 1 + 1e-5).all()
    s[:, 0].sum().backward()
    return s, mel.grad


def test_domain_scorer_is_differentiable_in_the_mel(domain_clap):
    sc = DomainClapScorer(domain_clap, encoder=WordHashEncoder())
    assert isinstance(sc, ClapScorer)
    s, g = _grad_of(sc, ["A slow chorale on church organ.", "A lively Irish jig on fiddle."])
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # the same clip scores the same through the scorer and the model (prompts cached)
    again = sc.score(torch.zeros(1, 160, 64), ["A slow chorale on church organ."])
    assert again.shape == (1, 1) and len(sc._cache) == 2


def test_domain_scorer_refuses_another_sentence_encoder(domain_clap):
    class Other(WordHashEncoder):
        name = "some-other-encoder"

    with pytest.raises(DittoError, match="trained on word-hash-test sentence embeddings, not some-other-encoder"):
        DomainClapScorer(domain_clap, encoder=Other()).score(torch.zeros(1, 160, 64), ["a chorale"])


def test_transformers_clap_loads_from_a_local_folder_and_is_differentiable(hf_clap):
    sc = load_scorer(hf_clap)
    assert isinstance(sc, HFClapScorer) and isinstance(sc, ClapScorer)
    s, g = _grad_of(sc, ["a chorale on church organ", "an irish jig", "piano"])
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    x = sc.input_features(torch.zeros(1, 160, 120))
    assert x.shape == (1, 1, 201, 16)  # repeat-padded to the extractor's 2 s


def test_transformers_clap_with_fusion(tmp_path):
    sc = HFClapScorer(_tiny_hf_clap(tmp_path / "fusion", fusion=True))
    assert sc.input_features(torch.zeros(2, 160, 50)).shape == (2, 4, 201, 16)
    assert sc.score(torch.zeros(2, 160, 50), ["organ"]).shape == (2, 1)


def test_our_mel_maps_onto_the_clap_feature_extractor(hf_clap, rendered_audio):
    """The mel -> CLAP-mel map against the extractor run on the same audio resampled to 48 kHz."""
    from scipy.signal import resample_poly
    from transformers import ClapFeatureExtractor

    from dittomusic.audio.mel import mel_spectrogram

    wav = rendered_audio[:22050 * 5]
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=5,
                              fft_window_size=1024, truncation="rand_trunc")
    sc = HFClapScorer(hf_clap)
    sc._map = torch.from_numpy(sc._mel_map(fe, fe.mel_filters_slaney))
    sc.max_frames = 501
    ref = fe(resample_poly(wav, 320, 147).astype(np.float32), sampling_rate=48000,
             return_tensors="pt")["input_features"][0, 0]
    mine = sc.input_features(torch.from_numpy(mel_spectrogram(wav)))[0, 0]
    t = min(len(ref), len(mine)) - 5
    diff = (mine[:t, 2:56] - ref[:t, 2:56])  # bands below ~9 kHz (ours stop at 11 kHz), past the lowest two
    assert abs(float(diff.mean())) < 1.5, float(diff.mean())
    assert float(diff.abs().mean()) < 3.0
    assert np.corrcoef(mine[:t].flatten(), ref[:t].flatten())[0, 1] > 0.95


def test_the_bundled_clap_is_the_default_or_a_clear_error(domain_clap, monkeypatch, tmp_path):
    import dittomusic.models.loading as loading

    monkeypatch.setattr(loading, "bundled_path", lambda name: tmp_path / f"{name}.safetensors")
    with pytest.raises(DittoError, match="no bundled CLAP .* pass --clap PATH"):
        load_scorer()
    (tmp_path / "clap.safetensors").write_bytes(domain_clap.read_bytes())
    assert isinstance(load_scorer(), DomainClapScorer)


def test_bad_scorer_inputs_are_clear_errors(tmp_path, domain_clap, hf_clap):
    with pytest.raises(DittoError, match="CLAP not found"):
        load_scorer(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DittoError, match="neither a CLAP file nor a CLAP training run"):
        load_scorer(empty)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DittoError, match="not a CLAP"):
        load_scorer(bert)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((hf_clap / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(DittoError, match="no .safetensors weights"):
        load_scorer(pickled)
    junk = tmp_path / "junk.safetensors"
    junk.write_text("hello")
    with pytest.raises(DittoError, match="not a dittomusic safetensors checkpoint"):
        load_scorer(junk)
    from dittomusic.models.loading import bundled_path

    with pytest.raises(DittoError, match="carries no CLAP config"):
        load_scorer(bundled_path("classifier"))
    with pytest.raises(DittoError, match="neither a dittomusic CLAP"):
        load_scorer(tmp_path / "bert" / "config.json")
    sc = DomainClapScorer(domain_clap, encoder=WordHashEncoder())
    with pytest.raises(DittoError, match=r"\[batch, 160, frames\] mels, got shape \[1, 80, 64\]"):
        sc.score(torch.zeros(1, 80, 64), ["x"])
