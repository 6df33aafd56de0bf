"""Checkpoints as safetensors only: tensors plus a JSON header in the file's metadata.

Nothing is ever unpickled, so loading a file a user hands us cannot run code. read_meta reads the
metadata alone without torch (the web app builds its page from it while torch loads).
"""

from __future__ import annotations

import json
import math
import os
import struct
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path

if TYPE_CHECKING:
    import torch

META_KEY = "dittomusic"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
TAG_KINDS = ("collections", "instruments", "tempo_buckets", "modes")  # a model's tag vocabulary

BUNDLED = {"base": "base.safetensors", "classifier": "classifier.safetensors",
           "clap": "clap.safetensors", "clap2": "clap2.safetensors"}


def bundled_path(name: str = "base") -> Path:
    """A file shipped in the package: "base" (the diffusion model), "classifier" (the FAD yardstick),
    "clap" (text control's scorer) or "clap2" (the second-opinion CLAP that judges it)."""
    return Path(str(resources.files("dittomusic") / "assets" / BUNDLED[name]))


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def model_file(path: str | os.PathLike | None = None) -> Path:
    """The diffusion model file to open: `path`, or the bundled base model (a DittoError if it is missing)."""
    if path is not None:
        return Path(path)
    path = bundled_path()
    if not path.exists():
        raise DittoError(f"the bundled base model is missing ({path}); reinstall dittomusic or pass --model FILE")
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint's dittomusic metadata, read from the safetensors header alone (an 8-byte
    little-endian length, then JSON whose "__metadata__" holds string values): no tensor is read
    and torch is not imported. Errors as load_tensors's."""
    path = Path(path)
    if not path.is_file():
        raise DittoError(f"checkpoint not found: {path}")

    def bad(why: str) -> DittoError:
        return DittoError(f"{path} is not a dittomusic safetensors checkpoint ({why})")

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad("shorter than a safetensors header")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise bad(f"its header claims {n} bytes")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise bad(f"its header is a {type(header).__name__}, not a JSON object")
        meta = json.loads((header.get("__metadata__") or {}).get(META_KEY, "{}"))
    except DittoError:
        raise
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise bad(f"{type(e).__name__}: {e}") from None
    if not isinstance(meta, dict):
        raise bad(f"its {META_KEY!r} metadata is a {type(meta).__name__}, not a JSON object")
    return meta


SAMPLING_DEFAULTS = {"sampler": "ddim", "guidance": 3.0}  # a model file that names none (v1, older releases)


def sampling_defaults(meta: dict) -> dict:
    """How a model generates when the user names no sampler or guidance: its release's "sampling"
    block (chosen by a measured sweep, see `set_sampling`), else DDIM at guidance 3."""
    from dittomusic.sampling.names import SAMPLER_NAMES

    got = meta.get("sampling") if isinstance(meta.get("sampling"), dict) else {}
    out = {**SAMPLING_DEFAULTS, **{k: v for k, v in got.items() if k in SAMPLING_DEFAULTS}}
    if out["sampler"] not in SAMPLER_NAMES or not isinstance(out["guidance"], (int, float)):
        return dict(SAMPLING_DEFAULTS)  # a file from a newer version: fall back rather than fail
    return {"sampler": out["sampler"], "guidance": float(out["guidance"])}


def set_sampling(path: str | os.PathLike, out: str | os.PathLike, sampler: str, guidance: float,
                 why: str | None = None) -> Path:
    """A copy of a model release whose default sampler and guidance are these (weights unchanged)."""
    from dittomusic.sampling.names import SAMPLER_NAMES

    if sampler not in SAMPLER_NAMES:
        raise DittoError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    if not math.isfinite(guidance) or guidance < 0:
        raise DittoError(f"guidance {guidance} must be a finite number >= 0")
    tensors, meta = load_tensors(path)
    check_model_meta(meta, path)
    meta["sampling"] = {"sampler": sampler, "guidance": float(guidance), **({"why": why} if why else {})}
    return save_tensors(out, tensors, meta)


def check_model_meta(meta: dict, path, *, tags: str | None = None) -> dict:
    """`meta` if it is a diffusion model's (load_model's first checks), else a DittoError saying why
    not. tags: also require the tag vocabulary that generating needs (Pipeline's check), naming the
    model so in the error."""
    if "model_config" not in meta:
        raise DittoError(f"{path} carries no model config: not a dittomusic model checkpoint")
    if meta.get("kind") == "autoencoder":
        raise DittoError(f"{path} is an autoencoder, not a diffusion model")
    if tags is not None:
        cfg = meta["model_config"] if isinstance(meta["model_config"], dict) else {}
        vocab = cfg.get("vocab") if isinstance(cfg.get("vocab"), dict) else {}
        missing = [k for k in TAG_KINDS if not isinstance(vocab.get(k), list)]
        if missing:
            raise DittoError(f"{tags} has no tag vocabulary ({', '.join(missing)} missing): not a model dittomusic "
                             "can generate with")
    return meta


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DittoError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except DittoError:
        raise
    except Exception as e:
        raise DittoError(f"{path} is not a dittomusic safetensors checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise DittoError(f"{path} is not a dittomusic safetensors checkpoint (its {META_KEY!r} metadata is a "
                         f"{type(meta).__name__}, not a JSON object)")
    return tensors, meta


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten an optimizer's per-parameter state into named tensors (no pickling)."""
    import torch

    out = {}
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            out[f"optim.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)
