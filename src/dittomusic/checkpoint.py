"""Checkpoints as safetensors only: tensors plus a JSON header in the file's metadata.

Nothing is ever unpickled, so loading a file a user hands us cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path

META_KEY = "dittomusic"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


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
