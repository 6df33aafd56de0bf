import json
import subprocess
import sys

import pytest
import torch

from dittomusic.checkpoint import load_tensors
from dittomusic.clap.train import CKPT, ClapTrainConfig, contrastive_loss, export_clap, train_clap
from dittomusic.errors import DittoError

from ..runs import assert_same_run, child_env, kill_after_checkpoint, losses

from .conftest import TINY_CLAP, WordHashEncoder

CLI_MODEL = ["--channels", "16", "--layers", "1", "--heads", "2", "--embed-dim", "32", "--text-hidden", "64"]


def _cfg(synth, out, steps=6, **kw):
    root, caps = synth
    kw = {"warmup": 2, "batch_size": 8, "crop_frames": 48, "val_every": 3, "val_clips": 8, "model": TINY_CLAP, **kw}
    return ClapTrainConfig(data=str(root), captions=str(caps), out=str(out), steps=steps, log_every=1, **kw)


def test_contrastive_loss_is_low_for_matching_pairs_and_multi_positive_counts_true_matches():
    a = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    s = torch.tensor(20.0)
    assert contrastive_loss(a, a, s, None) < contrastive_loss(a, a.roll(1, 0), s, None)
    pos = torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(contrastive_loss(a, a, s, pos), contrastive_loss(a, a, s, None))
    # caption 0 reads exactly like clip 1, and truthfully describes it: only pairs-only InfoNCE calls that wrong
    t = a.clone()
    t[0] = a[1]
    pos[0, 1] = True
    assert contrastive_loss(a, t, torch.tensor(20.0), pos) < 0.8 * contrastive_loss(a, t, torch.tensor(20.0), None)


def test_training_raises_retrieval_above_chance(synth, tmp_path):
    from dittomusic.clap.eval import evaluate_clap

    root, caps = synth
    res = train_clap(_cfg(synth, tmp_path / "r", steps=150, lr=3e-3, warmup=10, batch_size=16, val_every=50),
                     progress=False)
    assert res["step"] == 150 and (tmp_path / "r" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    hist = losses(tmp_path / "r")
    assert sum(hist[-20:]) / 20 < 0.7 * sum(hist[:10]) / 10, (hist[:10], hist[-20:])
    rep = evaluate_clap(tmp_path / "r", root, caps, classifier=False, encoder=WordHashEncoder(), split="val",
                        progress=False)
    seen = rep["retrieval"]["seen"]
    # 10 val renders: chance R@1 is 0.1; the relaxed one (any truthfully described clip) is the stable signal
    assert seen["relaxed"]["text_to_audio_R@1"] >= 0.5, rep["retrieval"]
    assert seen["text_to_audio_R@1"] + seen["audio_to_text_R@1"] > 2 * seen["chance_R@1"], rep["retrieval"]
    assert rep["zero_shot"]["collection_accuracy"] > 1 / 3 + 0.2, rep["zero_shot"]


def test_resume_after_kill_gives_bit_identical_weights(synth, tmp_path):
    ref = tmp_path / "ref"
    # the killed half runs with one thread (_env); so must the in-process halves: a float sum over two
    # threads rounds differently
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _kill_and_resume(synth, ref, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(synth, ref, tmp_path):
    root, caps = synth
    train_clap(_cfg(synth, ref, steps=10), progress=False)
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dittomusic", "clap", "train", "--data", str(root), "--captions", str(caps),
           "--out", str(run), "--steps", "10", "--batch-size", "8", "--crop-frames", "48", "--warmup", "2",
           "--log-every", "1", "--val-every", "3", "--val-clips", "8", "--ckpt-minutes", "0.0001", *CLI_MODEL]
    kill_after_checkpoint(cmd, run, steps=10)
    train_clap(_cfg(synth, run, steps=10, ckpt_minutes=0.0001), progress=False)
    assert_same_run(ref, run)


def test_resume_refuses_changed_settings(synth, tmp_path):
    train_clap(_cfg(synth, tmp_path / "r", steps=2), progress=False)
    with pytest.raises(DittoError, match="different settings \\(crop_frames\\)"):
        train_clap(_cfg(synth, tmp_path / "r", steps=2, crop_frames=32), progress=False)


def test_ddp_two_processes_match_one_process(synth, tmp_path):
    import socket

    root, caps = synth
    train_clap(_cfg(synth, tmp_path / "single", steps=3), progress=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "dittomusic", "clap", "train", "--data", str(root), "--captions", str(caps), "--out",
           str(tmp_path / "ddp"), "--steps", "3", "--batch-size", "8", "--crop-frames", "48", "--warmup", "2",
           "--log-every", "1", "--val-every", "3", "--val-clips", "8", *CLI_MODEL]
    r = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_tensors(tmp_path / "ddp" / CKPT)[1]["world"] == 2
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "ddp")), torch.tensor(losses(tmp_path / "single")),
                               rtol=1e-4, atol=1e-5)
    hist = [[h["grad_norm"] for h in json.loads((tmp_path / r / "history.json").read_text()) if "loss" in h]
            for r in ("ddp", "single")]
    torch.testing.assert_close(torch.tensor(hist[0]), torch.tensor(hist[1]), rtol=1e-5, atol=0)  # same gradient scale
    a, b = load_tensors(tmp_path / "ddp" / CKPT)[0], load_tensors(tmp_path / "single" / CKPT)[0]
    for k in (k for k in a if k.startswith("model.")):  # Adam's first steps magnify summation-order noise
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=3e-4)


def test_export_is_fp16_carries_its_config_and_matches_the_ema(synth, tmp_path):
    from dittomusic.clap.model import load_clap

    train_clap(_cfg(synth, tmp_path / "r", steps=3), progress=False)
    out = export_clap(tmp_path / "r", tmp_path / "clap.safetensors")
    tensors, meta = load_tensors(out)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert meta["kind"] == "clap" and meta["train"]["steps"] == 3 and meta["clap_config"]["channels"] == 16
    assert meta["clap_config"]["text_encoder"] == WordHashEncoder.name and meta["clap_config"]["mel"]["n_mels"] == 32
    fp16, _ = load_clap(out)
    ema, _ = load_clap(tmp_path / "r")
    mel = torch.rand(2, 32, 64) * 2 - 1
    torch.testing.assert_close(fp16.embed_audio(mel), ema.embed_audio(mel), rtol=2e-2, atol=2e-2)
