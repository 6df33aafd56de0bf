"""`dittomusic clap train`: contrastive (InfoNCE) training of the domain CLAP, and its export.

Each step draws a global batch of train clips (an epoch-wise permutation), one of each clip's
cached caption embeddings and a random crop of its mel, all a pure function of (seed, step), so a
killed run resumes bit for bit (train/common.py restores weights, EMA and optimizer). Under
torchrun each rank embeds its slice and the embeddings are all-gathered (with gradients), so the
loss is over the global batch and DDP matches one process.

Loss: symmetric InfoNCE with a learnable temperature. With `multi_positive` (default) every clip
of the batch that a caption truthfully describes is a positive for it (captions/Constraint):
"a chorale" fits a quarter of the batch, and calling those negatives would teach noise.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.clap.captions import EMBEDDINGS, matches, read_captions
from dittomusic.clap.model import ClapModelConfig, DomainClap
from dittomusic.errors import DittoError
from dittomusic.train.common import (LoopConfig, adamw, ddp, ema_update, init_distributed, lr_at, optimizer_step,
                                     resume, run_steps, set_lr, state_tensors, write_checkpoint)
from dittomusic.utils import stable_hash

CKPT = "checkpoint.safetensors"
log = logging.getLogger("dittomusic.clap")


@dataclass
class ClapTrainConfig(LoopConfig):
    data: str
    captions: str  # folder written by `dittomusic clap captions`
    out: str
    steps: int = 4200  # length of the LR schedule; --max-cpu-hours may stop earlier
    batch_size: int = 256  # global, split across processes: more in-batch negatives
    crop_frames: int = 448  # random crop of each 512-frame clip
    gain_jitter: float = 0.08  # +- this on the scaled mel (+-6 dB): judge the music, not its level
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 5.0
    ema_decay: float = 0.998
    multi_positive: bool = True
    model: dict = field(default_factory=dict)  # ClapModelConfig overrides (channels, layers, heads, embed_dim)

    FIXED = ("data", "captions", "batch_size", "crop_frames", "gain_jitter", "lr", "warmup", "weight_decay",
             "grad_clip", "ema_decay", "multi_positive", "model", "seed", "steps")


def load_text_embeddings(folder: str | Path, table: dict) -> tuple[torch.Tensor, str]:
    """The cached sentence embeddings of a caption table (checked against its texts) and the encoder's name."""
    p = Path(folder) / EMBEDDINGS
    tensors, meta = load_tensors(p)
    if meta.get("texts_sha1") != table["texts_sha1"] or "embeddings" not in tensors:
        raise DittoError(f"{p} does not belong to the captions in {folder}: rerun `dittomusic clap captions`")
    return tensors["embeddings"].float(), meta.get("encoder", "unknown")


