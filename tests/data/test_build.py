import json
import shutil

import numpy as np
import pytest

from dittomusic.data.build import BuildConfig, assign_split, build_dataset
from dittomusic.data.dataset import read_clips
from dittomusic.errors import DittoError

from ..conftest import TINY


def test_tiny_build_layout_and_rows(tiny_dataset, mel_cfg):
    root, summary = tiny_dataset
    rows = read_clips(root)
    assert summary["clips"] == len(rows) >= 12
    assert set(summary["hours_per_collection"]) == {"chorale", "Irish folk tune", "folk song"}
    for name in ("plan.json", "clips.jsonl", "vocab.json", "build.json", "skipped.json"):
        assert (root / name).exists()
    required = {"collection", "instruments", "tempo_bpm", "tonic", "mode", "caption", "split", "piece_id",
                "shard", "frame", "seg_start", "seg_end"}
    for r in rows:
        assert required <= set(r)
        assert r["instruments"] and r["mode"] in ("major", "minor") and 40 <= r["tempo_bpm"] <= 240
        assert r["seg_start"] <= r["frame"] and r["frame"] + mel_cfg.clip_frames <= r["seg_end"]
    shard = np.load(root / "shards" / f"{rows[0]['shard']}.npy", mmap_mode="r")
    assert shard.dtype == np.float16 and shard.shape[1] == mel_cfg.n_mels
    assert -1.0 <= float(shard.min()) and float(shard.max()) <= 1.0
    assert not list(root.rglob("*.tmp"))


def test_splits_are_disjoint_by_piece(tiny_dataset):
    root, _ = tiny_dataset
    split_of = {}
    for r in read_clips(root):
        assert split_of.setdefault(r["piece_id"], r["split"]) == r["split"]
    assert set(split_of.values()) == {"train", "val", "test"}


def test_assign_split_prefixes_are_balanced():
    s = [assign_split(i, 0.05, 0.05) for i in range(400)]
    assert s[0] == "test"
    for n in (40, 100, 400):
        assert abs(s[:n].count("test") / n - 0.05) < 0.03 and abs(s[:n].count("val") / n - 0.05) < 0.03


def test_rerun_skips_finished_pieces(tiny_dataset):
    root, summary = tiny_dataset
    again = build_dataset(BuildConfig(out=str(root), **TINY), progress=False)
    assert again["clips"] == summary["clips"]
    assert again["last_run_seconds"] < max(3.0, summary["last_run_seconds"] / 3)


def test_resume_after_kill_reproduces_the_same_clips(tiny_dataset, tmp_path):
    root, summary = tiny_dataset
    copy = tmp_path / "ds"
    shutil.copytree(root, copy)
    shards = sorted((copy / "shards").glob("*.jsonl"))
    # simulate a kill: the last shard lost its metadata (killed between the two renames),
    # a temp file is left over, and the final index was never written
    victim = shards[-1]
    lost = {r["clip_id"] for r in map(json.loads, victim.read_text().splitlines())}
    victim.unlink()
    (copy / "shards" / ".00099.npy.abc.tmp").write_bytes(b"partial")
    (copy / "clips.jsonl").unlink()
    s = build_dataset(BuildConfig(out=str(copy), **TINY), progress=False)
    assert not list(copy.rglob("*.tmp"))
    npys = sorted(p.stem for p in (copy / "shards").glob("*.npy"))
    assert npys == sorted(p.stem for p in (copy / "shards").glob("*.jsonl"))  # no orphan data left
    old = {r["clip_id"]: r for r in read_clips(root)}
    new = {r["clip_id"]: r for r in read_clips(copy)}
    assert lost <= set(new) and s["clips"] >= len(old) - len(lost)
    for cid in lost:  # re-rendered bit for bit: arrangement and render are seeded
        a, b = old[cid], new[cid]
        assert {k: a[k] for k in ("caption", "split", "instruments")} == {k: b[k] for k in ("caption", "split", "instruments")}
        ma = np.load(root / "shards" / f"{a['shard']}.npy", mmap_mode="r")[a["frame"]:a["frame"] + 512]
        mb = np.load(copy / "shards" / f"{b['shard']}.npy", mmap_mode="r")[b["frame"]:b["frame"] + 512]
        np.testing.assert_array_equal(ma, mb)
    assert s["fingerprint"] == summary["fingerprint"]  # the same content, wherever the re-render was stored


def test_resume_refuses_different_settings(tiny_dataset):
    root, _ = tiny_dataset
    with pytest.raises(DittoError, match="different settings \\(seed\\)"):
        build_dataset(BuildConfig(out=str(root), **{**TINY, "seed": 5}), progress=False)


def _good_midi(path):
    from music21 import note, stream

    s = stream.Stream()
    for i, p in enumerate(["C4", "E4", "G4", "C5", "G4", "E4"] * 6):
        s.append(note.Note(p, quarterLength=1.0))
    s.write("midi", fp=str(path))


def test_user_source_skips_bad_files_with_reasons(tmp_path):
    src = tmp_path / "scores"
    src.mkdir()
    _good_midi(src / "good.mid")
    (src / "tune.abc").write_text("X:1\nT:t\nM:4/4\nL:1/4\nK:D\n" + "DEFG|ABcd|" * 12 + "\n")
    (src / "empty.mid").write_bytes(b"")
    (src / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xff")
    (src / "readme.xml").write_text("<html>not music</html>")
    (src / "short.abc").write_text("X:1\nT:s\nL:1/4\nK:C\nC|\n")
    out = tmp_path / "out"
    s = build_dataset(BuildConfig(out=str(out), source=str(src), collection="mine", hours=0.05, max_seconds=12,
                                  workers=1, val_frac=0.0, test_frac=0.0), progress=False)
    skipped = {p["piece_id"].split("/")[-1]: p["reason"] for p in json.loads((out / "skipped.json").read_text())}
    assert set(skipped) == {"scores:empty.mid", "scores:corrupt.mid", "scores:readme.xml", "scores:short.abc"}
    assert skipped["scores:empty.mid"] == "empty file"
    assert "cannot parse" in skipped["scores:corrupt.mid"]
    assert "shorter than one" in skipped["scores:short.abc"]
    assert s["pieces"] == 2 and s["hours_per_collection"].keys() == {"mine"}
    assert not list(out.rglob("*.tmp"))


def test_process_pool_build(tmp_path):
    """The default multi-process path (spawned workers) produces a valid dataset."""
    s = build_dataset(BuildConfig(out=str(tmp_path / "p"), **{**TINY, "hours": 0.01, "workers": 2}), progress=False)
    assert s["clips"] > 0 and s["workers"] == 2


def test_missing_soundfont_fails_before_work(tmp_path):
    with pytest.raises(DittoError, match="soundfont not found"):
        build_dataset(BuildConfig(out=str(tmp_path / "x"), soundfont=str(tmp_path / "no.sf2"), **TINY),
                      progress=False)
    assert not (tmp_path / "x" / "shards").exists()
