"""Load networks from safetensors checkpoints; the bundled base model is the default."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from dittomusic.checkpoint import BUNDLED, bundled_path, check_model_meta, load_tensors, model_file  # noqa: F401
from dittomusic.errors import DittoError
from dittomusic.models import Denoiser, build_denoiser, config_from_dict
from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder

AE_PREFIX = "autoencoder."  # a latent model's file holds its autoencoder under this prefix

_INITS = ("uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
          "trunc_normal_", "zeros_", "ones_", "constant_")


@contextlib.contextmanager
def _uninitialised():
    """Build modules without drawing their random init: the strict load below overwrites every
    parameter, and the init took 0.2-0.5 s of a cold `dittomusic generate` on 2 busy cores. (The
    meta device would do this too, but initialising meta tensors imports torch._dynamo: 3 s.)"""
    saved = {name: getattr(torch.nn.init, name) for name in _INITS}
    for name in _INITS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _config(meta: dict, path):
    try:
        return config_from_dict(meta["model_config"])
    except DittoError as e:
        raise DittoError(f"{path} is not a usable dittomusic model: {e}") from None


def clip_frames(meta: dict, path) -> int:
    """Mel frames of the model's clip from its checkpoint metadata, without building it (what its
    DenoiserBackend's clip_frames is once loaded); a config load_model refuses is refused alike."""
    cfg = _config(meta, path)
    ae = meta.get("autoencoder")
    return cfg.clip_frames * (AutoencoderConfig.from_dict(ae.get("model_config", {})).downsample
                              if isinstance(ae, dict) else 1)


def load_model(path: str | Path | None = None, device: str | torch.device | None = None) -> tuple[Denoiser, dict]:
    """A denoising network in eval mode (fp32) and its checkpoint metadata; path=None: the bundled model.

    Any architecture of models.ARCHS; a latent model comes with its autoencoder attached."""
    from dittomusic.utils import resolve_device

    dev = resolve_device(device)
    path = model_file(path)
    tensors, meta = load_tensors(path)
    check_model_meta(meta, path)
    if any(k.startswith("ema.") for k in tensors):  # a training checkpoint: use its EMA weights
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    cfg = _config(meta, path)
    ae_tensors = {k[len(AE_PREFIX):]: v for k, v in tensors.items() if k.startswith(AE_PREFIX)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(AE_PREFIX)}
    with _uninitialised():
        model = build_denoiser(cfg)
        ae = None
        if isinstance(meta.get("autoencoder"), dict):
            ae = MelAutoencoder(AutoencoderConfig.from_dict(meta["autoencoder"].get("model_config", {})))
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()}, assign=True)
        if ae is not None:
            ae.load_state_dict({k: v.float() for k, v in ae_tensors.items()}, assign=True)
            model.attach_autoencoder(ae)
    except RuntimeError as e:
        raise DittoError(f"{path} does not match its own model config: {str(e)[:300]}") from None
    return model.to(dev).eval().requires_grad_(False), meta
