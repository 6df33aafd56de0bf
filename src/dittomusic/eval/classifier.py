"""Tag classifier on log-mels: collection (one of N) and instrument families (multi-label).

It is the yardstick for the base model: its accuracy on generated clips, conditioned on
tags, against its accuracy on real clips measures tag adherence, and its penultimate
layer is the embedding for a Fréchet Audio Distance in this music's own domain
(public FAD embeddings such as VGGish or CLAP cannot be downloaded here).

A 1-D conv net over time with the 160 mel bins as channels: timbre and texture live in
the spectral envelope of each frame, which a frequency-channel conv reads directly, and
it trains in minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.errors import DittoError


@dataclass
class ClassifierConfig:
    n_mels: int = 160
    channels: int = 128
    embed_dim: int = 128
    collections: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)


class TagClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        layers, cin = [], cfg.n_mels
        for cout, stride in ((c, 2), (c, 2), (2 * c, 2), (2 * c, 2), (2 * c, 1)):
            layers += [nn.Conv1d(cin, cout, 5, stride=stride, padding=2), nn.BatchNorm1d(cout), nn.GELU()]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(4 * c, cfg.embed_dim), nn.GELU())
        self.head_collection = nn.Linear(cfg.embed_dim, len(cfg.collections))
        self.head_family = nn.Linear(cfg.embed_dim, len(cfg.families))

    def embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """The penultimate layer, [B, embed_dim]: the FAD embedding."""
        h = self.body(mel)
        return self.embed(torch.cat([h.mean(-1), h.amax(-1)], dim=-1))

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.embedding(mel)
        return {"embedding": e, "collection": self.head_collection(e), "families": self.head_family(e)}


def save_classifier(model: TagClassifier, path: str | Path, meta: dict) -> Path:
    return save_tensors(path, model.state_dict(), {"kind": "classifier", "config": asdict(model.cfg), **meta})


def load_classifier(path: str | Path, device="cpu") -> tuple[TagClassifier, dict]:
    tensors, meta = load_tensors(path, device)
    if meta.get("kind") != "classifier":
        raise DittoError(f"{path} is not a dittomusic tag classifier checkpoint")
    model = TagClassifier(ClassifierConfig(**meta["config"]))
    model.load_state_dict(tensors)
    return model.to(device).eval().requires_grad_(False), meta


@torch.no_grad()
def predict(model: TagClassifier, mels: torch.Tensor, batch: int = 64) -> dict[str, torch.Tensor]:
    """Embeddings and predictions for [N, n_mels, frames] mels, in batches."""
    dev = next(model.parameters()).device
    outs = [model(mels[i:i + batch].to(dev).float()) for i in range(0, len(mels), batch)]
    emb = torch.cat([o["embedding"] for o in outs]).cpu()
    fam = torch.cat([o["families"] for o in outs]).cpu()
    return {"embedding": emb, "collection": torch.cat([o["collection"] for o in outs]).argmax(-1).cpu(),
            "families": fam > 0, "family_logits": fam}


def tag_metrics(pred: dict, collection: torch.Tensor, families: torch.Tensor, names: list[str]) -> dict:
    """Collection accuracy (overall and per collection) and instrument-family micro-F1."""
    ok = pred["collection"] == collection
    per = {n: float(ok[collection == i].float().mean()) for i, n in enumerate(names) if (collection == i).any()}
    fam_p, fam_t = pred["families"], families.bool()
    tp = (fam_p & fam_t).sum().item()
    f1 = 2 * tp / max(1, fam_p.sum().item() + fam_t.sum().item())
    return {"collection_accuracy": float(ok.float().mean()), "collection_accuracy_per": per,
            "family_micro_f1": f1, "n": int(len(collection))}


def train_classifier(data: str | Path, out: str | Path, *, epochs: int = 6, batch_size: int = 64, lr: float = 2e-3,
                     seed: int = 0, device: str | None = None, progress: bool = True,
                     max_train_clips: int | None = None) -> dict:
    from tqdm.auto import tqdm

    from dittomusic.data.dataset import MelDataset
    from dittomusic.utils import resolve_device

    dev = resolve_device(device)
    torch.manual_seed(seed)
    train = MelDataset(data, "train", seed=seed)
    test = MelDataset(data, "test", random_crop=False)
    v = train.vocab
    model = TagClassifier(ClassifierConfig(n_mels=train[0]["mel"].shape[0], collections=v.collections,
                                           families=v.families)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n = len(train) if max_train_clips is None else min(len(train), max_train_clips)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    t0 = time.time()
    bar = tqdm(total=total, desc="classifier", disable=not progress)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        train.set_epoch(epoch)
        order = torch.randperm(len(train), generator=g)[:n]
        model.train()
        for i in range(0, n, batch_size):
            items = [train[int(j)] for j in order[i:i + batch_size]]
            mel = torch.stack([it["mel"] for it in items]).to(dev)
            # loudness jitter: the classifier should judge style and timbre, not level
            mel = (mel + (torch.rand(len(mel), 1, 1, generator=g) * 0.16 - 0.08).to(dev)).clamp(-1, 1)
            logits = model(mel)
            loss = F.cross_entropy(logits["collection"], torch.stack([it["collection"] for it in items]).to(dev)) + \
                F.binary_cross_entropy_with_logits(logits["families"],
                                                   torch.stack([it["families"] for it in items]).to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
    bar.close()
    model.eval()
    mels = torch.stack([test[i]["mel"] for i in range(len(test))])
    pred = predict(model, mels)
    metrics = tag_metrics(pred, torch.stack([test[i]["collection"] for i in range(len(test))]),
                          torch.stack([test[i]["families"] for i in range(len(test))]), v.collections)
    meta = {"data": str(data), "epochs": epochs, "train_clips": n, "seconds": round(time.time() - t0, 1),
            "test": metrics}
    save_classifier(model.cpu(), out, meta)
    return meta
