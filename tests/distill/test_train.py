"""`dittomusic distill`: learns, resumes exactly, runs under torchrun, exports; the CLI fails cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from dittomusic.checkpoint import load_tensors
from dittomusic.cli import cli
from dittomusic.distill import DistillConfig, cd_loss, distill, load_student, student_from_teacher, time_grid
from dittomusic.errors import DittoError
from dittomusic.models.loading import load_model
from dittomusic.train.base import CKPT

ARGS = dict(batch_size=4, warmup=2, log_every=1, val_every=5, val_clips=4, lr=1e-3)


def _cfg(root, teacher, out, kind="cd", steps=6, **kw):
    return DistillConfig(kind=kind, data=str(root), out=str(out), teacher=str(teacher), steps=steps, **{**ARGS, **kw})


def _history(run):
    return json.loads((run / "history.json").read_text())


def _self_consistency(student, teacher, root):
    """The CD loss with the student as its own target, on fixed clips, grid points and noise."""
    from dittomusic.data.dataset import MelDataset
    from dittomusic.train.base import cond_from_batch

    ds = MelDataset(root, "train", random_crop=False)
    b = {k: torch.stack([ds[i][k] for i in range(8)]) for k in ("mel", "collection", "tempo", "mode", "instruments")}
    grid = torch.tensor(time_grid(20), dtype=torch.float32)
    i = torch.arange(8) * 2 + 2
    noise = torch.randn(b["mel"].shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(cd_loss(student, student, teacher, b["mel"], grid[i], grid[i + 1], noise, cond_from_batch(b), 3.0))


def test_cd_reduces_its_loss_and_the_one_step_error(tiny_dataset, teacher_path, tmp_path):
    root, _ = tiny_dataset
    res = distill(_cfg(root, teacher_path, tmp_path / "r", steps=40), progress=False)
    teacher, _ = load_model(teacher_path)
    student, meta = load_student(tmp_path / "r")
    assert (meta["kind"], meta["guidance"], meta["grid"]) == ("cd", 3.0, time_grid(20))
    before = _self_consistency(student_from_teacher(teacher, "cd"), teacher, root)
    assert _self_consistency(student, teacher, root) < 0.95 * before
    # one-jump distance to the teacher's guided 20-step DDIM: falls steadily from the teacher's own
    val = [h["val_loss"] for h in _history(tmp_path / "r") if "val_loss" in h]
    assert len(val) == 8 and val[-1] < val[0] < res["val_init"]
    assert (tmp_path / "r" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupted_ctd_run_resumes_bit_for_bit(tiny_dataset, teacher_path, tmp_path):
    root, _ = tiny_dataset
    distill(_cfg(root, teacher_path, tmp_path / "ref", "ctd"), progress=False)
    run = tmp_path / "cut"
    for _ in range(2):  # stops (after a checkpoint) at the first step past max_minutes
        distill(_cfg(root, teacher_path, run, "ctd", max_minutes=1e-9), progress=False)
    assert load_tensors(run / CKPT)[1]["step"] == 2
    distill(_cfg(root, teacher_path, run, "ctd"), progress=False)
    loss = lambda r: [h for h in _history(r) if "loss" in h]  # noqa: E731
    assert [h["loss"] for h in loss(run)] == [h["loss"] for h in loss(tmp_path / "ref")]
    a, b = load_tensors(tmp_path / "ref" / CKPT)[0], load_tensors(run / CKPT)[0]
    assert a.keys() == b.keys() and any(k.startswith("target.s_mlp") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(DittoError, match="different settings \\(guidance\\)"):
        distill(_cfg(root, teacher_path, run, "ctd", guidance=2.0), progress=False)


def test_init_continues_a_student_with_a_fresh_schedule_and_counts_its_cost(tiny_dataset, teacher_path,
                                                                           latent_teacher_path, tmp_path):
    from dittomusic.distill import export_student

    root, _ = tiny_dataset
    distill(_cfg(root, teacher_path, tmp_path / "a", steps=8), progress=False)
    first, _ = load_student(tmp_path / "a")
    # a near-zero LR: the continued run's students stay where --init put them, not at the teacher
    distill(_cfg(root, teacher_path, tmp_path / "b", steps=2, lr=1e-12, init=str(tmp_path / "a")), progress=False)
    cont, meta = load_student(tmp_path / "b")
    teacher = student_from_teacher(load_model(teacher_path)[0], "cd")
    sa, sb, st = first.state_dict(), cont.state_dict(), teacher.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    assert any(not torch.allclose(sa[k], st[k], atol=1e-4) for k in sa)
    assert meta["distill"]["init"]["file"].endswith(CKPT) and meta["train_config"]["init"] == str(tmp_path / "a")
    rel = export_student(tmp_path / "b", tmp_path / "b.safetensors")
    tr = load_tensors(rel)[1]["train"]
    assert tr["steps"] == 2 and tr["continued_from"]["steps"] == 8
    assert tr["total_cpu_hours"] == pytest.approx(tr["cpu_hours"] + tr["continued_from"]["cpu_hours"], abs=2e-3)
    # interrupted and resumed, a continued run is the uninterrupted one bit for bit, and keeps its start's record
    ref = _cfg(root, teacher_path, tmp_path / "ref", steps=3, init=str(tmp_path / "a"))
    distill(ref, progress=False)
    for _ in range(2):
        distill(_cfg(root, teacher_path, tmp_path / "cut", steps=3, init=str(tmp_path / "a"), max_minutes=1e-9),
                progress=False)
    distill(_cfg(root, teacher_path, tmp_path / "cut", steps=3, init=str(tmp_path / "a")), progress=False)
    (a, ma), (b, mb) = load_tensors(tmp_path / "ref" / CKPT), load_tensors(tmp_path / "cut" / CKPT)
    assert all(torch.equal(a[k], b[k]) for k in a) and ma["distill"]["init"] == mb["distill"]["init"]
    # a release continues too; the wrong kind or another teacher is refused before any training
    distill(_cfg(root, teacher_path, tmp_path / "c", steps=1, lr=1e-12, init=str(rel)), progress=False)
    assert load_student(tmp_path / "c")[1]["distill"]["init"]["train"] == tr  # its release will sum all three
    with pytest.raises(DittoError, match="is a CD student; this run distills CTD"):
        distill(_cfg(root, teacher_path, tmp_path / "d", "ctd", init=str(rel)), progress=False)
    with pytest.raises(DittoError, match="another teacher file"):
        distill(_cfg(root, latent_teacher_path, tmp_path / "e", init=str(rel)), progress=False)
    with pytest.raises(DittoError, match="guidance 3.0, this run with 2.0"):
        distill(_cfg(root, teacher_path, tmp_path / "f", guidance=2.0, init=str(rel)), progress=False)


def test_ctd_under_torchrun_matches_one_process(tiny_dataset, teacher_path, tmp_path):
    root, _ = tiny_dataset
    distill(_cfg(root, teacher_path, tmp_path / "one", "ctd", steps=3), progress=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "dittomusic", "distill", "--kind", "ctd", "--data", str(root), "--out", str(tmp_path / "two"),
           "--teacher", str(teacher_path), "--steps", "3", "--batch-size", "4", "--warmup", "2", "--log-every", "1",
           "--val-every", "5", "--val-clips", "4", "--lr", "1e-3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_tensors(tmp_path / "two" / CKPT)[1]["world"] == 2
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    torch.testing.assert_close(torch.tensor([h.get("loss", h.get("val_loss")) for h in two]),
                               torch.tensor([h.get("loss", h.get("val_loss")) for h in one]), rtol=1e-4, atol=1e-7)


def test_cli_distills_and_exports(tiny_dataset, teacher_path, tmp_path):
    root, _ = tiny_dataset
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["distill", "--kind", "ctd", "--data", str(root), "--out", str(run), "--teacher",
                                 str(teacher_path), "--steps", "2", "--batch-size", "2", "--val-clips", "2",
                                 "--guidance", "2.5", "--ema-decay", "0.99"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["step"] == 2
    out = tmp_path / "student.safetensors"
    r = CliRunner().invoke(cli, ["distill", "export", str(run), str(out)])
    assert r.exit_code == 0, r.output
    tensors, meta = load_tensors(out)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert (meta["kind"], meta["guidance"], meta["model_config"]["target_time"]) == ("ctd", 2.5, True)
    assert meta["train_config"]["ema_decay"] == 0.99
    student, meta = load_student(out)
    ema, _ = load_model(run / CKPT)  # a run checkpoint loads its EMA student
    x, t = torch.randn(1, 160, 64), torch.tensor([500.0])
    torch.testing.assert_close(student(x, t, None, None, torch.tensor([200.0])),
                               ema(x, t, None, None, torch.tensor([200.0])), rtol=2e-2, atol=2e-3)


def test_cli_bad_input_is_one_clear_line(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    cases = [
        (["--kind", "cd", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "does not exist"),
        (["--kind", "gan", "--data", str(root), "--out", str(tmp_path / "o")], "Invalid value for '--kind'"),
        (["--kind", "cd", "--data", str(tmp_path), "--out", str(tmp_path / "o")], "not a finished dataset"),
        (["--data", str(root)], "missing --kind, --out"),
        (["--kind", "cd", "--data", str(root), "--out", str(tmp_path / "o")], "tag vocabulary differs"),  # bundled
    ]
    for args, msg in cases:
        r = CliRunner().invoke(cli, ["distill", *args])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, r.output
        assert len([ln for ln in r.output.splitlines() if ln.startswith("Error")]) == 1
    r = CliRunner().invoke(cli, ["distill", "export", str(tmp_path), str(tmp_path / "s.safetensors")])
    assert r.exit_code == 1 and "checkpoint not found" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_latent_teacher_distills_in_its_latent_and_steers_through_ditto2(tiny_dataset, latent_teacher_path,
                                                                            tmp_path, precision):
    from dittomusic.control import get_control, intensity_preset
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.distill import export_student
    from dittomusic.generate import Pipeline, make_tags

    root, _ = tiny_dataset
    run = tmp_path / "r"
    res = distill(_cfg(root, latent_teacher_path, run, steps=20, precision=precision), progress=False)
    meta = load_tensors(run / CKPT)[1]
    # a latent is never clipped to [-1, 1], whatever --teacher-clip says: the pipeline does not clip it
    assert meta["distill"]["latent"] and not meta["distill"]["teacher_clip"]
    val = [h["val_loss"] for h in _history(run) if "val_loss" in h]
    assert len(val) == 4 and val[-1] < res["val_init"]
    out = export_student(run, tmp_path / "student.safetensors")
    tensors, smeta = load_tensors(out)
    assert not any(k.startswith("autoencoder.") for k in tensors)  # the student is the denoiser alone
    assert smeta["model_config"]["n_mels"] == 4 and smeta["model_config"]["clip_frames"] == 256
    pipe = Pipeline(latent_teacher_path, "cpu", "griffinlim")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", 512, -40, -20))
    s = Settings(steps=3, student=str(out), decode="student", decode_steps=2, refresh=2,
                 optim=OptimConfig(iters=4, lr=0.05))
    r = run_control(pipe, "ditto2", ctrl, make_tags(pipe.vocab, collection="chorale"), seed=0, settings=s)
    assert r.report["method"] == "ditto2" and r.mel.shape == (1, 160, 512)  # decoded through the teacher's AE
    if precision == "bf16":  # a run resumes only with the precision it started with
        with pytest.raises(DittoError, match="different settings \\(precision\\)"):
            distill(_cfg(root, latent_teacher_path, run, steps=20, precision="fp32"), progress=False)
