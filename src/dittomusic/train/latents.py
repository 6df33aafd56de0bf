"""Latents of the training crops, encoded once for latent diffusion training.

The autoencoder's forward pass gives the same answer every time it sees the same crop, and cost
0.17 CPU-s of a 1.26 CPU-s bf16 latent DiT step (benchmarks/latent_step_time.py). Slot e of the cache holds the latents of epoch
e's crops (MelDataset's random crop of clip i for (seed, e)); training epoch e reads slot
e % epochs, so the first `epochs` epochs see exactly the crops an uncached run sees, and later
epochs cycle through them. Latents are stored in fp16 (what an fp16 release's encoder yields to
~1e-3 anyway).

    dittomusic autoencoder cache --ae ae_long.safetensors --data data/full --out runs/latents --epochs 2
    dittomusic train ... --autoencoder ae_long.safetensors --latent-cache runs/latents
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dittomusic.data.dataset import MelDataset
from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text, file_sha1

ARRAY, META = "latents.npy", "latents.json"


def _identity(ae_path, ds: MelDataset, seed: int, epochs: int) -> dict:
    return {"autoencoder_sha1": file_sha1(ae_path), "clips": len(ds), "clip_frames": ds.clip_frames,
            "seed": seed, "epochs": epochs}


@torch.no_grad()
def build_latent_cache(ae_path: str | Path, data: str | Path, out: str | Path, epochs: int = 2, seed: int = 0,
                       batch: int = 32, device=None, progress: bool = True) -> Path:
    """Encode every training clip's crop of epochs 0..epochs-1; resumable (rerun continues where it
    stopped) and atomic (latents.npy appears only when complete)."""
    from tqdm.auto import tqdm

    from dittomusic.train.autoencoder import load_autoencoder

    if epochs < 1:
        raise DittoError(f"--epochs must be >= 1, got {epochs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ae, _ = load_autoencoder(ae_path, device)
    dev = next(ae.parameters()).device
    ds = MelDataset(data, "train", seed=seed)
    if ds.clip_frames % ae.cfg.downsample:
        raise DittoError(f"clips of {ds.clip_frames} frames do not divide into the autoencoder's "
                         f"{ae.cfg.downsample}x latent")
    ident = _identity(ae_path, ds, seed, epochs)
    shape = (epochs, len(ds), ae.cfg.latent_channels, ds.clip_frames // ae.cfg.downsample)
    meta_path, partial = out / META, out / (ARRAY + ".partial")
    if (out / ARRAY).exists():
        LatentCache(out, ae_path, ds, seed)  # validates
        return out
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("identity") != ident or not partial.exists():
        meta = {"identity": ident, "shape": list(shape), "done": 0}
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape).flush()
    arr = np.lib.format.open_memmap(partial, mode="r+")
    total = epochs * len(ds)
    bar = tqdm(total=total, initial=meta["done"], desc="encoding crops", unit="clip", disable=not progress)
    pos = meta["done"]
    while pos < total:
        end = min(pos + batch, (pos // len(ds) + 1) * len(ds), total)  # one epoch per batch
        e, i0, i1 = pos // len(ds), pos % len(ds), pos % len(ds) + (end - pos)
        ds.set_epoch(e)
        mel = torch.stack([ds[i]["mel"] for i in range(i0, i1)]).to(dev)
        arr[e, i0:i1] = ae.encode(mel).cpu().numpy().astype(np.float16)
        pos = end
        if pos == total or (pos // batch) % 16 == 0:  # progress survives a kill
            arr.flush()
            atomic_write_text(meta_path, json.dumps({**meta, "done": pos}))
        bar.update(end - (bar.n))
    bar.close()
    del arr
    partial.rename(out / ARRAY)
    atomic_write_text(meta_path, json.dumps({**meta, "done": total, "complete": True}))
    return out


class LatentCache:
    """Read side: latents for (clip index, epoch) pairs, after checking the cache was made from this
    autoencoder file, dataset split and seed."""

    def __init__(self, folder: str | Path, ae_path: str | Path, ds: MelDataset, seed: int):
        folder = Path(folder)
        if not (folder / ARRAY).exists() or not (folder / META).exists():
            raise DittoError(f"{folder} holds no complete latent cache; build it with "
                             f"`dittomusic autoencoder cache --ae {ae_path} --data ... --out {folder}`")
        meta = json.loads((folder / META).read_text())
        ident = meta["identity"]
        want = _identity(ae_path, ds, seed, ident["epochs"])
        bad = [k for k in want if want[k] != ident.get(k)]
        if bad:
            raise DittoError(f"the latent cache {folder} was built for another {', '.join(bad)} "
                             f"(autoencoder, dataset or seed); rebuild it with `dittomusic autoencoder cache`")
        self.epochs = ident["epochs"]
        self.array = np.load(folder / ARRAY, mmap_mode="r")

    def get(self, index, epoch) -> torch.Tensor:
        rows = [np.asarray(self.array[int(e) % self.epochs, int(i)], dtype=np.float32) for i, e in zip(index, epoch)]
        return torch.from_numpy(np.stack(rows))
