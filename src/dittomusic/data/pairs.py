"""`dittomusic vocoder pairs`: audio paired with a built dataset's mels, for vocoder training.

A dataset stores only mels. Every render (piece, variant) is arranged from a generator seeded
by (seed, piece, variant) and played by a fresh synth, so it can be re-rendered bit for bit from
its clip rows: re-rendering a few hours costs minutes, where keeping audio for all 30 h would
cost 5 GB and a rebuild. Each re-rendered render is checked against the stored mel (the same
transform, cast to float16) before it is kept: that proves audio and mel are aligned sample for
sample. Only train pieces (and a little of val, for validation loss) are ever rendered; test
pieces stay unseen, for the benchmark.

Layout of an output folder (default DATA/audio):
    pairs.json          the dataset's plan and the settings (resume refuses a different dataset)
    shards/NNNNN.npy    int16 [samples]: renders back to back, each cut to its mel frames
    shards/NNNNN.jsonl  one row per render: its mel segment, its audio offset, the check's error
                        (written after the .npy: a shard counts as finished once its .jsonl exists)
    mismatched.json     renders whose re-rendered mel did not match (left out, with the error)
    renders.jsonl       all rows, written when finished

Render r's audio sample 0 is the centre of its mel frame 0 (the STFT is centred), so mel frames
[a, a + n) of the render pair with samples [a * hop, (a + n - 1) * hop): what a vocoder given
those n frames returns.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing as mp
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path, atomic_write_text, stable_hash

log = logging.getLogger("dittomusic.data")

PAIR_SPLITS = ("train", "val")  # never test: the benchmark's clips stay unheard


@dataclass
class PairsConfig:
    data: str
    out: str | None = None  # default: DATA/audio
    hours: float = 4.0  # train audio, split evenly across collections
    val_minutes: float = 3.0  # val audio, for the training's validation loss
    seed: int = 0  # order in which renders are picked
    workers: int = 0  # 0 = one per CPU core; 1 = in-process
    soundfont: str | None = None
    shard_minutes: float = 15.0  # audio per shard (~40 MB of int16)
    tolerance: float = 1e-2  # largest |stored mel - mel of the re-render| accepted (scaled units)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.data) / "audio"


def dataset_plan(data: str | Path) -> dict:
    p = Path(data) / "plan.json"
    if not p.exists():
        raise DittoError(f"{data} has no plan.json: not a built dataset (run `dittomusic dataset build`)")
    return json.loads(p.read_text())


def renders_of(rows: list[dict]) -> list[dict]:
    """One entry per (piece, variant) of the dataset's clip rows: where its mel segment lives."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["piece_id"], r["variant"])
        if key not in out:
            out[key] = {k: r[k] for k in ("piece_id", "variant", "collection", "split", "seg_start", "seg_end")}
            out[key]["mel_shard"] = r["shard"]
    return list(out.values())


def select_renders(renders: list[dict], split: str, hours: float, mel: MelConfig, seed: int) -> list[dict]:
    """Renders of `split` until `hours` of audio: each next one from the collection with the fewest hours
    so far, in a seeded order within each collection, so the hours stay balanced whatever the render
    lengths. The sequence does not depend on `hours`, so a larger budget extends a smaller one's choice.
    """
    per: dict[str, list[dict]] = defaultdict(list)
    for r in renders:
        if r["split"] == split:
            per[r["collection"]].append(r)
    queues = {c: sorted(v, key=lambda r: stable_hash(seed, "pairs", r["piece_id"], r["variant"]), reverse=True)
              for c, v in per.items()}
    got = {c: 0.0 for c in queues}
    chosen, total = [], 0.0
    frame_h = mel.hop_length / mel.sample_rate / 3600
    while total < hours and any(queues.values()):
        c = min((c for c in queues if queues[c]), key=lambda c: (got[c], c))
        r = queues[c].pop()
        chosen.append(r)
        got[c] += (r["seg_end"] - r["seg_start"]) * frame_h
        total += (r["seg_end"] - r["seg_start"]) * frame_h
    return chosen


def piece_refs(plan: dict) -> dict:
    """piece_id -> PieceRef for the dataset's sources (music21's corpus or its --source folder)."""
    from dittomusic.data.sources import corpus_pieces, folder_pieces

    c = plan["content"]
    refs = folder_pieces(c["source"], c.get("collection")) if c.get("source") else corpus_pieces()
    return {r.piece_id: r for r in refs}


