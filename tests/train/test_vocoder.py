import json
import subprocess
import sys

import pytest
import torch

from dittomusic.audio.neural import load_vocoder
from dittomusic.checkpoint import load_tensors
from dittomusic.errors import DittoError
from dittomusic.train.vocoder import CKPT, SpectralLoss, VocoderTrainConfig, export_vocoder, train_vocoder

from ..runs import assert_same_run, child_env, kill_after_checkpoint, losses

from ..audio.test_neural_vocoder import assert_same_vocoder
from ..conftest import TINY_VOCODER

CLI_MODEL = ["--dim", "32", "--intermediate", "64", "--layers", "2", "--n-fft", "512"]


def _cfg(pairs, out, steps=6, **kw):
    root, audio, _ = pairs
    kw = {"warmup": 2, "batch_size": 4, "segment_frames": 32, "val_every": 3, "model": TINY_VOCODER, **kw}
    return VocoderTrainConfig(data=str(root), audio=str(audio), out=str(out), steps=steps, log_every=1, val_clips=4,
                              **kw)


def _fixed_loss(net, pairs):
    from dittomusic.data.pairs import PairedSegments

    root, audio, _ = pairs
    ds = PairedSegments(root, audio, "train", 32)
    mel, wav = ds.batch(torch.linspace(0, len(ds) - 1, 8).long())
    with torch.no_grad():
        return float(SpectralLoss(ds.mel_cfg)(net(mel), wav))


def test_training_reduces_the_loss_and_writes_its_curve(tiny_pairs, tmp_path):
    from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig

    # without the magnitude prior, so that what a tiny net learns in 80 steps (the spectral envelope) is large
    # and a broken loop shows plainly; with it the start is already close (tests/audio: the prior's own test).
    # Nor mel matching, which pulls even an untrained head's band energies to the mel's.
    model = dict(TINY_VOCODER, magnitude_prior=False, mel_match=0.0)
    res = train_vocoder(_cfg(tiny_pairs, tmp_path / "r", steps=80, lr=1e-2, warmup=5, val_every=40, model=model),
                        progress=False)
    assert res["step"] == 80 and len(losses(tmp_path / "r")) == 80 and res["train_hours"] > 0
    trained, meta = load_vocoder(tmp_path / "r" / CKPT)
    trained_online = ConvNeXtVocoder(VocoderConfig.from_dict(meta["vocoder_config"]))
    tensors, _ = load_tensors(tmp_path / "r" / CKPT)
    trained_online.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    torch.manual_seed(0)
    initial = ConvNeXtVocoder(VocoderConfig.from_dict(meta["vocoder_config"]))
    before, after = _fixed_loss(initial, tiny_pairs), _fixed_loss(trained_online, tiny_pairs)
    assert after < 0.7 * before, (before, after)  # measured 0.48
    hist = json.loads((tmp_path / "r" / "history.json").read_text())
    assert any("val_mel_l1" in h for h in hist) and any("val_loss" in h for h in hist)
    assert (tmp_path / "r" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_after_kill_gives_bit_identical_weights(tiny_pairs, tmp_path):
    root, audio, _ = tiny_pairs
    ref = tmp_path / "ref"
    train_vocoder(_cfg(tiny_pairs, ref, steps=8), progress=False)
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dittomusic", "vocoder", "train", "--data", str(root), "--audio", str(audio),
           "--out", str(run), "--steps", "8", "--batch-size", "4", "--segment-frames", "32", "--warmup", "2",
           "--log-every", "1", "--val-every", "3", "--val-clips", "4", "--ckpt-minutes", "0.0001", *CLI_MODEL]
    kill_after_checkpoint(cmd, run, steps=8)
    train_vocoder(_cfg(tiny_pairs, run, steps=8, ckpt_minutes=0.0001), progress=False)
    assert_same_run(ref, run)


def test_resume_refuses_changed_settings(tiny_pairs, tmp_path):

    train_vocoder(_cfg(tiny_pairs, tmp_path / "r", steps=2), progress=False)
    with pytest.raises(DittoError, match="different settings \\(segment_frames\\)"):
        train_vocoder(_cfg(tiny_pairs, tmp_path / "r", steps=2, segment_frames=16), progress=False)


def test_adversarial_option_trains_both_nets(tiny_pairs, tmp_path):
    cfg = _cfg(tiny_pairs, tmp_path / "r", steps=2, adversarial=True, disc_width=4, batch_size=2)
    train_vocoder(cfg, progress=False)
    tensors, meta = load_tensors(tmp_path / "r" / CKPT)
    assert any(k.startswith("disc.") for k in tensors) and meta["step"] == 2
    torch.manual_seed(0)
    from dittomusic.audio.discriminators import Discriminators
    from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig

    init_g = ConvNeXtVocoder(VocoderConfig.from_dict(meta["vocoder_config"]))
    init_d = Discriminators(width=4)
    moved = lambda m, p: any(not torch.equal(v, tensors[f"{p}.{k}"]) for k, v in m.state_dict().items())  # noqa: E731
    assert moved(init_g, "model") and moved(init_d, "disc")


