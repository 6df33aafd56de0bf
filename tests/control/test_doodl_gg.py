"""The paper's other baselines on a tiny random model: DOODL (EDICT, renormalized x_T, O(1)
memory in steps), Guidance Gradients (fixed step, data consistency), and stochastic samplers
that repeat with their seed."""

import numpy as np
import pytest
import torch

from dittomusic.control import get_control, intensity_preset
from dittomusic.control.memory import SavedTensorMeter
from dittomusic.control.methods import Settings, run_control
from dittomusic.control.optimize import OptimConfig
from dittomusic.errors import DittoError
from dittomusic.control.methods.doodl import edict_reversible
from dittomusic.sampling import NoiseSchedule, sample_edict

FR = 128


def intensity(frames=FR):
    return get_control("intensity", target=intensity_preset("linear-rise", frames, -40, -20))


def test_doodl_lowers_the_loss_and_keeps_the_norm_of_x_T(pipe, tags):
    s = Settings(steps=4, optim=OptimConfig(iters=5, lr=0.05))
    out = run_control(pipe, "doodl", intensity(), tags, seed=1, batch=2, settings=s)
    r = out.report
    assert np.mean(r["final_loss"]) < np.mean(r["initial_loss"])
    start = pipe.noise(2, FR, 1)
    # renormalized after every update: each item's x_T keeps its starting norm
    assert torch.allclose(out.x_T.flatten(1).norm(dim=1), start.flatten(1).norm(dim=1), rtol=1e-5)
    assert r["edict_mix"] == pytest.approx(0.83) and r["model_calls"] == 6 * 2 * 4 + 5 * 4 * 4
    with pytest.raises(DittoError, match="edict-mix"):
        run_control(pipe, "doodl", intensity(), tags, settings=Settings(steps=2, edict_mix=1.5))


def _peak(pipe, tags, steps, render):
    ctrl = intensity()
    x = pipe.noise(1, FR, 0).requires_grad_(True)
    with SavedTensorMeter() as m:
        ctrl.loss(render(x, steps)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    return m.peak_bytes


def test_doodl_memory_is_flat_in_steps_and_plain_backprop_is_not(pipe, tags):
    fn = pipe.model_fn(tags, 1, 3.0)

    def edict(reversible):
        run = edict_reversible if reversible else sample_edict
        return lambda x, n: pipe.backend.decode(run(fn, x, pipe.schedule, n)[0])

    flat = [_peak(pipe, tags, n, edict(True)) for n in (2, 8)]
    grows = [_peak(pipe, tags, n, edict(False)) for n in (2, 8)]
    # 6 more steps: plain backprop keeps 6 more steps' activations, the reversible chain none
    assert grows[1] - grows[0] > 6 * 1e5
    assert abs(flat[1] - flat[0]) < 0.05 * (grows[1] - grows[0])


def test_reversible_gradient_equals_autograd():
    from tests.sampling.tiny import SHAPE, TinyDenoiser

    schedule = NoiseSchedule.cosine()
    model = TinyDenoiser(schedule, "v_prediction")
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.linspace(-1, 1, x_T.numel(), dtype=x_T.dtype).view_as(x_T)
    grads = []
    for run in (sample_edict, edict_reversible):
        x = x_T.clone().requires_grad_(True)
        x0, y0 = run(model, x, schedule, 8, mix=0.83)
        ((x0 * w).sum() + (y0 * w.flip(-1)).square().sum()).backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-8) and grads[1].abs().sum() > 0


def test_gg_data_consistency_keeps_the_known_region(pipe, tags):
    with torch.no_grad():
        ref = pipe.sample(pipe.noise(1, FR, 9), None, steps=3)[0]
    ctrl = get_control("outpaint", ref_mel=ref, overlap_s=0.3, frames=FR)
    s = Settings(steps=4)
    gg = run_control(pipe, "gg", ctrl, tags, seed=0, settings=s)
    m = ctrl.masks
    assert torch.allclose(gg.mel[0][:, m.gen_idx], ref[:, m.ref_idx], atol=1e-6)
    assert gg.report["data_consistency"] is True
    # the new material is the model's, steered: not the unsteered sample
    d = run_control(pipe, "default", ctrl, tags, seed=0, settings=s)
    new = torch.ones(FR, dtype=torch.bool)
    new[m.gen_idx] = False
    assert not torch.allclose(gg.mel[0][:, new], d.mel[0][:, new], atol=1e-3)


def test_gg_fixed_step_lowers_the_loss(pipe, tags):
    s = Settings(steps=6, gg_scale=0.3)
    d = run_control(pipe, "default", intensity(), tags, seed=5, batch=2, settings=s).report
    g = run_control(pipe, "gg", intensity(), tags, seed=5, batch=2, settings=s).report
    assert np.mean(g["final_loss"]) < np.mean(d["final_loss"]) and g["data_consistency"] is False
    with pytest.raises(DittoError, match="gg runs on DDIM"):
        run_control(pipe, "gg", intensity(), tags, settings=Settings(steps=2, sampler="ddpm"))


def test_ddpm_repeats_with_its_seed(pipe, tags):
    x = pipe.noise(2, FR, 3)
    with torch.no_grad():
        a, b, c = (pipe.sample(x, tags, sampler="ddpm", steps=4, generator=torch.Generator().manual_seed(k))
                   for k in (1, 1, 2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    mel1, _ = pipe.generate(tags, n=1, seconds=None, seed=4, sampler="ddpm", steps=3)
    mel2, _ = pipe.generate(tags, n=1, seconds=None, seed=4, sampler="ddpm", steps=3)
    assert torch.equal(mel1, mel2)


def test_ddpm_with_freedom_beats_ddpm_alone(pipe, tags):
    s = Settings(steps=6, sampler="ddpm", noise_seed=3)
    d = run_control(pipe, "default", intensity(), tags, seed=5, batch=2, settings=s).report
    f = run_control(pipe, "freedom", intensity(), tags, seed=5, batch=2, settings=s).report
    assert np.mean(f["final_loss"]) < np.mean(d["final_loss"])
    assert f["sampler"] == d["sampler"] == "ddpm"
    with pytest.raises(DittoError, match="deterministic sampler"):
        run_control(pipe, "ditto", intensity(), tags, settings=s)


def test_cli_reuses_an_optimized_latent_with_ddpm(tiny_model_path, tmp_path):
    import json

    import soundfile as sf
    from click.testing import CliRunner

    from dittomusic.cli import cli

    base = ["control", "intensity", "--model", str(tiny_model_path), "--seconds", "1.5", "--steps", "3",
            "--collection", "chorale", "--no-png"]
    lat = tmp_path / "l.safetensors"
    r = CliRunner().invoke(cli, base + ["--iters", "1", "--out", str(tmp_path / "a.wav"), "--save-latent", str(lat)])
    assert r.exit_code == 0, r.output
    out = []
    for name in ("b", "c"):
        r = CliRunner().invoke(cli, base + ["--init-latent", str(lat), "--method", "default", "--sampler", "ddpm",
                                            "--batch", "3", "--out", str(tmp_path / f"{name}.wav"),
                                            "--report", str(tmp_path / f"{name}.json")])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / f"{name}.json").read_text())
        assert rep["sampler"] == "ddpm" and rep["batch"] == 3
        out.append([sf.read(tmp_path / f"{name}_{i}.wav")[0] for i in range(3)])
    assert all(np.array_equal(a, b) for a, b in zip(*out))  # the seed repeats the variations
    assert not np.allclose(out[0][0], out[0][1])  # one x_T, three different samples