def contrastive_loss(a: torch.Tensor, t: torch.Tensor, scale: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """Symmetric InfoNCE over unit vectors a (audio) and t (text), row i of each a pair.

    pos: [B, B] bool, pos[i, j] = caption i describes clip j (diagonal true); None: only pairs."""
    logits = scale * t @ a.T  # [text, audio]
    if pos is None:
        y = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
    p = pos.float()
    t2a = -(p / p.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    a2t = -(p.T / p.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
    return 0.5 * (t2a + a2t)


def _gather(x: torch.Tensor, world: int) -> torch.Tensor:
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather  # differentiable

    return torch.cat(all_gather(x))


class ClipBatches:
    """Train clips with their caption choices: batch(step) -> (mel, text ids, clip positions)."""

    def __init__(self, data: str | Path, table: dict, split: str, seed: int, crop_frames: int,
                 gain_jitter: float = 0.0):
        from dittomusic.data.dataset import MelDataset

        self.ds = MelDataset(data, split, random_crop=False)
        s = table["splits"].get(split)
        if s is None or [r["clip_id"] for r in self.ds.rows] != s["clip_ids"]:
            raise DittoError(f"the captions were made for another version of {data} ({split} clips differ): "
                             f"rerun `dittomusic clap captions`")
        self.attrs = np.asarray(s["attrs"], dtype=np.int64)
        self.texts = s.get("train") or s.get("seen")
        self.seed, self.crop, self.gain_jitter = seed, min(crop_frames, self.ds.clip_frames), gain_jitter

    def __len__(self) -> int:
        return len(self.ds)

    def positions(self, step: int, batch: int) -> np.ndarray:
        n = len(self.ds)
        pos = step * batch + np.arange(batch)
        out = np.empty(batch, dtype=np.int64)
        for ep in np.unique(pos // n):  # an epoch-wise permutation: every clip once per epoch
            perm = np.random.default_rng(stable_hash(self.seed, "clap-order", int(ep))).permutation(n)
            sel = pos // n == ep
            out[sel] = perm[pos[sel] % n]
        return out

    def draw(self, step: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(clip positions, crop starts, gain offsets, caption ids) of the global batch at `step`."""
        idx = self.positions(step, batch)
        rng = np.random.default_rng(stable_hash(self.seed, "clap-draw", step))
        starts = rng.integers(0, self.ds.clip_frames - self.crop + 1, size=batch)
        pick = rng.integers(0, 1 << 30, size=batch)
        gains = rng.uniform(-self.gain_jitter, self.gain_jitter, size=batch).astype(np.float32)
        tids = np.array([self.texts[int(i)][p % len(self.texts[int(i)])] for i, p in zip(idx, pick)])
        return idx, starts, gains, tids

    def mels(self, idx: np.ndarray, starts: np.ndarray, gains: np.ndarray | None = None) -> torch.Tensor:
        mel = torch.stack([self.ds[int(i)]["mel"][:, s:s + self.crop] for i, s in zip(idx, starts)])
        if gains is not None and self.gain_jitter > 0:  # a level change; bins at the dB floor stay silent
            mel = torch.where(mel > -1, (mel + torch.from_numpy(gains)[:, None, None]).clamp(-1, 1), mel)
        return mel


def train_clap(cfg: ClapTrainConfig, progress: bool = True) -> dict:
    d = init_distributed(cfg.device)
    if cfg.batch_size % d.world:
        raise DittoError(f"--batch-size {cfg.batch_size} must be divisible by the {d.world} processes")
    if cfg.batch_size < 2:
        raise DittoError("--batch-size must be at least 2: a contrastive loss needs negatives")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    table = read_captions(cfg.captions)
    text_emb, encoder_name = load_text_embeddings(cfg.captions, table)
    cons = np.asarray(table["constraints"], dtype=np.int64)
    train = ClipBatches(cfg.data, table, "train", cfg.seed, cfg.crop_frames, cfg.gain_jitter)
    plan_mel = json.loads((Path(cfg.data) / "plan.json").read_text())["content"]["mel"]
    mcfg = ClapModelConfig.from_dict({"n_mels": train.ds[0]["mel"].shape[0], "text_dim": text_emb.shape[1],
                                      "mel": plan_mel, "text_encoder": encoder_name, **cfg.model})
    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = DomainClap(mcfg).to(d.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    modules = {"model": model, "ema": ema}
    counters, meta = resume(out / CKPT, cfg, ClapTrainConfig.FIXED, modules, opt, d.device)
    if meta and meta.get("texts_sha1") != table["texts_sha1"]:
        raise DittoError(f"the captions in {cfg.captions} changed since this run started; use a new --out")
    net = ddp(model, d)

    val_batch = None
    if d.main:
        try:
            val = ClipBatches(cfg.data, table, "val", cfg.seed, cfg.crop_frames)
            n = min(cfg.val_clips, len(val))
            idx = np.linspace(0, len(val) - 1, n).round().astype(np.int64)  # spread over val pieces, fixed
            mel = torch.stack([val.ds[int(i)]["mel"] for i in idx])
            tids = np.array([val.texts[int(i)][0] for i in idx])
            pos = torch.from_numpy(matches(cons[tids], val.attrs[idx])) if cfg.multi_positive else None
            val_batch = (mel.to(d.device), text_emb[tids].to(d.device), pos)
        except DittoError as e:
            log.warning("no validation loss: %s", e)

    def checkpoint(cpu_seconds: float, wall_seconds: float):
        meta = {**asdict(counters), "cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds, "world": d.world,
                "train_config": asdict(cfg), "clap_config": mcfg.to_dict(), "texts_sha1": table["texts_sha1"],
                "train_clips": len(train)}
        write_checkpoint(out / CKPT, state_tensors(modules, opt), meta,
                         f"CLAP {mcfg.channels}ch x {mcfg.layers} layers, batch {cfg.batch_size}",
                         ylabel="InfoNCE (text<->audio)")

    @torch.no_grad()
    def val_loss() -> float:
        mel, temb, pos = val_batch
        return float(contrastive_loss(ema.embed_audio(mel), ema.embed_text(temb), ema.scale(), pos))

    per = cfg.batch_size // d.world

    def step_fn(step: int):
        idx, starts, gains, tids = train.draw(step, cfg.batch_size)
        sl = slice(d.rank * per, (d.rank + 1) * per)
        lr = set_lr(opt, lr_at(step, cfg.lr, cfg.warmup, cfg.steps))
        a, t = net(train.mels(idx[sl], starts[sl], gains[sl]).to(d.device), text_emb[tids[sl]].to(d.device))
        a, t = _gather(a, d.world), _gather(t, d.world)
        pos = torch.from_numpy(matches(cons[tids], train.attrs[idx])).to(d.device) if cfg.multi_positive else None
        loss = contrastive_loss(a, t, model.scale(), pos)
        gnorm = optimizer_step(loss, model, opt, cfg.grad_clip)
        ema_update(ema, model, step, cfg.ema_decay)
        return loss, gnorm, lr

    model.train()
    run_steps(d, cfg, counters, step_fn, checkpoint, val_loss if val_batch is not None else None,
              progress=progress, desc="clap")
    return {**counters.summary(), "train_clips": len(train), "temperature": float(1 / ema.scale())}


def export_clap(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """A run's EMA weights -> a release file (fp16 by default) carrying its config and training summary."""
    from dittomusic.train.base import release_train_info

    run = Path(run)
    tensors, meta = load_tensors(run / CKPT if run.is_dir() else run)
    if "clap_config" not in meta or "train_config" not in meta:
        raise DittoError(f"{run} is not a CLAP training run")
    ema = {k[4:]: v.to(dtype) for k, v in tensors.items() if k.startswith("ema.")}
    release = {"kind": "clap", "clap_config": meta["clap_config"],
               "train": {**release_train_info(meta), "train_clips": meta.get("train_clips")},
               "train_config": meta["train_config"], "texts_sha1": meta.get("texts_sha1")}
    return save_tensors(out, ema, release)
