"""`dittomusic dataset stats`: hours per collection / instrument family and example spectrograms."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from dittomusic.audio.mel import MelConfig
from dittomusic.data.dataset import dataset_fingerprint, read_clips
from dittomusic.spectrogram import plot_mels  # noqa: F401  (re-exported: demo, eval.card)


def dataset_stats(root: str | Path) -> dict:
    rows = read_clips(root)
    clip_h = MelConfig().clip_seconds / 3600
    tables: dict[str, dict[str, float]] = {k: defaultdict(float) for k in
                                            ("collection", "family", "split", "tempo_bucket", "mode")}
    for r in rows:
        tables["collection"][r["collection"]] += clip_h
        for f in r["families"]:  # a clip counts once for each family playing in it
            tables["family"][f] += clip_h
        tables["split"][r["split"]] += clip_h
        tables["tempo_bucket"][r["tempo_bucket"]] += clip_h
        tables["mode"][r["mode"]] += clip_h
    return {
        "clips": len(rows),
        "pieces": len({r["piece_id"] for r in rows}),
        "hours": len(rows) * clip_h,
        "fingerprint": dataset_fingerprint(root, rows),
        **{f"hours_per_{k}": dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in tables.items()},
    }


def format_stats(st: dict) -> str:
    lines = [f"{st['clips']} clips from {st['pieces']} pieces, {st['hours']:.2f} hours",
             f"content fingerprint {st['fingerprint']} (equal fingerprints: the same clips in the same order)"]
    for key in ("collection", "family", "split", "tempo_bucket", "mode"):
        table = st[f"hours_per_{key}"]
        lines.append(f"\nhours per {key.replace('_', ' ')}:")
        width = max((len(k) for k in table), default=0)
        for k, v in table.items():
            lines.append(f"  {k:<{width}}  {v:8.2f}")
    return "\n".join(lines)


def pick_examples(rows: list[dict], per_collection: int = 1, seed: int = 0) -> list[int]:
    """Indices of `per_collection` random clips from each collection (sorted by name)."""
    rng = np.random.default_rng(seed)
    by_coll: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_coll[r["collection"]].append(i)
    picks: list[int] = []
    for c in sorted(by_coll):
        idx = by_coll[c]
        picks += [idx[j] for j in sorted(rng.choice(len(idx), size=min(per_collection, len(idx)), replace=False))]
    return picks


def load_clip(root: str | Path, row: dict, clip_frames: int | None = None) -> np.ndarray:
    """The stored log-mel of one clip row, [n_mels, frames] float32."""
    n = clip_frames or MelConfig().clip_frames
    sh = np.load(Path(root) / "shards" / f"{row['shard']}.npy", mmap_mode="r")
    return np.asarray(sh[row["frame"]:row["frame"] + n], dtype=np.float32).T.copy()


def plot_examples(root: str | Path, out_png: str | Path, per_collection: int = 1, seed: int = 0) -> Path:
    """One random clip per collection, titled with its caption."""
    rows = read_clips(root)
    picks = pick_examples(rows, per_collection, seed)
    return plot_mels([load_clip(root, rows[i]) for i in picks], [rows[i]["caption"] for i in picks], out_png)
