import subprocess
import sys

import pytest
import torch

from dittomusic.checkpoint import load_tensors
from dittomusic.models.loading import load_model
from dittomusic.train.base import CKPT, TrainConfig, export_release, train

from ..runs import assert_same_run, child_env, kill_after_checkpoint, losses

TINY_MODEL = {"width": 32, "depth": 2, "heads": 2, "patch_frames": 8, "denoise_head": 64}
CLI_MODEL = ["--width", "32", "--depth", "2", "--heads", "2", "--patch-frames", "8", "--denoise-head", "64"]


def _cfg(data, out, steps=6, **kw):
    kw = {"warmup": 2, "model": TINY_MODEL, **kw}
    return TrainConfig(data=str(data), out=str(out), steps=steps, batch_size=4, log_every=1,
                       val_every=3, val_clips=4, **kw)


def _fixed_eval_loss(model, root):
    """Diffusion loss on fixed training clips, timesteps and noise (not the noisy per-step loss)."""
    from dittomusic.data.dataset import MelDataset
    from dittomusic.sampling.schedule import NoiseSchedule
    from dittomusic.train.base import cond_from_batch, diffusion_loss

    ds = MelDataset(root, "train", random_crop=False)
    b = {k: torch.stack([ds[i][k] for i in range(8)]) for k in ("mel", "collection", "tempo", "mode", "instruments")}
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(50, 950, 8).long()
    noise = torch.randn(b["mel"].shape, generator=g)
    with torch.no_grad():
        return float(diffusion_loss(model, b["mel"], t, noise, cond_from_batch(b), None, NoiseSchedule.cosine(),
                                    "v_prediction"))


def test_training_reduces_loss_and_writes_curve(tiny_dataset, tmp_path):
    from dittomusic.models import MelDiT, ModelConfig

    root, _ = tiny_dataset
    res = train(_cfg(root, tmp_path / "r", steps=100, lr=3e-3, warmup=5), progress=False)
    assert res["step"] == 100 and len(losses(tmp_path / "r")) == 100
    tensors, meta = load_tensors(tmp_path / "r" / CKPT)
    trained = MelDiT(ModelConfig.from_dict(meta["model_config"]))
    trained.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    torch.manual_seed(0)
    initial = MelDiT(ModelConfig.from_dict(meta["model_config"]))
    before, after = _fixed_eval_loss(initial, root), _fixed_eval_loss(trained, root)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "r" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert res["cpu_hours"] > 0


def test_resume_after_kill_follows_the_same_trajectory(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    ref = tmp_path / "ref"
    train(_cfg(root, ref, steps=8), progress=False)
    # a separate process checkpointing every step, SIGKILLed mid-run
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dittomusic", "train", "--data", str(root), "--out", str(run), "--steps", "8",
           "--batch-size", "4", "--warmup", "2", "--log-every", "1", "--val-every", "3", "--ckpt-minutes", "0.0001",
           *CLI_MODEL]
    kill_after_checkpoint(cmd, run, steps=8)
    # the test config must match the CLI defaults used above for the resume to be accepted
    train(_cfg(root, run, steps=8, ckpt_minutes=0.0001), progress=False)
    assert_same_run(ref, run)


def test_resume_refuses_changed_settings(tiny_dataset, tmp_path):
    from dittomusic.errors import DittoError

    root, _ = tiny_dataset
    train(_cfg(root, tmp_path / "r", steps=2), progress=False)
    with pytest.raises(DittoError, match="different settings \\(lr\\)"):
        train(_cfg(root, tmp_path / "r", steps=2, lr=1e-2), progress=False)


def test_ddp_two_processes_match_one_process(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    single = tmp_path / "single"
    train(_cfg(root, single, steps=4), progress=False)
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "dittomusic", "train", "--data", str(root), "--out", str(ddp), "--steps", "4", "--batch-size", "4",
           "--warmup", "2", "--log-every", "1", "--val-every", "3", *CLI_MODEL]
    r = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = load_tensors(ddp / CKPT)[1]
    assert meta["world"] == 2 and meta["step"] == 4
    # same global batch, same draws: gradient averaging over ranks == the full-batch gradient
    torch.testing.assert_close(torch.tensor(losses(ddp)), torch.tensor(losses(single)), rtol=1e-4, atol=1e-5)


def test_export_release_fp16_loads_and_matches_ema(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    train(_cfg(root, tmp_path / "r", steps=3), progress=False)
    out = export_release(tmp_path / "r", tmp_path / "base.safetensors")
    tensors, meta = load_tensors(out)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert meta["train"]["steps"] == 3 and meta["model_config"]["width"] == 32
    fp16_model, _ = load_model(out)
    ema_model, _ = load_model(tmp_path / "r" / CKPT)  # a training checkpoint loads its EMA weights
    x, t = torch.randn(2, 160, 512), torch.tensor([10.0, 900.0])
    torch.testing.assert_close(fp16_model(x, t), ema_model(x, t), rtol=2e-2, atol=2e-3)


def test_init_continues_from_a_release_and_refuses_another_architecture(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    train(_cfg(root, tmp_path / "r", steps=60, lr=3e-3, warmup=5), progress=False)
    release = export_release(tmp_path / "r", tmp_path / "base.safetensors", torch.float32)
    trained, _ = load_model(release)
    fresh = _cfg(root, tmp_path / "fresh", steps=1, lr=1e-9, warmup=0)
    warm = _cfg(root, tmp_path / "warm", steps=1, lr=1e-9, warmup=0, init=str(release))
    train(fresh, progress=False)
    train(warm, progress=False)
    warm_model, _ = load_model(tmp_path / "warm" / CKPT)
    fresh_model, _ = load_model(tmp_path / "fresh" / CKPT)
    # EMA after one step of a near-zero LR is the starting point: the release's weights, not a new init
    assert _fixed_eval_loss(warm_model, root) == pytest.approx(_fixed_eval_loss(trained, root), rel=1e-3)
    assert _fixed_eval_loss(fresh_model, root) > 1.2 * _fixed_eval_loss(trained, root)
    # resuming the warm run keeps its settings; another architecture is refused with a clear message
    from dittomusic.errors import DittoError

    other = _cfg(root, tmp_path / "other", steps=1, init=str(release), model={**TINY_MODEL, "width": 48})
    with pytest.raises(DittoError, match="another architecture.*width"):
        train(other, progress=False)


def test_bf16_autocast_follows_the_fp32_run(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    train(_cfg(root, tmp_path / "fp32", steps=8, lr=1e-3), progress=False)
    train(_cfg(root, tmp_path / "bf16", steps=8, lr=1e-3, precision="bf16"), progress=False)
    a, b = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert a != b  # the forward really ran in bfloat16
    assert all(abs(x - y) < 0.05 * x for x, y in zip(a, b))
    tensors, _ = load_tensors(tmp_path / "bf16" / CKPT)
    assert all(v.dtype == torch.float32 for k, v in tensors.items() if k.startswith(("model.", "ema.")))
    from dittomusic.errors import DittoError

    with pytest.raises(DittoError, match="precision"):
        train(_cfg(root, tmp_path / "x", precision="fp8"), progress=False)