# --------------------------------------------------------------------------- workers

def render_task(task: dict) -> dict:
    """Re-render the listed variants of one piece and check each against its stored mel. Never raises."""
    from dittomusic.data.build import _W, render_variant
    from dittomusic.data.score import parse_piece
    from dittomusic.data.sources import PieceRef

    ref = PieceRef(**task["ref"])
    try:
        score = parse_piece(ref)
    except Exception as e:
        return {"piece_id": ref.piece_id, "results": [dict(r, error=f"cannot parse: {type(e).__name__}: {e}"[:300])
                                                      for r in task["renders"]]}
    cfg: MelConfig = _W["cfg"]
    results = []
    for r in task["renders"]:
        n = r["seg_end"] - r["seg_start"]
        try:
            got = render_variant(score, ref.piece_id, r["variant"], task["seed"], task["max_seconds"])
        except Exception as e:
            results.append(dict(r, error=f"{type(e).__name__}: {e}"[:300]))
            continue
        if got is None:
            results.append(dict(r, error="no playable parts"))
            continue
        audio = got[1]
        with torch.no_grad():
            mel = _W["mel"](torch.from_numpy(audio)).numpy()[:, :n].T.astype(np.float16)
        stored = np.load(Path(task["data"]) / "shards" / f"{r['mel_shard']}.npy", mmap_mode="r")
        stored = np.asarray(stored[r["seg_start"]:r["seg_end"]])
        if mel.shape != stored.shape:
            results.append(dict(r, error=f"re-render has {mel.shape[0]} frames, the dataset {stored.shape[0]}"))
            continue
        err = float(np.abs(mel.astype(np.float32) - stored.astype(np.float32)).max())
        # centred frames: frame n - 1's centre is sample (n - 1) * hop; keep one more hop so a
        # segment ending at the render's last frame still has its audio (zeros past the render's end,
        # which the stored mel's constant padding saw too)
        want = n * cfg.hop_length
        a = np.zeros(want, np.float32)
        a[:min(want, len(audio))] = audio[:want]
        pcm = np.round(a * 32767.0).clip(-32768, 32767).astype(np.int16)
        results.append(dict(r, max_err=err, pcm=pcm))
    return {"piece_id": ref.piece_id, "results": results}


