"""Load networks from safetensors checkpoints; the bundled base model is the default."""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path

import torch

from dittomusic.checkpoint import load_tensors
from dittomusic.errors import DittoError
from dittomusic.models import Denoiser, build_denoiser, config_from_dict
from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder

AE_PREFIX = "autoencoder."  # a latent model's file holds its autoencoder under this prefix

# base_v1: the mel-space model the bundled DITTO-2 students were distilled from (until they are re-distilled)
BUNDLED = {"base": "base.safetensors", "base_v1": "base_v1.safetensors", "classifier": "classifier.safetensors", "clap": "clap.safetensors",
           "clap2": "clap2.safetensors"}


def bundled_path(name: str = "base") -> Path:
    """A file shipped in the package: "base" (the diffusion model), "classifier" (the FAD yardstick),
    "clap" (text control's scorer) or "clap2" (the second-opinion CLAP that judges it)."""
    return Path(str(resources.files("dittomusic") / "assets" / BUNDLED[name]))


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


def load_model(path: str | Path | None = None, device: str | torch.device | None = None) -> tuple[Denoiser, dict]:
    """A denoising network in eval mode (fp32) and its checkpoint metadata; path=None: the bundled model.

    Any architecture of models.ARCHS; a latent model comes with its autoencoder attached."""
    from dittomusic.utils import resolve_device

    dev = resolve_device(device)
    if path is None:
        path = bundled_path()
        if not path.exists():
            raise DittoError(f"the bundled base model is missing ({path}); reinstall dittomusic or pass --model FILE")
    tensors, meta = load_tensors(path)
    if "model_config" not in meta:
        raise DittoError(f"{path} carries no model config: not a dittomusic model checkpoint")
    if meta.get("kind") == "autoencoder":
        raise DittoError(f"{path} is an autoencoder, not a diffusion model")
    if any(k.startswith("ema.") for k in tensors):  # a training checkpoint: use its EMA weights
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    try:
        cfg = config_from_dict(meta["model_config"])
    except DittoError as e:
        raise DittoError(f"{path} is not a usable dittomusic model: {e}") from None
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
