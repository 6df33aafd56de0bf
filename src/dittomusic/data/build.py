"""`dittomusic dataset build`: render scores into a sharded log-mel dataset.

Layout of an output folder:
    plan.json          settings and per-collection plan (resume refuses to mix settings)
    shards/NNNNN.npy   float16 [frames, n_mels] log-mel segments, memory-mappable
    shards/NNNNN.jsonl one row per ~6 s clip of that shard (written after the .npy: a
                       shard counts as finished only once its .jsonl exists)
    skipped.json       pieces that failed, with the reason
    clips.jsonl, vocab.json, build.json   written when the build finishes

Work is scheduled piece by piece, round-robin over collections, until each collection
reaches its share of the hour budget, so a build stopped early is still balanced.
Splits are assigned per piece, never per clip, so no piece lands in two splits.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import multiprocessing as mp
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dittomusic.audio.mel import MelConfig
from dittomusic.data.arrange import FAMILIES, INSTRUMENTS, TEMPO_BUCKETS, arrange, caption, tempo_bucket
from dittomusic.data.sources import PieceRef, corpus_pieces, folder_pieces
from dittomusic.errors import DittoError, PieceError
from dittomusic.utils import atomic_path, atomic_write_text, stable_hash

log = logging.getLogger("dittomusic.data")

SPLITS = ("train", "val", "test")
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass
class BuildConfig:
    out: str
    source: str | None = None  # folder of user scores; None = music21's corpus
    collection: str | None = None  # collection tag for --source files (default: subfolder name)
    collections: list[str] | None = None  # restrict the corpus to these collections
    hours: float = 30.0  # total audio to render, split evenly across collections
    max_seconds: float = 60.0  # longest render per (piece, variant); long pieces get random windows
    max_variants: int = 8  # most arrangements rendered per piece
    val_frac: float = 0.05
    test_frac: float = 0.05
    seed: int = 0
    workers: int = 0  # 0 = one per CPU core
    soundfont: str | None = None
    shard_clips: int = 512  # ~80 MB per shard
    mel: MelConfig = field(default_factory=MelConfig)

    # settings that change what a finished piece contains; resume must not mix them
    CONTENT_KEYS = ("source", "collection", "max_seconds", "seed", "val_frac", "test_frac", "mel")

    @classmethod
    def small(cls, out: str, **kw) -> "BuildConfig":
        """A ~10-minute dataset for tests and demos: every collection, every split, < 60 s."""
        kw = {"hours": 0.15, "max_seconds": 20.0, "max_variants": 1, "val_frac": 0.2, "test_frac": 0.2,
              "shard_clips": 64, **kw}
        return cls(out=out, **kw)


def assign_split(position: int, val_frac: float, test_frac: float) -> str:
    """Split of the piece at `position` in its collection's (hashed) order.

    A low-discrepancy sequence keeps every prefix of the order close to the requested
    fractions, so even a build stopped after a few pieces has all three splits.
    """
    u = (position * _GOLDEN) % 1.0
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


# --------------------------------------------------------------------------- workers

_W: dict = {}


def _worker_init(soundfont: str | None, mel_cfg: dict) -> None:
    import warnings

    import torch

    from dittomusic.audio.mel import MelSpectrogram
    from dittomusic.data.render import FluidRenderer

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    cfg = MelConfig(**mel_cfg)
    _W["renderer"] = FluidRenderer(soundfont, cfg.sample_rate)
    _W["mel"] = MelSpectrogram(cfg)
    _W["cfg"] = cfg


def render_variant(score, piece_id: str, variant: int, seed: int, max_seconds: float):
    """(arrangement, audio) of one variant of a parsed piece in a worker, or None if it has no parts.

    Seeded per (seed, piece, variant) and rendered by a fresh synth, so the vocoder's paired
    audio (data/pairs.py) re-renders exactly the audio a clip's mel was computed from.
    """
    arr = arrange(score, np.random.default_rng(stable_hash(seed, piece_id, variant)), max_seconds)
    if not arr.parts:
        return None
    return arr, _W["renderer"].render(arr)


def process_piece(task: dict) -> dict:
    """Parse one piece and render its variants. Never raises: failures come back as a reason."""
    from dittomusic.data.score import parse_piece

    ref = PieceRef(**task["ref"])
    try:
        score = parse_piece(ref)
        renders = []
        cfg: MelConfig = _W["cfg"]
        for v in task["variants"]:
            got = render_variant(score, ref.piece_id, v, task["seed"], task["max_seconds"])
            if got is None:
                continue
            arr, audio = got
            import torch

            with torch.no_grad():
                mel = _W["mel"](torch.from_numpy(audio)).numpy()
            n_clips = mel.shape[1] // cfg.clip_frames
            if n_clips == 0:
                continue
            mel = mel[:, : n_clips * cfg.clip_frames].T.astype(np.float16)  # [frames, n_mels]
            renders.append({
                "variant": v, "mel": np.ascontiguousarray(mel), "n_clips": n_clips,
                "instruments": arr.instruments, "families": arr.families,
                "programs": list(dict.fromkeys(p.instrument.program for p in arr.parts)),
                "tempo_bpm": arr.tempo_bpm, "tonic": arr.tonic, "mode": arr.mode,
                "transpose": arr.transpose, "window_start": arr.window_start,
                "dynamics": arr.dynamics, "gain_db": round(arr.gain_db, 2),
                "caption": caption(ref.collection, arr),
            })
        if not renders:
            raise PieceError(f"shorter than one {cfg.clip_seconds:.1f} s clip")
        return {"piece_id": ref.piece_id, "ok": True, "renders": renders}
    except PieceError as e:
        return {"piece_id": ref.piece_id, "ok": False, "reason": str(e)}
    except Exception as e:  # a bad file must never stop a multi-hour build
        return {"piece_id": ref.piece_id, "ok": False, "reason": f"{type(e).__name__}: {str(e)[:300]}"}


class _InlineExecutor:
    """workers=1: run pieces in this process (no spawn cost; what small test builds use)."""

    def __init__(self, soundfont, mel_cfg):
        import torch

        threads = torch.get_num_threads()
        _worker_init(soundfont, mel_cfg)
        # the one-thread setting is for pool workers; here it would slow (and mis-time) the caller for good
        torch.set_num_threads(threads)

    def submit(self, fn, *args):
        fut: cf.Future = cf.Future()
        fut.set_result(fn(*args))
        return fut

    def shutdown(self, wait=True, cancel_futures=False):
        _W.clear()


# --------------------------------------------------------------------------- builder

def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _Builder:
    def __init__(self, cfg: BuildConfig, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        self.shard_dir = self.out / "shards"
        self.mel = cfg.mel
        self.clip_hours = self.mel.clip_seconds / 3600

    # -- plan ------------------------------------------------------------------
    def _refs(self) -> list[PieceRef]:
        if self.cfg.source:
            return folder_pieces(self.cfg.source, self.cfg.collection)
        return corpus_pieces(self.cfg.collections)

    def _plan(self, refs: list[PieceRef]) -> dict:
        cfg = self.cfg
        content = {k: (asdict(cfg.mel) if k == "mel" else getattr(cfg, k)) for k in BuildConfig.CONTENT_KEYS}
        plan_path = self.out / "plan.json"
        by_coll: dict[str, list[PieceRef]] = defaultdict(list)
        for r in refs:
            by_coll[r.collection].append(r)
        colls = sorted(by_coll)
        budget = cfg.hours / max(len(colls), 1)
        est = min(cfg.max_seconds, 45.0) / 3600  # hours per render before we know better
        variants = {c: int(min(cfg.max_variants, max(1, math.ceil(budget / (len(by_coll[c]) * est)))))
                    for c in colls}
        plan = {"content": content, "collections": colls, "budget_hours": budget, "variants": variants,
                "hours": cfg.hours}
        if plan_path.exists():
            old = json.loads(plan_path.read_text())
            if old["content"] != content:
                diff = [k for k in content if old["content"].get(k) != content[k]]
                raise DittoError(
                    f"{self.out} was built with different settings ({', '.join(diff)}); "
                    f"use a new --out folder or the same settings to resume"
                )
            plan["variants"] = old["variants"]  # keep what finished pieces were rendered with
        atomic_write_text(plan_path, json.dumps(plan, indent=2))
        return plan

    # -- state on disk ---------------------------------------------------------
    def _load_state(self):
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        for p in list(self.shard_dir.glob(".*.tmp")) + list(self.out.glob(".*.tmp")):
            p.unlink()  # leftovers of a killed write
        rows, shard_ids = [], []
        for npy in sorted(self.shard_dir.glob("*.npy")):
            meta = npy.with_suffix(".jsonl")
            if not meta.exists():
                npy.unlink()  # killed between the two renames: the pieces are redone
                continue
            rows.extend(_read_jsonl(meta))
            shard_ids.append(int(npy.stem))
        self.next_shard = max(shard_ids, default=-1) + 1
        sk = self.out / "skipped.json"
        self.skipped = json.loads(sk.read_text()) if sk.exists() else []
        return rows

    def _flush(self, buffer: list[dict]) -> list[dict]:
        if not buffer:
            return []
        name = f"{self.next_shard:05d}"
        self.next_shard += 1
        mels, rows, frame = [], [], 0
        for item in buffer:
            for r in item["renders"]:
                seg_start, seg_end = frame, frame + r["mel"].shape[0]
                for k in range(r["n_clips"]):
                    rows.append({
                        "clip_id": f"{item['piece_id']}|v{r['variant']}|c{k}",
                        "piece_id": item["piece_id"], "title": item["title"], "collection": item["collection"],
                        "split": item["split"], "variant": r["variant"], "clip": k,
                        "start_s": round(r["window_start"] + k * self.mel.clip_seconds, 3),
                        "shard": name, "frame": frame + k * self.mel.clip_frames,
                        "seg_start": seg_start, "seg_end": seg_end,
                        "instruments": r["instruments"], "families": r["families"], "programs": r["programs"],
                        "tempo_bpm": r["tempo_bpm"], "tempo_bucket": tempo_bucket(r["tempo_bpm"]),
                        "tonic": r["tonic"], "mode": r["mode"], "transpose": r["transpose"],
                        "dynamics": r["dynamics"], "gain_db": r["gain_db"], "caption": r["caption"],
                    })
                mels.append(r["mel"])
                frame = seg_end
        with atomic_path(self.shard_dir / f"{name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(mels, axis=0))
        atomic_write_text(self.shard_dir / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def _save_skipped(self):
        atomic_write_text(self.out / "skipped.json", json.dumps(self.skipped, indent=1))

    # -- main loop -------------------------------------------------------------
    def run(self) -> dict:
        from tqdm.auto import tqdm

        t0 = time.time()
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        from dittomusic.data.render import find_soundfont

        soundfont = str(find_soundfont(cfg.soundfont))  # fail before starting workers
        refs = self._refs()
        plan = self._plan(refs)
        rows = self._load_state()
        done = {r["piece_id"] for r in rows} | {s["piece_id"] for s in self.skipped}
        hours = defaultdict(float)
        for r in rows:
            hours[r["collection"]] += self.clip_hours

        # per-collection queues in a stable hashed order; split by position in that order
        queues: dict[str, list[tuple[PieceRef, str]]] = {}
        for c in plan["collections"]:
            cr = sorted((r for r in refs if r.collection == c), key=lambda r: stable_hash(cfg.seed, r.piece_id))
            queues[c] = [(r, assign_split(i, cfg.val_frac, cfg.test_frac)) for i, r in enumerate(cr)
                         if r.piece_id not in done]
            queues[c].reverse()  # pop() from the end
        budget = plan["budget_hours"]
        per_task = {c: plan["variants"][c] * min(cfg.max_seconds, 45.0) / 3600 for c in plan["collections"]}
        n_tasks = defaultdict(int)
        inflight_est = defaultdict(float)
        workers = cfg.workers or os.cpu_count() or 1
        todo_hours = sum(max(0.0, budget - hours[c]) for c in plan["collections"] if queues[c] or hours[c] < budget)
        bar = tqdm(total=sum(min(budget, hours[c]) for c in plan["collections"]) + todo_hours,
                   initial=sum(min(budget, hours[c]) for c in plan["collections"]),
                   unit="h", desc="rendering", disable=not self.progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h [{elapsed}<{remaining}{postfix}]")
        buffer: list[dict] = []
        buffered_clips = 0
        new_rows: list[dict] = []

        def new_pool():
            if workers == 1:
                return _InlineExecutor(soundfont, asdict(self.mel))
            ctx = mp.get_context("spawn")  # fork after torch/fluidsynth init is unsafe
            return cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                          initargs=(soundfont, asdict(self.mel)))

        pool = new_pool()
        inflight: dict[cf.Future, tuple[PieceRef, str, float]] = {}
        crashes: dict[str, int] = defaultdict(int)

        def submit_more():
            while len(inflight) < 2 * workers:
                open_c = [c for c in plan["collections"]
                          if queues[c] and hours[c] + inflight_est[c] < budget]
                if not open_c:
                    return
                c = min(open_c, key=lambda c: (hours[c] + inflight_est[c]) / budget)
                ref, split = queues[c].pop()
                est = per_task[c]
                task = {"ref": asdict(ref), "variants": list(range(plan["variants"][c])),
                        "seed": cfg.seed, "max_seconds": cfg.max_seconds}
                inflight[pool.submit(process_piece, task)] = (ref, split, est)
                inflight_est[c] += est

        try:
            submit_more()
            while inflight:
                finished, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                broken = False
                for fut in finished:
                    ref, split, est = inflight.pop(fut)
                    c = ref.collection
                    inflight_est[c] -= est
                    try:
                        res = fut.result()
                    except cf.process.BrokenProcessPool:
                        # a worker died (e.g. a synth crash): retry the piece once, then skip it
                        broken = True
                        crashes[ref.piece_id] += 1
                        if crashes[ref.piece_id] < 2:
                            queues[c].append((ref, split))
                            continue
                        res = {"ok": False, "reason": "worker process crashed twice on this piece"}
                    if not res["ok"]:
                        log.warning("skipped %s: %s", ref.piece_id, res["reason"])
                        self.skipped.append({"piece_id": ref.piece_id, "path": ref.path, "reason": res["reason"]})
                        self._save_skipped()
                        continue
                    got = sum(r["n_clips"] for r in res["renders"]) * self.clip_hours
                    n_tasks[c] += 1
                    per_task[c] += (got - per_task[c]) / min(n_tasks[c] + 1, 20)  # running estimate
                    before = min(hours[c], budget)
                    hours[c] += got
                    bar.update(max(0.0, min(min(hours[c], budget) - before, bar.total - bar.n)))
                    buffer.append({"piece_id": ref.piece_id, "title": ref.title, "collection": c,
                                   "split": split, "renders": res["renders"]})
                    buffered_clips += sum(r["n_clips"] for r in res["renders"])
                    if buffered_clips >= cfg.shard_clips:
                        new_rows += self._flush(buffer)
                        buffer, buffered_clips = [], 0
                if broken:
                    for f, (ref, split, est) in list(inflight.items()):
                        queues[ref.collection].append((ref, split))
                        inflight_est[ref.collection] -= est
                    inflight.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                bar.set_postfix_str(f"{sum(hours.values()):.2f} h, {len(self.skipped)} skipped")
                submit_more()
        except BaseException:
            # keep finished pieces: a rerun resumes after them
            for f in inflight:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            new_rows += self._flush(buffer)
            bar.close()
            raise
        pool.shutdown()
        new_rows += self._flush(buffer)
        bar.close()
        return self._finalize(rows + new_rows, time.time() - t0, plan)

    def _finalize(self, rows: list[dict], seconds: float, plan: dict) -> dict:
        from dittomusic.data.dataset import clip_order, dataset_fingerprint

        rows.sort(key=clip_order)
        atomic_write_text(self.out / "clips.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        vocab = {
            "collections": plan["collections"],
            "families": list(FAMILIES),
            "instruments": [i.name for i in INSTRUMENTS],
            "tempo_buckets": [b for b, _ in TEMPO_BUCKETS],
            "modes": ["major", "minor"],
        }
        atomic_write_text(self.out / "vocab.json", json.dumps(vocab, indent=2))
        self._save_skipped()
        per_coll = defaultdict(float)
        per_split = defaultdict(float)
        for r in rows:
            per_coll[r["collection"]] += self.clip_hours
            per_split[r["split"]] += self.clip_hours
        prev = {}
        if (self.out / "build.json").exists():
            prev = json.loads((self.out / "build.json").read_text())
        summary = {
            "clips": len(rows),
            "hours": round(len(rows) * self.clip_hours, 3),
            "pieces": len({r["piece_id"] for r in rows}),
            "skipped": len(self.skipped),
            "hours_per_collection": {k: round(v, 3) for k, v in sorted(per_coll.items())},
            "hours_per_split": {k: round(per_split.get(k, 0.0), 3) for k in SPLITS},
            "build_seconds": round(prev.get("build_seconds", 0.0) + seconds, 1),
            "last_run_seconds": round(seconds, 1),
            "disk_bytes": _du(self.out),
            "workers": self.cfg.workers or os.cpu_count(),
            "fingerprint": dataset_fingerprint(self.out, rows),
        }
        atomic_write_text(self.out / "build.json", json.dumps(summary, indent=2))
        return summary


def build_dataset(cfg: BuildConfig, progress: bool = True) -> dict:
    """Build (or resume) a dataset; returns the summary also written to build.json."""
    return _Builder(cfg, progress).run()
