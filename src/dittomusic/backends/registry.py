"""Backends by name: `--backend KIND[:ARG]` on the command line.

    backend = load_backend("diffusers:/models/musicldm", "cuda")   # a local diffusers pipeline folder
    backend = load_backend(None, "cpu")                             # the bundled model (also "dittomusic")
    backend = load_backend("dittomusic:my_model.safetensors", "cpu")

A new backend kind registers a loader here (`register_backend`), without touching the CLI.
"""

from __future__ import annotations

from typing import Callable

from dittomusic.errors import DittoError

from .base import Backend

Loader = Callable[..., Backend]
_LOADERS: dict[str, tuple[Loader, str]] = {}
DEFAULT = "dittomusic"


def register_backend(kind: str, usage: str):
    """Register loader(arg: str | None, device, **options) -> Backend under `kind`."""

    def deco(fn: Loader) -> Loader:
        _LOADERS[kind] = (fn, usage)
        return fn

    return deco


def backend_kinds() -> dict[str, str]:
    """kind -> usage line, for help texts."""
    return {k: u for k, (_, u) in _LOADERS.items()}


def parse_backend(spec: str | None) -> tuple[str, str | None]:
    """'diffusers:/a/b' -> ('diffusers', '/a/b'); None, '' or 'default' -> the bundled model."""
    spec = (spec or "").strip()
    if spec in ("", "default", "bundled"):
        return DEFAULT, None
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _LOADERS:
        usage = "; ".join(backend_kinds().values())
        raise DittoError(f"unknown backend {spec!r}; give one of: {usage}")
    return kind, (arg.strip() or None) if sep else None


def load_backend(spec: str | None, device=None, **options) -> Backend:
    """The Backend that `spec` names, loaded on `device` (None: cuda if available, else cpu).
    options go to the loader: vocoder= for dittomusic models, dtype= / mel_cfg= for diffusers."""
    kind, arg = parse_backend(spec)
    loader, _ = _LOADERS[kind]
    return loader(arg, device, **options)


def cond_input(backend: Backend, *, prompt=None, negative_prompt=None, tags=None):
    """What backend.make_cond (and so run_control) takes, from the CLI's options: a Prompt for a
    text-conditioned backend (`takes_text`), the Tags for dittomusic's own models. Refuses the
    options that the backend cannot use instead of ignoring them."""
    if getattr(backend, "takes_text", False):
        from .diffusers import Prompt

        if tags is not None:
            raise DittoError("this backend is conditioned on text: use --prompt (and --negative-prompt), not tag "
                             "options such as --collection or --instruments")
        return None if prompt is None else Prompt(prompt, negative_prompt)
    if prompt is not None or negative_prompt is not None:
        raise DittoError("dittomusic's own models are conditioned on tags (--collection, --instruments, "
                         "--caption ...), not --prompt; --prompt is for --backend diffusers:DIR")
    return tags


@register_backend("dittomusic", "dittomusic[:MODEL.safetensors] (the bundled model by default)")
def _load_dittomusic(arg: str | None, device=None, vocoder: str | None = None) -> Backend:
    from dittomusic.generate import Pipeline

    return Pipeline(arg, None if device is None else str(device), vocoder).backend


@register_backend("diffusers", "diffusers:DIR (a local AudioLDM / MusicLDM / AudioLDM2 pipeline folder)")
def _load_diffusers(arg: str | None, device=None, **options) -> Backend:
    from .diffusers import MODEL_HELP, DiffusersBackend

    if not arg:
        raise DittoError(f"--backend diffusers needs the model folder: diffusers:DIR.\n{MODEL_HELP}")
    return DiffusersBackend.from_pretrained(arg, device, **options)
