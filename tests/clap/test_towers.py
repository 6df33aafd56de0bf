"""The second audio tower (conv2d) behind the second-opinion CLAP, and where its bundled file is looked for."""

import pytest
import torch
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.clap.model import AudioTower2D, ClapModelConfig, DomainClap, load_clap
from dittomusic.errors import DittoError

from .conftest import TINY_CLAP, make_tiny_clap


def test_the_conv2d_tower_is_another_architecture_and_differentiable():
    torch.manual_seed(0)
    one = DomainClap(ClapModelConfig(n_mels=160, **TINY_CLAP))
    two = DomainClap(ClapModelConfig(n_mels=160, audio_tower="conv2d", **TINY_CLAP))
    assert isinstance(two.audio, AudioTower2D) and not isinstance(one.audio, AudioTower2D)
    assert any(p.dim() == 4 for p in two.audio.parameters()) and not any(p.dim() == 4 for p in one.audio.parameters())
    mel = (torch.rand(3, 160, 100) * 2 - 1).requires_grad_(True)
    a = two.embed_audio(mel)
    assert a.shape == (3, TINY_CLAP["embed_dim"])
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    a[:, 0].sum().backward()
    assert torch.isfinite(mel.grad).all() and mel.grad.abs().sum() > 0
    # any clip length, like the conv1d tower
    assert two.embed_audio(torch.zeros(1, 160, 37)).shape == (1, TINY_CLAP["embed_dim"])


def test_an_unknown_tower_is_a_clear_error():
    with pytest.raises(DittoError, match="unknown CLAP audio tower 'rnn'; choose from conv1d, conv2d"):
        ClapModelConfig.from_dict({"audio_tower": "rnn"})


def test_a_conv2d_clap_round_trips_through_its_file(tmp_path):
    path = make_tiny_clap(tmp_path / "c2.safetensors", "conv2d", seed=1)
    model, meta = load_clap(path)
    assert model.cfg.audio_tower == "conv2d" and isinstance(model.audio, AudioTower2D)


def test_clap_train_takes_the_audio_tower(synth, tmp_path):
    root, caps = synth
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["clap", "train", "--data", str(root), "--captions", str(caps), "--out", str(run),
                                 "--steps", "2", "--batch-size", "8", "--crop-frames", "48", "--warmup", "1",
                                 "--val-every", "2", "--val-clips", "8", "--channels", "16", "--layers", "1",
                                 "--heads", "2", "--embed-dim", "32", "--audio-tower", "conv2d", "--seed", "1"])
    assert r.exit_code == 0, r.output
    model, meta = load_clap(run)
    assert model.cfg.audio_tower == "conv2d" and meta["train_config"]["seed"] == 1


def test_a_missing_bundled_second_clap_names_its_training_command(monkeypatch, tmp_path):
    import dittomusic.models.loading as loading
    from dittomusic.clap.scorer import load_scorer

    monkeypatch.setattr(loading, "bundled_path", lambda name: tmp_path / f"{name}.safetensors")
    with pytest.raises(DittoError, match=r"no bundled second-opinion CLAP .*scripts/clap\.sh all2 && "
                                         r"scripts/clap\.sh install2.*--judge-clap PATH"):
        load_scorer(bundled="clap2")
    make_tiny_clap(tmp_path / "clap2.safetensors", "conv2d")
    assert load_scorer(bundled="clap2").model.cfg.audio_tower == "conv2d"
