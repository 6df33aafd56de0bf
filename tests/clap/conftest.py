"""A synthetic dataset whose mels encode their metadata, and a bag-of-words stand-in for MiniLM.

The mels are built so that each attribute a caption can name leaves its own trace (collection
and instruments: bands of energy; tempo: the beat rate; key: a pitch band; loudness trend: a
ramp), so a tiny CLAP can learn the pairing in seconds and a broken loop shows plainly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dittomusic.audio.mel import MelConfig
from dittomusic.data.arrange import BY_NAME, FAMILIES, TEMPO_BUCKETS, tempo_bucket

N_MELS, FRAMES = 32, 64
COLLS = ["chorale", "Irish folk tune", "folk song"]
INSTS = ["piano", "church organ", "violin", "flute", "harp", "choir"]
TINY_CLAP = {"channels": 16, "layers": 1, "heads": 2, "embed_dim": 32, "text_hidden": 64}


def _mel(rng, coll: int, insts: list[int], bpm: int, tonic: int, trend: str) -> np.ndarray:
    t = np.arange(FRAMES)
    m = np.full((N_MELS, FRAMES), -0.9)
    m[2 * coll:2 * coll + 2] = 0.2
    for i in insts:
        m[8 + 2 * i:10 + 2 * i] = 0.4
    beat = (np.sin(2 * np.pi * t * bpm / 60 / 40) > 0.5) * 0.5
    m[21 + tonic % 6] += beat + 0.5
    ramp = {"rising": np.linspace(-0.3, 0.3, FRAMES), "falling": np.linspace(0.3, -0.3, FRAMES)}.get(trend, 0 * t)
    m += ramp[None, :] + rng.normal(0, 0.05, m.shape)
    return np.clip(m, -1, 1)


def make_dataset(root, clips: int = 96, seed: int = 0):
    """`clips` synthetic clips in train/val/test (3 clips per piece), written like `dataset build` does."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shards").mkdir()
    rng = np.random.default_rng(seed)
    rows, mels = [], []
    for k in range(clips):
        piece = k // 3
        if k % 3 == 0:
            prng = np.random.default_rng(seed * 1000 + piece)
            coll = int(prng.integers(len(COLLS)))
            insts = sorted(prng.choice(len(INSTS), int(prng.integers(1, 3)), replace=False).tolist())
            bpm = int(prng.integers(50, 200))
            tonic, mode = int(prng.integers(12)), ("major", "minor")[int(prng.integers(2))]
            split = ("train", "train", "train", "val", "test")[piece % 5]
        trend = ("rising", "falling", "steady")[int(rng.integers(3))]
        mels.append(_mel(rng, coll, insts, bpm, tonic, trend).T)
        names = [INSTS[i] for i in insts]
        rows.append({"clip_id": f"p{piece}|v0|c{k % 3}", "piece_id": f"p{piece}", "collection": COLLS[coll],
                     "split": split, "variant": 0, "clip": k % 3, "shard": "00000", "frame": k * FRAMES,
                     "seg_start": k * FRAMES, "seg_end": (k + 1) * FRAMES, "instruments": names,
                     "families": list(dict.fromkeys(BY_NAME[n].family for n in names)), "tempo_bpm": bpm,
                     "tempo_bucket": tempo_bucket(bpm), "tonic": ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab",
                                                                  "A", "Bb", "B"][tonic], "mode": mode,
                     "dynamics": "flat"})
    np.save(root / "shards" / "00000.npy", np.concatenate(mels).astype(np.float16))
    (root / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "vocab.json").write_text(json.dumps({
        "collections": COLLS, "families": list(FAMILIES), "instruments": [i for i in BY_NAME],
        "tempo_buckets": [b for b, _ in TEMPO_BUCKETS], "modes": ["major", "minor"]}))
    mel = {**MelConfig().to_dict(), "n_mels": N_MELS, "clip_frames": FRAMES}
    (root / "plan.json").write_text(json.dumps({"content": {"mel": mel}}))
    return root


class WordHashEncoder:
    """Bag of words, each word a fixed random unit vector: carries word identity like a sentence encoder."""

    name = "word-hash-test"
    dim = 48

    def encode(self, texts, batch_size=0, progress=False) -> torch.Tensor:
        out = []
        for text in texts:
            v = torch.zeros(self.dim)
            for w in text.lower().replace(",", " ").replace(".", " ").replace(";", " ").split():
                seed = int.from_bytes(hashlib.sha1(w.encode()).digest()[:4], "little")
                v += torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            out.append(torch.nn.functional.normalize(v, dim=0))
        return torch.stack(out)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """(dataset folder, caption folder) of a 96-clip synthetic dataset."""
    from dittomusic.clap.captions import make_caption_cache

    root = make_dataset(tmp_path_factory.mktemp("clapdata") / "ds")
    caps = root.parent / "captions"
    make_caption_cache(root, caps, encoder=WordHashEncoder(), progress=False)
    return root, caps


def make_tiny_clap(path, audio_tower: str = "conv1d", seed: int = 0):
    """A random tiny domain CLAP on the real sentence encoder (all-MiniLM-L6-v2) and the model's mel,
    saved like an export: what text control loads with --clap."""
    from dittomusic.checkpoint import save_tensors
    from dittomusic.clap.model import ClapModelConfig, DomainClap

    torch.manual_seed(seed)
    cfg = ClapModelConfig(n_mels=160, audio_tower=audio_tower, mel=MelConfig().to_dict(), **TINY_CLAP)
    save_tensors(path, {k: v.half() for k, v in DomainClap(cfg).state_dict().items()},
                 {"kind": "clap", "clap_config": cfg.to_dict()})
    return path
