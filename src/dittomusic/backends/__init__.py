"""Diffusion backends: what control methods see of a model (`Backend`), its implementations, and
how the CLI opens one by name (`--backend NAME[:ARG]`).

    DenoiserBackend   "dittomusic": dittomusic's own Denoiser, over mels (the bundled MelDiT) or an
                      autoencoder's latents

Every module of this package is imported, so a new backend is one module that calls
register_backend (importing its heavy dependencies inside its factory).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from dittomusic.errors import DittoError

from .base import Backend, BackendBase, along_time, sampler_kwargs
from .denoiser import DenoiserBackend

# name -> factory(arg, model, device, vocoder) -> Backend; arg: what followed "NAME:" (or None)
_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    if name in _BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def open_backend(spec: str | None = None, model: str | None = None, device: str | None = None,
                 vocoder: str | None = None) -> Backend:
    """A backend by spec "NAME" or "NAME:ARG" (e.g. "diffusers:PATH"); None: "dittomusic" (the
    --model file, or the bundled model)."""
    name, _, arg = (spec or "dittomusic").partition(":")
    if name not in _BACKENDS:
        raise DittoError(f"unknown backend {name!r}; choose from: {', '.join(available_backends())}")
    return _BACKENDS[name](arg or None, model, device, vocoder)


def _dittomusic(arg, model, device, vocoder) -> Backend:
    from dittomusic.generate import Pipeline

    return Pipeline(arg or model, device, vocoder).backend


register_backend("dittomusic", _dittomusic)
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Backend", "BackendBase", "DenoiserBackend", "along_time", "available_backends", "open_backend",
           "register_backend", "sampler_kwargs"]
