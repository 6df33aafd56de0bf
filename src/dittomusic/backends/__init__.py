"""Diffusion backends: what control methods see of a model (`Backend`), and its implementations.

    DenoiserBackend   dittomusic's own Denoiser, over mels (the bundled MelDiT) or an autoencoder's latents
"""

from .base import Backend, BackendBase, along_time, sampler_kwargs
from .denoiser import DenoiserBackend

__all__ = ["Backend", "BackendBase", "DenoiserBackend", "along_time", "sampler_kwargs"]