def test_ddp_two_processes_match_one_process(tiny_pairs, tmp_path):
    root, audio, _ = tiny_pairs
    single = tmp_path / "single"
    train_vocoder(_cfg(tiny_pairs, single, steps=3), progress=False)
    import socket

    with socket.socket() as sock:  # a free port: other test runs on this machine may hold a fixed one
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "dittomusic", "vocoder", "train", "--data", str(root), "--audio", str(audio), "--out",
           str(tmp_path / "ddp"), "--steps", "3", "--batch-size", "4", "--segment-frames", "32", "--warmup", "2",
           "--log-every", "1", "--val-every", "3", "--val-clips", "4", *CLI_MODEL]
    r = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = load_tensors(tmp_path / "ddp" / CKPT)[1]
    assert meta["world"] == 2 and meta["step"] == 3
    # losses are per-sample means over the same global batch, so averaging over ranks matches one process
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "ddp")), torch.tensor(losses(single)),
                               rtol=1e-3, atol=1e-4)


def test_export_carries_the_config_and_matches_the_ema(tiny_pairs, tmp_path):
    train_vocoder(_cfg(tiny_pairs, tmp_path / "r", steps=3), progress=False)
    out = export_vocoder(tmp_path / "r", tmp_path / "vocoder.safetensors")
    tensors, meta = load_tensors(out)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert meta["kind"] == "vocoder" and meta["train"]["steps"] == 3 and meta["vocoder_config"]["dim"] == 32
    assert meta["vocoder_config"]["mel"]["n_mels"] == 160
    fp16, _ = load_vocoder(out)
    ema, _ = load_vocoder(tmp_path / "r")  # a run folder loads its EMA weights
    mel = torch.rand(1, 160, 40) * 2 - 1
    with torch.no_grad():
        assert_same_vocoder(fp16, ema, mel)


def test_export_and_load_take_other_synthesis_settings_but_nothing_else(tiny_pairs, tmp_path):
    train_vocoder(_cfg(tiny_pairs, tmp_path / "r", steps=2), progress=False)
    out = export_vocoder(tmp_path / "r", tmp_path / "v.safetensors", synthesis={"gl_iters": 3, "mel_match": 0.5})
    net, meta = load_vocoder(out)
    assert meta["vocoder_config"]["gl_iters"] == 3 and net.cfg.mel_match == 0.5 and net.matches_mel
    assert load_vocoder(out, gl_iters=0)[0].cfg.gl_iters == 0
    assert load_vocoder(out, gl_momentum=0.9)[0].head.gl_momentum == 0.9
    with pytest.raises(DittoError, match="only change gl_iters, mel_match"):
        load_vocoder(out, dim=64)
    with pytest.raises(DittoError, match="only change gl_iters, mel_match"):
        export_vocoder(tmp_path / "r", tmp_path / "w.safetensors", synthesis={"layers": 1})
    with pytest.raises(DittoError, match="between 0 and 1"):
        load_vocoder(out, mel_match=2.0)


def test_loss_recipes_log_their_parts_and_an_empty_recipe_is_refused(tiny_pairs, tmp_path):
    # the default (locked) recipe regresses the head's magnitude: validation reports the spectrum's parts
    # and the vocoded audio's distances, but no phase terms (its phase is not learned)
    train_vocoder(_cfg(tiny_pairs, tmp_path / "locked", steps=3), progress=False)
    val = [h for h in json.loads((tmp_path / "locked" / "history.json").read_text()) if "val_spec_sc" in h][-1]
    assert {"val_spec_logmag", "val_spec_mel", "val_mel_l1", "val_sc"} <= set(val) and "val_if" not in val
    # a learned phase head under the spectrum loss also gets the instantaneous-frequency and group-delay terms
    model = dict(TINY_VOCODER, phase="recurrent")
    train_vocoder(_cfg(tiny_pairs, tmp_path / "rec", steps=3, model=model), progress=False)
    val = [h for h in json.loads((tmp_path / "rec" / "history.json").read_text()) if "val_if" in h][-1]
    assert val["val_if"] > 0 and val["val_gd"] > 0
    with pytest.raises(DittoError, match="nothing to train"):
        train_vocoder(_cfg(tiny_pairs, tmp_path / "none", spectrum_weight=0.0), progress=False)