def _group_by_piece(renders: list[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = defaultdict(list)
    for r in renders:
        by[r["piece_id"]].append(r)
    return by


def _task(ref, items: list[dict], plan: dict, data: str | Path) -> dict:
    return {"ref": asdict(ref), "renders": items, "seed": plan["content"]["seed"],
            "max_seconds": plan["content"]["max_seconds"], "data": str(data)}


def rerender(data: str | Path, renders: list[dict], soundfont: str | None = None) -> list[dict]:
    """Re-render these renders in this process: each result has `pcm` (int16) and `max_err`, or `error`.

    For a handful of renders (the benchmark's test clips); `build_pairs` does hours, in parallel.
    """
    from dittomusic.data.build import _InlineExecutor
    from dittomusic.data.render import find_soundfont

    plan = dataset_plan(data)
    mel = MelConfig(**plan["content"]["mel"])
    refs = piece_refs(plan)
    ex = _InlineExecutor(str(find_soundfont(soundfont)), asdict(mel))
    try:
        out = []
        for pid, items in _group_by_piece(renders).items():
            if pid not in refs:
                out += [dict(r, error="piece not found in the dataset's sources") for r in items]
                continue
            out += render_task(_task(refs[pid], items, plan, data))["results"]
        return out
    finally:
        ex.shutdown()


# --------------------------------------------------------------------------- builder

def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _PairBuilder:
    def __init__(self, cfg: PairsConfig, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.out = cfg.out_dir
        self.shard_dir = self.out / "shards"

    def _settings(self, plan: dict) -> dict:
        settings = {"dataset_plan": plan["content"], "seed": self.cfg.seed, "tolerance": self.cfg.tolerance}
        p = self.out / "pairs.json"
        if p.exists():
            old = json.loads(p.read_text())
            diff = [k for k in settings if old.get(k) != settings[k]]
            if diff:
                raise DittoError(f"{self.out} pairs audio with another dataset or settings ({', '.join(diff)}); "
                                 f"use a new --out or the same settings to resume")
        return settings

    def _load_state(self) -> list[dict]:
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        for p in list(self.shard_dir.glob(".*.tmp")) + list(self.out.glob(".*.tmp")):
            p.unlink()  # leftovers of a killed write
        rows, ids = [], []
        for npy in sorted(self.shard_dir.glob("*.npy")):
            meta = npy.with_suffix(".jsonl")
            if not meta.exists():
                npy.unlink()  # killed between the two renames: those renders are redone
                continue
            rows += _read_jsonl(meta)
            ids.append(int(npy.stem))
        self.next_shard = max(ids, default=-1) + 1
        mm = self.out / "mismatched.json"
        self.mismatched = json.loads(mm.read_text()) if mm.exists() else []
        return rows

    def _flush(self, results: list[dict]) -> list[dict]:
        if not results:
            return []
        name = f"{self.next_shard:05d}"
        self.next_shard += 1
        rows, offset = [], 0
        for r in results:
            row = {k: v for k, v in r.items() if k != "pcm"}
            rows.append(dict(row, audio_shard=name, offset=offset, samples=len(r["pcm"])))
            offset += len(r["pcm"])
        with atomic_path(self.shard_dir / f"{name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate([r["pcm"] for r in results]))
        atomic_write_text(self.shard_dir / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def run(self) -> dict:
        from tqdm.auto import tqdm

        from dittomusic.data.build import _InlineExecutor, _worker_init
        from dittomusic.data.dataset import read_clips
        from dittomusic.data.render import find_soundfont

        t0 = time.time()
        cfg = self.cfg
        plan = dataset_plan(cfg.data)
        mel = MelConfig(**plan["content"]["mel"])
        soundfont = str(find_soundfont(cfg.soundfont))  # fail before starting workers
        settings = self._settings(plan)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "pairs.json", json.dumps(
            {**settings, "data": str(Path(cfg.data).resolve()), "hours": cfg.hours, "val_minutes": cfg.val_minutes},
            indent=2))
        renders = renders_of(read_clips(cfg.data))
        chosen = (select_renders(renders, "train", cfg.hours, mel, cfg.seed)
                  + select_renders(renders, "val", cfg.val_minutes / 60, mel, cfg.seed))
        rows = self._load_state()
        done = {(r["piece_id"], r["variant"]) for r in rows + self.mismatched}
        todo = [r for r in chosen if (r["piece_id"], r["variant"]) not in done]
        refs = piece_refs(plan)
        sec = mel.hop_length / mel.sample_rate
        hours = lambda rs: sum(r["seg_end"] - r["seg_start"] for r in rs) * sec / 3600  # noqa: E731
        bar = tqdm(total=hours(chosen), initial=hours(chosen) - hours(todo), unit="h", desc="re-rendering",
                   disable=not self.progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h [{elapsed}<{remaining}{postfix}]")
        tasks = []
        for pid, items in _group_by_piece(todo).items():
            if pid not in refs:
                self.mismatched += [dict(r, error="piece not found in the dataset's sources") for r in items]
                continue
            tasks.append(_task(refs[pid], items, plan, cfg.data))
        workers = cfg.workers or os.cpu_count() or 1
        if workers == 1:
            pool = _InlineExecutor(soundfont, asdict(mel))
        else:
            pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                          initargs=(soundfont, asdict(mel)))
        buffer, buffered, new_rows = [], 0, []
        shard_samples = cfg.shard_minutes * 60 * mel.sample_rate
        try:
            pending = {pool.submit(render_task, t) for t in tasks[:2 * workers]}
            nxt = len(pending)
            while pending:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    for r in fut.result()["results"]:
                        bar.update(hours([r]))
                        if "error" in r or r["max_err"] > cfg.tolerance:
                            r.pop("pcm", None)
                            r.setdefault("error", f"re-rendered mel differs from the stored one by up to "
                                                  f"{r['max_err']:.3g} (tolerance {cfg.tolerance:g})")
                            log.warning("left out %s v%d: %s", r["piece_id"], r["variant"], r["error"])
                            self.mismatched.append(r)
                            atomic_write_text(self.out / "mismatched.json", json.dumps(self.mismatched, indent=1))
                            continue
                        buffer.append(r)
                        buffered += len(r["pcm"])
                    if buffered >= shard_samples:
                        new_rows += self._flush(buffer)
                        buffer, buffered = [], 0
                    if nxt < len(tasks):
                        pending.add(pool.submit(render_task, tasks[nxt]))
                        nxt += 1
                bar.set_postfix_str(f"{len(self.mismatched)} left out")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            new_rows += self._flush(buffer)  # keep finished renders: a rerun resumes after them
            bar.close()
            raise
        pool.shutdown()
        new_rows += self._flush(buffer)
        bar.close()
        atomic_write_text(self.out / "mismatched.json", json.dumps(self.mismatched, indent=1))
        rows += new_rows
        rows.sort(key=lambda r: (r["audio_shard"], r["offset"]))
        atomic_write_text(self.out / "renders.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        per_split = defaultdict(float)
        for r in rows:
            per_split[r["split"]] += r["samples"] / mel.sample_rate / 3600
        return {"renders": len(rows), "hours_per_split": {k: round(per_split.get(k, 0.0), 3) for k in PAIR_SPLITS},
                "left_out": len(self.mismatched), "max_mel_error": max((r["max_err"] for r in rows), default=None),
                "seconds": round(time.time() - t0, 1), "out": str(self.out)}


def build_pairs(cfg: PairsConfig, progress: bool = True) -> dict:
    """Re-render (or resume re-rendering) train and val audio aligned to a dataset's mels."""
    return _PairBuilder(cfg, progress).run()


# --------------------------------------------------------------------------- reading

class PairedSegments:
    """Random aligned (mel, audio) segments of paired renders.

    Positions index every possible segment start of every render (so renders are drawn in
    proportion to their length); a position maps to one segment, so a draw that is a pure function
    of (seed, step) gives an exactly resumable stream. Mel and audio shards are memory-mapped.
    """

    def __init__(self, data: str | Path, audio: str | Path | None = None, split: str = "train", frames: int = 64):
        self.data = Path(data)
        self.audio = Path(audio) if audio else self.data / "audio"
        idx = self.audio / "renders.jsonl"
        if not idx.exists():
            raise DittoError(f"{self.audio} has no renders.jsonl: run `dittomusic vocoder pairs --data {data}"
                             + (f" --out {audio}`" if audio else "`") + " first (or let it finish)")
        settings = json.loads((self.audio / "pairs.json").read_text())
        plan = dataset_plan(self.data)
        if settings["dataset_plan"] != plan["content"]:
            raise DittoError(f"{self.audio} was re-rendered from another dataset than {self.data}")
        self.mel_cfg = MelConfig(**plan["content"]["mel"])
        self.frames = frames
        # a canonical order: where renders landed in the shards depends on worker timing (here and in
        # the dataset build), the segment at a position must not
        self.rows = sorted((r for r in _read_jsonl(idx) if r["split"] == split
                            and r["seg_end"] - r["seg_start"] >= frames), key=lambda r: (r["piece_id"], r["variant"]))
        if not self.rows:
            raise DittoError(f"{self.audio} holds no {split} renders of at least {frames} frames")
        self._cum = np.cumsum([r["seg_end"] - r["seg_start"] - frames + 1 for r in self.rows])
        self._maps: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        """Number of distinct segment starts."""
        return int(self._cum[-1])

    @property
    def hours(self) -> float:
        return sum(r["samples"] for r in self.rows) / self.mel_cfg.sample_rate / 3600

    def _map(self, kind: str, name: str) -> np.ndarray:
        key = (kind, name)
        if key not in self._maps:
            root = self.data / "shards" if kind == "mel" else self.audio / "shards"
            self._maps[key] = np.load(root / f"{name}.npy", mmap_mode="r")
        return self._maps[key]

    def segment(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(mel [n_mels, frames] float32, audio [(frames - 1) * hop] float32) at position `pos`."""
        i = int(np.searchsorted(self._cum, pos, side="right"))
        r = self.rows[i]
        k = int(pos - (self._cum[i - 1] if i else 0))  # frames into the render
        mel = self._map("mel", r["mel_shard"])[r["seg_start"] + k:r["seg_start"] + k + self.frames]
        hop = self.mel_cfg.hop_length
        s = r["offset"] + k * hop
        pcm = self._map("audio", r["audio_shard"])[s:s + (self.frames - 1) * hop]
        return (np.ascontiguousarray(np.asarray(mel, np.float32).T),
                np.asarray(pcm, np.float32) / 32767.0)

    def batch(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        segs = [self.segment(int(p)) for p in positions]
        return (torch.from_numpy(np.stack([m for m, _ in segs])), torch.from_numpy(np.stack([a for _, a in segs])))

    def __getstate__(self):  # DataLoader-style workers reopen their own memory maps
        d = self.__dict__.copy()
        d["_maps"] = {}
        return d
