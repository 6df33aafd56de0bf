"""Training-side view of a built dataset: tag vocabulary and a memory-mapped torch Dataset."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dittomusic.errors import DittoError
from dittomusic.utils import stable_hash


@dataclass
class TagVocab:
    """Tag names -> ids for the conditioning and the tag classifier."""

    collections: list[str]
    families: list[str]
    instruments: list[str]
    tempo_buckets: list[str]
    modes: list[str]

    @classmethod
    def load(cls, root: str | Path) -> "TagVocab":
        p = Path(root) / "vocab.json"
        if not p.exists():
            raise DittoError(f"{root} has no vocab.json: not a finished dataset (run `dittomusic dataset build`)")
        return cls(**json.loads(p.read_text()))

    def to_dict(self) -> dict:
        return asdict(self)

    def encode(self, row: dict) -> dict[str, torch.Tensor]:
        fam = torch.zeros(len(self.families))
        for f in row["families"]:
            if f in self.families:
                fam[self.families.index(f)] = 1.0
        inst = torch.zeros(len(self.instruments))
        for i in row["instruments"]:
            if i in self.instruments:
                inst[self.instruments.index(i)] = 1.0
        return {
            "collection": torch.tensor(self.collections.index(row["collection"])),
            "families": fam,
            "instruments": inst,
            "tempo": torch.tensor(self.tempo_buckets.index(row["tempo_bucket"])),
            "mode": torch.tensor(self.modes.index(row["mode"])),
        }


LAYOUT_FIELDS = ("shard", "frame", "seg_start", "seg_end")  # where a clip is stored, not what it is


def clip_order(row: dict) -> tuple:
    """The canonical order of a dataset's clips: by piece, arrangement and clip. Where a render lands in the
    shards depends on which worker finished first, so an order by storage position differs between two
    builds of the same content, and with it every seeded pick of clips (eval sets, training batches)."""
    return row["piece_id"], row["variant"], row["clip"]


def read_clips(root: str | Path, split: str | None = None) -> list[dict]:
    """A built dataset's clip rows (of one split), in the canonical order (clip_order)."""
    p = Path(root) / "clips.jsonl"
    if not p.exists():
        raise DittoError(f"{root} has no clips.jsonl: not a finished dataset (run `dittomusic dataset build`)")
    rows = sorted((json.loads(line) for line in p.read_text().splitlines() if line.strip()), key=clip_order)
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
    return rows


def dataset_fingerprint(root: str | Path, rows: list[dict] | None = None) -> str:
    """sha1 of what a build contains, not how it is laid out: every clip's metadata (less its storage
    position) and the mel frames of every render, in the canonical order. Two builds with the same
    fingerprint give the same clips to every seeded pick and the same bytes to every read."""
    import hashlib

    root = Path(root)
    rows = sorted(rows, key=clip_order) if rows is not None else read_clips(root)
    h = hashlib.sha1()
    shards: dict[str, np.ndarray] = {}
    seen = set()
    for r in rows:
        meta = {k: v for k, v in r.items() if k not in LAYOUT_FIELDS}
        h.update(json.dumps(meta, sort_keys=True).encode())
        h.update(str(r["frame"] - r["seg_start"]).encode())  # where in its render the clip starts
        seg = (r["shard"], r["seg_start"], r["seg_end"])
        if seg not in seen:
            seen.add(seg)
            a = shards.get(r["shard"])
            if a is None:
                a = shards[r["shard"]] = np.load(root / "shards" / f"{r['shard']}.npy", mmap_mode="r")
            h.update(np.ascontiguousarray(a[r["seg_start"]:r["seg_end"]]).tobytes())
    return h.hexdigest()


class MelDataset(torch.utils.data.Dataset):
    """Clips of a built dataset as {"mel": [n_mels, frames] float32 in [-1, 1], tags...}.

    Shards are memory-mapped, so only the clips read are paged in. With random crops
    (default for train) a clip's window is jittered by up to half a clip inside its
    render; the jitter is a pure function of (seed, epoch, index), so training resumes
    exactly. Call set_epoch() each epoch, as with DistributedSampler.
    """

    def __init__(self, root: str | Path, split: str = "train", random_crop: bool | None = None,
                 seed: int = 0, clip_frames: int | None = None):
        self.root = Path(root)
        self.rows = read_clips(root, split)
        if not self.rows:
            raise DittoError(f"split {split!r} of {root} is empty")
        self.vocab = TagVocab.load(root)
        plan = json.loads((self.root / "plan.json").read_text())
        self.clip_frames = clip_frames or plan["content"]["mel"]["clip_frames"]
        self.random_crop = (split == "train") if random_crop is None else random_crop
        self.seed = seed
        self.epoch = 0
        self._shards: dict[str, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _shard(self, name: str) -> np.ndarray:
        a = self._shards.get(name)
        if a is None:
            a = self._shards[name] = np.load(self.root / "shards" / f"{name}.npy", mmap_mode="r")
        return a

    def crop_start(self, i: int) -> int:
        r = self.rows[i]
        start = r["frame"]
        if self.random_crop:
            half = self.clip_frames // 2
            rng = np.random.default_rng(stable_hash(self.seed, self.epoch, i))
            start = int(np.clip(start + rng.integers(-half, half + 1), r["seg_start"], r["seg_end"] - self.clip_frames))
        return start

    def __getitem__(self, i: int) -> dict:
        r = self.rows[i]
        s = self.crop_start(i)
        mel = np.asarray(self._shard(r["shard"])[s:s + self.clip_frames], dtype=np.float32).T
        return {"mel": torch.from_numpy(np.ascontiguousarray(mel)), "index": i, **self.vocab.encode(r)}

    def __getstate__(self):  # DataLoader workers reopen their own memory maps
        d = self.__dict__.copy()
        d["_shards"] = {}
        return d
