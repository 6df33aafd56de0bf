import json
import shutil

import numpy as np
import pytest
import torch

from dittomusic.data.dataset import MelDataset, TagVocab, dataset_fingerprint, read_clips
from dittomusic.data.stats import dataset_stats, format_stats, load_clip, plot_examples
from dittomusic.errors import DittoError


def test_dataset_items(tiny_dataset, mel_cfg):
    root, _ = tiny_dataset
    ds = MelDataset(root, "train")
    item = ds[0]
    assert item["mel"].shape == (mel_cfg.n_mels, mel_cfg.clip_frames) and item["mel"].dtype == torch.float32
    assert -1 <= item["mel"].min() and item["mel"].max() <= 1
    v = ds.vocab
    assert item["families"].shape == (len(v.families),) and item["families"].sum() >= 1
    assert 0 <= int(item["collection"]) < len(v.collections)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["mel"].shape == (4, mel_cfg.n_mels, mel_cfg.clip_frames)


def test_eval_splits_are_not_cropped(tiny_dataset):
    root, _ = tiny_dataset
    ds = MelDataset(root, "test")
    assert not ds.random_crop
    np.testing.assert_array_equal(ds[0]["mel"].numpy(), load_clip(root, ds.rows[0]))


def test_random_crops_are_a_function_of_seed_epoch_index(tiny_dataset):
    root, _ = tiny_dataset
    a, b = MelDataset(root, "train", seed=3), MelDataset(root, "train", seed=3)
    starts = [a.crop_start(i) for i in range(len(a))]
    assert starts == [b.crop_start(i) for i in range(len(b))]
    assert any(s != r["frame"] for s, r in zip(starts, a.rows))
    a.set_epoch(1)
    assert [a.crop_start(i) for i in range(len(a))] != starts
    for i, r in enumerate(a.rows):  # crops stay inside their render
        assert r["seg_start"] <= a.crop_start(i) <= r["seg_end"] - a.clip_frames


def test_vocab_encode_and_errors(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    v = TagVocab.load(root)
    row = read_clips(root)[0]
    enc = v.encode(row)
    assert v.collections[int(enc["collection"])] == row["collection"]
    assert {v.families[i] for i in torch.nonzero(enc["families"]).flatten().tolist()} == set(row["families"])
    with pytest.raises(DittoError, match="not a finished dataset"):
        TagVocab.load(tmp_path)
    with pytest.raises(DittoError, match="not a finished dataset"):
        MelDataset(tmp_path)


def test_stats_and_plot(tiny_dataset, tmp_path):
    root, summary = tiny_dataset
    st = dataset_stats(root)
    assert st["clips"] == summary["clips"]
    assert abs(sum(st["hours_per_collection"].values()) - st["hours"]) < 1e-9
    assert sum(st["hours_per_family"].values()) >= st["hours"]  # multi-instrument clips count per family
    assert st["fingerprint"] == summary["fingerprint"]
    text = format_stats(st)
    assert "hours per collection" in text and "chorale" in text and summary["fingerprint"] in text
    png = plot_examples(root, tmp_path / "ex.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _relaid(root, dst):
    """The same build stored the other way round: shards renamed in reverse, rows reversed, as a build
    whose workers finished in another order would store it."""
    shutil.copytree(root, dst)
    names = sorted(p.stem for p in (dst / "shards").glob("*.npy"))
    rename = dict(zip(names, reversed(names)))
    for n in names:
        for ext in ("npy", "jsonl"):
            (dst / "shards" / f"{n}.{ext}").rename(dst / "shards" / f"tmp_{n}.{ext}")
    for n in names:
        for ext in ("npy", "jsonl"):
            (dst / "shards" / f"tmp_{n}.{ext}").rename(dst / "shards" / f"{rename[n]}.{ext}")
    rows = [json.loads(line) for line in (root / "clips.jsonl").read_text().splitlines()]
    (dst / "clips.jsonl").write_text("".join(json.dumps({**r, "shard": rename[r["shard"]]}) + "\n" for r in reversed(rows)))
    return dst


def test_clip_order_and_fingerprint_ignore_where_clips_are_stored(tiny_dataset, tmp_path):
    root, summary = tiny_dataset
    other = _relaid(root, tmp_path / "relaid")
    assert len({p.stem for p in (root / "shards").glob("*.npy")}) > 1  # the relayout moves something
    assert [r["clip_id"] for r in read_clips(other)] == [r["clip_id"] for r in read_clips(root)]
    assert [r["clip_id"] for r in read_clips(other, "test")] == [r["clip_id"] for r in read_clips(root, "test")]
    assert dataset_fingerprint(other) == dataset_fingerprint(root) == summary["fingerprint"]
    a, b = MelDataset(root, "train", random_crop=False), MelDataset(other, "train", random_crop=False)
    assert torch.equal(a[3]["mel"], b[3]["mel"])  # index i is the same clip in both


def test_fingerprint_sees_a_changed_frame_or_tag(tiny_dataset, tmp_path):
    root, summary = tiny_dataset
    changed = tmp_path / "changed"
    shutil.copytree(root, changed)
    shard = sorted((changed / "shards").glob("*.npy"))[0]
    a = np.load(shard)
    a[5, 7] += 1
    np.save(shard, a)
    assert dataset_fingerprint(changed) != summary["fingerprint"]
    retagged = tmp_path / "retagged"
    shutil.copytree(root, retagged)
    rows = [json.loads(line) for line in (root / "clips.jsonl").read_text().splitlines()]
    rows[0]["tempo_bpm"] += 1
    (retagged / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert dataset_fingerprint(retagged) != summary["fingerprint"]
