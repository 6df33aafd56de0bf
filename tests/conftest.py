"""Shared fixtures: real rendered audio and a tiny dataset, both built inside the tests."""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from dittomusic.audio.mel import MelConfig

# Fuzzing budget (tests/fuzzing.py): "ci" is fixed and derandomized, so a run is reproducible and
# bounded; the per-example deadline is generous because CI shares its CPU, and a slower example
# is a finding. HYPOTHESIS_PROFILE=deep searches 50x longer with fresh random inputs.
settings.register_profile("ci", max_examples=40, deadline=timedelta(seconds=5), derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("deep", max_examples=2000, deadline=timedelta(seconds=5),
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _autograd_left_on():
    """A test (or a benchmark's main() run in-process) that switches autograd off globally fails here,
    instead of every later test that trains."""
    import torch

    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("this test left autograd switched off (torch.set_grad_enabled(False) outside a with block)")


@pytest.fixture(scope="session")
def mel_cfg() -> MelConfig:
    return MelConfig()


@pytest.fixture(scope="session")
def rendered_audio() -> np.ndarray:
    """~12 s of a Bach chorale rendered by FluidSynth: real music, not a synthetic tone."""
    from dittomusic.data.arrange import arrange
    from dittomusic.data.render import FluidRenderer
    from dittomusic.data.score import parse_piece
    from dittomusic.data.sources import PieceRef, music21_corpus_dir

    ref = PieceRef("music21:bach/bwv66.6.mxl", str(music21_corpus_dir() / "bach/bwv66.6.mxl"), "chorale")
    arr = arrange(parse_piece(ref), np.random.default_rng(1), max_seconds=12.0)
    return FluidRenderer().render(arr)


TINY = dict(hours=0.03, max_seconds=12.0, max_variants=1, val_frac=0.2, test_frac=0.2, workers=1,
            shard_clips=8, collections=["chorale", "Irish folk tune", "folk song"])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A dataset of ~2 minutes from three collections, built in-process."""
    from dittomusic.data.build import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("tiny") / "ds"
    summary = build_dataset(BuildConfig(out=str(out), **TINY), progress=False)
    return out, summary


def make_vocab() -> dict:
    from dittomusic.data.arrange import FAMILIES, INSTRUMENTS, TEMPO_BUCKETS

    return {"collections": ["chorale", "Irish folk tune", "folk song"], "families": list(FAMILIES),
            "instruments": [i.name for i in INSTRUMENTS], "tempo_buckets": [b for b, _ in TEMPO_BUCKETS],
            "modes": ["major", "minor"]}


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny random MelDiT saved as a release checkpoint (non-zero output layers)."""
    import torch

    from dittomusic.checkpoint import save_tensors
    from dittomusic.models import MelDiT, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig.for_vocab(make_vocab(), width=32, depth=2, heads=2, patch_frames=8, denoise_head=64)
    net = MelDiT(cfg)
    for m in (net.patch_out, net.ada_out, net.head[-1], *[b.ada for b in net.blocks]):
        torch.nn.init.normal_(m.weight, std=0.05)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_tensors(path, {k: v.half() for k, v in net.state_dict().items()},
                 {"kind": "base", "model_config": cfg.to_dict(), "schedule": "cosine"})
    return path


@pytest.fixture(scope="session")
def latent_teacher_path(tiny_dataset, tmp_path_factory):
    """A tiny random *latent* teacher (MelDiT over a 2x-downsampling autoencoder's latent), one release file."""
    import torch

    from dittomusic.checkpoint import save_tensors
    from dittomusic.data.dataset import TagVocab
    from dittomusic.models import MelDiT, ModelConfig
    from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder
    from dittomusic.models.loading import AE_PREFIX

    root, _ = tiny_dataset
    torch.manual_seed(1)
    ae = MelAutoencoder(AutoencoderConfig(n_mels=160, latent_channels=4, channels=[16, 16], blocks=1, groups=4))
    cfg = ModelConfig.for_vocab(TagVocab.load(root).to_dict(), n_mels=4, clip_frames=256, sigma_data=1.0,
                                width=32, depth=2, heads=2, patch_frames=8, denoise_head=64)
    net = MelDiT(cfg)
    for m in (net.patch_out, net.ada_out, net.head[-1], *[b.ada for b in net.blocks]):
        torch.nn.init.normal_(m.weight, std=0.05)
    tensors = {**net.state_dict(), **{AE_PREFIX + k: v for k, v in ae.state_dict().items()}}
    path = tmp_path_factory.mktemp("latent_teacher") / "latent.safetensors"
    save_tensors(path, {k: v.half() for k, v in tensors.items()},
                 {"kind": "base", "model_config": cfg.to_dict(), "schedule": "cosine",
                  "autoencoder": {"model_config": ae.cfg.to_dict()}})
    return path


TINY_VOCODER = {"dim": 32, "intermediate": 64, "layers": 2, "n_fft": 512}


@pytest.fixture(scope="session")
def tiny_pairs(tiny_dataset, tmp_path_factory):
    """The tiny dataset's train and val renders, re-rendered as paired audio (vocoder training data)."""
    from dittomusic.data.pairs import PairsConfig, build_pairs

    root, _ = tiny_dataset
    out = tmp_path_factory.mktemp("pairs") / "audio"
    summary = build_pairs(PairsConfig(data=str(root), out=str(out), hours=1.0, val_minutes=1.0, workers=1),
                          progress=False)
    return root, out, summary
