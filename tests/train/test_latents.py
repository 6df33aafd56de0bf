"""The latent cache: the crops' latents encoded once, read back for latent diffusion training."""

import json

import numpy as np
import pytest
import torch

from dittomusic.data.dataset import MelDataset
from dittomusic.errors import DittoError
from dittomusic.train.autoencoder import export_autoencoder, load_autoencoder, train_autoencoder
from dittomusic.train.base import CKPT, TrainConfig, train
from dittomusic.train.latents import ARRAY, META, LatentCache, build_latent_cache

from .test_autoencoder import _cfg as ae_cfg

LATENT_DIT = {"width": 32, "depth": 2, "heads": 2, "patch_frames": 1, "denoise_head": 0}


@pytest.fixture
def tiny_ae(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    train_autoencoder(ae_cfg(root, tmp_path / "ae", steps=2), progress=False)
    return root, export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")


def test_cache_holds_each_epochs_crops_and_resumes_after_a_kill(tiny_ae, tmp_path, monkeypatch):
    root, ae_file = tiny_ae
    ae, _ = load_autoencoder(ae_file)
    ds = MelDataset(root, "train", seed=3)

    # a kill after the first chunk: nothing complete appears, and a rerun finishes the same array
    calls = {"n": 0}
    real_encode = type(ae).encode

    def dying_encode(self, mel):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_encode(self, mel)

    monkeypatch.setattr(type(ae), "encode", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        build_latent_cache(ae_file, root, tmp_path / "c", epochs=2, seed=3, batch=4, progress=False)
    assert not (tmp_path / "c" / ARRAY).exists()
    monkeypatch.setattr(type(ae), "encode", real_encode)
    build_latent_cache(ae_file, root, tmp_path / "c", epochs=2, seed=3, batch=4, progress=False)
    assert json.loads((tmp_path / "c" / META).read_text())["complete"]

    cache = LatentCache(tmp_path / "c", ae_file, ds, seed=3)
    for e in (0, 1):
        ds.set_epoch(e)
        idx = [0, len(ds) - 1]
        want = ae.encode(torch.stack([ds[i]["mel"] for i in idx]))
        torch.testing.assert_close(cache.get(idx, [e, e]), want, rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(cache.get(idx, [e + 2, e + 4]), want, rtol=2e-3, atol=2e-3)  # cycles
    ds.set_epoch(0)
    e0 = ae.encode(ds[0]["mel"][None])
    assert (cache.get([0], [1]) - e0).abs().max() > 1e-2  # another epoch's crop, not a copy

    with pytest.raises(DittoError, match="another seed"):
        LatentCache(tmp_path / "c", ae_file, MelDataset(root, "train", seed=4), seed=4)
    with pytest.raises(DittoError, match="no complete latent cache"):
        LatentCache(tmp_path / "missing", ae_file, ds, seed=3)


def test_training_from_the_cache_follows_the_encoder_run(tiny_ae, tmp_path):
    root, ae_file = tiny_ae
    build_latent_cache(ae_file, root, tmp_path / "c", epochs=1, seed=0, progress=False)
    common = dict(data=str(root), steps=3, batch_size=4, warmup=1, log_every=1, val_every=100, val_clips=4,
                  autoencoder=str(ae_file), model=LATENT_DIT)
    train(TrainConfig(out=str(tmp_path / "enc"), **common), progress=False)
    train(TrainConfig(out=str(tmp_path / "cached"), latent_cache=str(tmp_path / "c"), **common), progress=False)

    def losses(run):
        from dittomusic.checkpoint import load_tensors

        return [h["loss"] for h in load_tensors(run / CKPT)[1]["history"] if "loss" in h]

    np.testing.assert_allclose(losses(tmp_path / "cached"), losses(tmp_path / "enc"), rtol=5e-3)
    with pytest.raises(DittoError, match="needs --autoencoder"):
        train(TrainConfig(**{**common, "autoencoder": None}, out=str(tmp_path / "x"),
                          latent_cache=str(tmp_path / "c")), progress=False)
