"""dittomusic: controllable music generation by optimizing diffusion noise latents."""

__version__ = "0.1.0"
