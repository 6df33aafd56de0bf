"""Diffusion backends: what control methods see of a model (`Backend`), its implementations, and
the one registry that opens them by name (`--backend NAME[:ARG]`).

    DenoiserBackend   "dittomusic[:MODEL.safetensors]": dittomusic's own Denoiser, over mels (the
                      bundled MelDiT) or an autoencoder's latents; tag-conditioned
    DiffusersBackend  "diffusers:DIR": a local AudioLDM / MusicLDM / AudioLDM2 pipeline folder;
                      text-conditioned (backends/diffusers.py)

    backend = open_backend("diffusers:/models/musicldm", device="cuda")
    backend = open_backend(None, device="cpu")            # the bundled model (also "dittomusic", "default")
    prompt = backend.parse_prompt(caption="solo piano")   # the CLI's --caption/tag options -> make_cond's input

Every module of this package is imported, so a new backend is one module that calls
register_backend (importing its heavy dependencies inside its factory: `import dittomusic.backends`
must not load diffusers or transformers).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from dittomusic.errors import DittoError

from .base import Backend, BackendBase, along_time, sampler_kwargs
from .denoiser import DenoiserBackend

DEFAULT = "dittomusic"
# name -> factory(arg, model, device, vocoder, **options) -> Backend; arg: what followed "NAME:" (or None)
_BACKENDS: dict[str, Callable[..., Backend]] = {}
_USAGE: dict[str, str] = {}  # name -> usage line, for help texts and errors


def register_backend(name: str, factory: Callable[..., Backend] | None = None, *, usage: str | None = None):
    """Register factory(arg, model, device, vocoder, **options) -> Backend under `name`; usage: a
    line such as "NAME:DIR (what it is)" for help texts. Without a factory, a decorator."""
    if factory is None:
        def deco(fn: Callable[..., Backend]) -> Callable[..., Backend]:
            register_backend(name, fn, usage=usage)
            return fn

        return deco
    if name in _BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    _BACKENDS[name] = factory
    _USAGE[name] = usage or name
    return factory


def available_backends() -> list[str]:
    """The registered names, the default first."""
    return sorted(_BACKENDS, key=lambda k: (k != DEFAULT, k))


def backend_kinds() -> dict[str, str]:
    """name -> usage line, the default first (for help texts)."""
    return {k: _USAGE.get(k, k) for k in available_backends()}


def parse_backend(spec: str | None) -> tuple[str, str | None]:
    """'diffusers:/a/b:c' -> ('diffusers', '/a/b:c'); None, '', 'default' or 'bundled' -> ('dittomusic', None).
    An unknown name is a DittoError listing the registered ones with their usage."""
    spec = (spec or "").strip()
    if spec in ("", "default", "bundled"):
        return DEFAULT, None
    name, sep, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in _BACKENDS:
        raise DittoError(f"unknown backend {name!r}; choose from: {'; '.join(backend_kinds().values())}")
    return name, (arg.strip() or None) if sep else None


def open_backend(spec: str | None = None, *, model: str | None = None, device=None, vocoder: str | None = None,
                 **options) -> Backend:
    """The backend that spec "NAME" or "NAME:ARG" names (parse_backend), on `device` (None: cuda if
    available). model / vocoder: the CLI's --model and --vocoder (dittomusic's own models); options
    go to the factory (e.g. dtype=, mel_cfg=, db_offset= for diffusers)."""
    name, arg = parse_backend(spec)
    return _BACKENDS[name](arg, model, device, vocoder, **options)


@register_backend(DEFAULT, usage="dittomusic[:MODEL.safetensors] (dittomusic's own models; the bundled one by default)")
def _dittomusic(arg, model, device, vocoder) -> Backend:
    from dittomusic.generate import Pipeline

    return Pipeline(arg or model, None if device is None else str(device), vocoder).backend


for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Backend", "BackendBase", "DenoiserBackend", "along_time", "available_backends", "backend_kinds",
           "open_backend", "parse_backend", "register_backend", "sampler_kwargs"]
