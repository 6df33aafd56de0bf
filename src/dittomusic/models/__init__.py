"""Denoising networks (one module per architecture), the mel autoencoder and checkpoint loading."""

from dittomusic.models.denoiser import Denoiser, DenoiserConfig
from dittomusic.models.transformer import MelDiT, ModelConfig
from dittomusic.models.unet1d import MelUNet, UNetConfig

# arch name (written into every model config) -> (config class, network class)
ARCHS = {"dit": (ModelConfig, MelDiT), "unet1d": (UNetConfig, MelUNet)}


def config_from_dict(d: dict) -> DenoiserConfig:
    from dittomusic.errors import DittoError

    if not isinstance(d, dict):
        raise DittoError(f"the model config is a {type(d).__name__}, not a JSON object")
    arch = d.get("arch", "dit")  # configs written before there was a choice are MelDiT's
    if not isinstance(arch, str) or arch not in ARCHS:
        raise DittoError(f"unknown model architecture {arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch][0].from_dict(d)


def build_denoiser(cfg: DenoiserConfig) -> Denoiser:
    return ARCHS[cfg.arch][1](cfg)


__all__ = ["ARCHS", "Denoiser", "DenoiserConfig", "MelDiT", "MelUNet", "ModelConfig", "UNetConfig",
           "build_denoiser", "config_from_dict"]
