import json
import shutil

import numpy as np
import pytest
import torch

from dittomusic.audio.mel import MelConfig, MelSpectrogram
from dittomusic.data.dataset import read_clips
from dittomusic.data.pairs import PairedSegments, PairsConfig, build_pairs, renders_of, select_renders
from dittomusic.errors import DittoError


def _rows(audio):
    return [json.loads(x) for x in (audio / "renders.jsonl").read_text().splitlines()]


def test_pairs_cover_train_and_val_only_and_match_the_stored_mels(tiny_pairs):
    root, audio, summary = tiny_pairs
    rows = _rows(audio)
    assert summary["renders"] == len(rows) > 0 and summary["left_out"] == 0
    assert {r["split"] for r in rows} == {"train", "val"}  # test pieces are never rendered
    test_pieces = {r["piece_id"] for r in read_clips(root, "test")}
    assert test_pieces and not test_pieces & {r["piece_id"] for r in rows}
    train = {(r["piece_id"], r["variant"]) for r in renders_of(read_clips(root, "train"))}
    assert train == {(r["piece_id"], r["variant"]) for r in rows if r["split"] == "train"}  # hours=1: all of them
    # the re-render is bit-exact: its float16 mel equals the stored one
    assert summary["max_mel_error"] == 0.0
    for r in rows:
        assert r["samples"] == (r["seg_end"] - r["seg_start"]) * 256


def test_segments_are_aligned_sample_for_sample(tiny_pairs):
    root, audio, _ = tiny_pairs
    ds = PairedSegments(root, audio, "train", frames=64)
    mod = MelSpectrogram(MelConfig())
    for pos in (0, len(ds) // 2, len(ds) - 1):
        mel, wav = ds.segment(pos)
        assert mel.shape == (160, 64) and wav.shape == (63 * 256,)
        got = mod(torch.from_numpy(wav)).numpy()
        # interior frames (their windows lie inside the segment) match the stored mel up to fp16 rounding and
        # int16 noise, which shows only in the quietest bins (measured: mean 2e-4, max 0.04)
        err = np.abs(got[:, 4:-4] - mel[:, 4:-4])
        assert err.mean() < 2e-3 and np.percentile(err, 99) < 0.02
        # one hop off is clearly worse: the check has teeth
        shifted = mod(torch.from_numpy(np.roll(wav, 256))).numpy()
        assert np.abs(shifted[:, 8:-8] - mel[:, 8:-8]).mean() > 5 * np.abs(got[:, 8:-8] - mel[:, 8:-8]).mean()


def test_batches_are_a_pure_function_of_positions(tiny_pairs):
    root, audio, _ = tiny_pairs
    a = PairedSegments(root, audio, "train", frames=32)
    b = PairedSegments(root, audio, "train", frames=32)
    pos = [3, len(a) - 1, 0]
    ma, wa = a.batch(pos)
    mb, wb = b.batch(pos)
    assert ma.shape == (3, 160, 32) and wa.shape == (3, 31 * 256)
    assert torch.equal(ma, mb) and torch.equal(wa, wb)


def test_selection_is_balanced_in_hours_and_a_larger_budget_extends_a_smaller_one():
    mel = MelConfig()
    renders = [{"piece_id": f"{c}{i}", "variant": 0, "collection": c, "split": "train", "seg_start": 0,
                "seg_end": 5168} for c in "abc" for i in range(10)]  # 60 s each
    small = select_renders(renders, "train", 0.05, mel, seed=0)
    big = select_renders(renders, "train", 0.2, mel, seed=0)
    assert big[:len(small)] == small and len(small) == 3 and len(big) == 12
    assert {r["collection"] for r in small} == {"a", "b", "c"}
    assert select_renders(renders, "test", 1.0, mel, seed=0) == []
    # balanced in hours, not in renders: short folk tunes against long quartet windows
    mixed = [{"piece_id": f"{c}{i}", "variant": 0, "collection": c, "split": "train", "seg_start": 0,
              "seg_end": frames} for c, frames in (("short", 862), ("long", 5168)) for i in range(40)]
    hours = {"short": 0.0, "long": 0.0}
    for r in select_renders(mixed, "train", 0.15, mel, seed=0):
        hours[r["collection"]] += r["seg_end"] * 256 / 22050 / 3600
    assert abs(hours["short"] - hours["long"]) < 60 / 3600  # within one long render


def test_resume_after_kill_reproduces_the_same_audio(tiny_pairs, tmp_path):
    root, audio, _ = tiny_pairs
    copy = tmp_path / "audio"
    shutil.copytree(audio, copy)
    shards = sorted((copy / "shards").glob("*.jsonl"))
    shards[-1].unlink()  # killed between the .npy and the .jsonl rename
    (copy / "shards" / ".00042.npy.x.tmp").write_bytes(b"partial")
    (copy / "renders.jsonl").unlink()
    s = build_pairs(PairsConfig(data=str(root), out=str(copy), hours=1.0, val_minutes=1.0, workers=1), progress=False)
    assert not list(copy.rglob("*.tmp"))
    old = {(r["piece_id"], r["variant"]): r for r in _rows(audio)}
    new = {(r["piece_id"], r["variant"]): r for r in _rows(copy)}
    assert old.keys() == new.keys() and s["renders"] == len(old)
    for k in old:
        a = np.load(audio / "shards" / f"{old[k]['audio_shard']}.npy", mmap_mode="r")
        b = np.load(copy / "shards" / f"{new[k]['audio_shard']}.npy", mmap_mode="r")
        np.testing.assert_array_equal(a[old[k]["offset"]:old[k]["offset"] + old[k]["samples"]],
                                      b[new[k]["offset"]:new[k]["offset"] + new[k]["samples"]])


def test_a_render_that_does_not_match_its_mel_is_left_out(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    data = tmp_path / "ds"
    shutil.copytree(root, data)
    row = next(r for r in read_clips(data, "train"))
    shard = data / "shards" / f"{row['shard']}.npy"
    mel = np.load(shard)
    mel[row["seg_start"] + 10] += np.float16(0.1)  # as if the dataset came from another soundfont
    np.save(shard, mel)
    s = build_pairs(PairsConfig(data=str(data), out=str(tmp_path / "a"), hours=1.0, val_minutes=0, workers=1),
                    progress=False)
    left = json.loads((tmp_path / "a" / "mismatched.json").read_text())
    assert s["left_out"] == 1 and left[0]["piece_id"] == row["piece_id"] and "differs" in left[0]["error"]
    assert row["piece_id"] not in {r["piece_id"] for r in _rows(tmp_path / "a")}


def test_pairs_refuse_another_dataset_and_explain_missing_audio(tiny_pairs, tmp_path):
    root, audio, _ = tiny_pairs
    with pytest.raises(DittoError, match="vocoder pairs"):
        PairedSegments(root, tmp_path / "nothing")
    other = tmp_path / "ds"
    shutil.copytree(root, other)
    plan = json.loads((other / "plan.json").read_text())
    plan["content"]["seed"] = 7
    (other / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(DittoError, match="another dataset"):
        PairedSegments(other, audio)
    with pytest.raises(DittoError, match="another dataset or settings"):
        build_pairs(PairsConfig(data=str(other), out=str(audio), workers=1), progress=False)


def test_rerendering_in_process_keeps_the_callers_thread_count(tiny_dataset):
    """The benchmark re-renders its test clips in process, then times vocoders with --threads: the render
    workers' one-thread setting must not leak into the caller."""
    from dittomusic.data.pairs import rerender

    data, _ = tiny_dataset
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = rerender(data, renders_of(read_clips(data, "train")[:1]))
        assert "pcm" in got[0] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
