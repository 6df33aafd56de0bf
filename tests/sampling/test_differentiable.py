"""Samplers are differentiable w.r.t. x_T, checkpointing is exact, and guidance is one batched call."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dittomusic.sampling as sampling
from dittomusic.errors import DittoError
from dittomusic.sampling import SAMPLERS, NoiseSchedule, cfg_model_fn, get_sampler, model_calls, sampler_timesteps

from .tiny import SHAPE, TinyDenoiser

NAMES = list(SAMPLERS)
STEPS = 4


def run(name, x_T, *, prediction="v_prediction", steps=STEPS, model=None, **kw):
    schedule = NoiseSchedule.cosine()
    model = model or TinyDenoiser(schedule, prediction, channels=x_T.shape[1])
    if name == "ddpm":
        kw.setdefault("generator", torch.Generator().manual_seed(5))
    return get_sampler(name)(model, x_T, schedule, steps, prediction=prediction, **kw)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", NAMES)
def test_gradient_wrt_x_T_is_finite_and_nonzero(name, prediction):
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = run(name, x_T, prediction=prediction)
    assert out.requires_grad  # nothing inside the sampler switched autograd off
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    assert torch.isfinite(x_T.grad).all()
    assert x_T.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    """gradcheck in float64 on a tiny input: the chain is differentiated exactly, nothing detached."""
    x_T = torch.randn(1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: run(name, x, steps=3), (x_T,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_is_exact_and_recomputes(name):
    # float64: checkpointing sums a step's input gradients in another order, which sigma-space
    # samplers (Heun: x ~ sigma_max * x_T) amplify to ~1e-3 relative in float32
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    kw = dict(thresholding=True, sample_max_value=1.5) if name in ("ddim", "dpmpp_2m") else {}
    results = {}
    for ckpt in (False, True):
        schedule = NoiseSchedule.cosine()
        model = TinyDenoiser(schedule, "v_prediction")
        x = x_T.clone().requires_grad_(True)
        out = run(name, x, model=model, checkpoint=ckpt, **kw)
        forward_calls = model.calls
        (out ** 2).mean().backward()
        results[ckpt] = out.detach(), x.grad, forward_calls, model.calls - forward_calls
    (o0, g0, f0, b0), (o1, g1, f1, b1) = results[False], results[True]
    assert torch.equal(o0, o1)
    assert torch.allclose(g0, g1, rtol=1e-9, atol=1e-12)
    n = model_calls(name, STEPS)
    assert f0 == f1 == n
    assert b0 == 0 and b1 == n  # every model call re-run once during backward: activations were not kept


def test_checkpoint_and_no_grad_callers():
    x_T = torch.randn(SHAPE)
    with torch.no_grad():
        for name in NAMES:
            out = run(name, x_T, checkpoint=True)
            assert not out.requires_grad and torch.isfinite(out).all()


def test_sampling_source_never_disables_grad():
    for path in Path(sampling.__file__).parent.glob("*.py"):
        src = path.read_text()
        for forbidden in ("no_grad", "inference_mode", "set_grad_enabled"):
            assert forbidden not in src, f"{forbidden} in {path.name}"
        if path.name != "schedule.py":  # schedule.py only detaches timesteps and constant tables
            assert ".detach(" not in src, path.name


def test_callback_reports_every_step():
    seen = []
    x_T = torch.randn(SHAPE)
    out = run("heun", x_T, callback=seen.append)
    assert [r["i"] for r in seen] == list(range(STEPS))
    assert [r["t"] for r in seen] == sampler_timesteps("heun", NoiseSchedule.cosine(), STEPS)[::2]
    assert torch.equal(seen[-1]["x"], out) and seen[-1]["x0"].shape == SHAPE


def test_unknown_sampler_names_the_valid_ones():
    with pytest.raises(DittoError) as err:
        get_sampler("plms")
    for name in NAMES:
        assert name in str(err.value)
    with pytest.raises(DittoError):
        sampler_timesteps("plms", NoiseSchedule.cosine(), 10)


def test_bad_arguments():
    x_T = torch.randn(SHAPE)
    with pytest.raises(ValueError):
        run("ddim", x_T, prediction="sample")
    with pytest.raises(ValueError):
        run("euler", x_T, timestep_spacing="karras")
    with pytest.raises(ValueError):
        run("ddim", x_T, steps=0)


# ---------------------------------------------------------------- classifier-free guidance

class FakeNet:
    """net(x, t, cond, drop): conditional rows add a cond-dependent term; records each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, cond, drop):
        self.calls.append(dict(batch=x.shape[0], cond=cond, drop=drop.clone()))
        out = torch.sin(x) * (1 + t.view(-1, 1, 1) / 1000)
        if cond is not None:
            c = cond["tokens"].view(-1, 1, 1) * 0.5 + cond["frames"]
            out = out + torch.where(drop.view(-1, 1, 1), torch.zeros_like(c), c)
        return out


def make_cond(B):
    g = torch.Generator().manual_seed(3)
    return {"tokens": torch.randn(B, generator=g), "frames": torch.randn(B, 1, SHAPE[2], generator=g)}


def test_cfg_one_batched_call_matches_formula():
    B = SHAPE[0]
    x, t, cond = torch.randn(SHAPE), torch.full((B,), 500.0), make_cond(B)
    net = FakeNet()
    out = cfg_model_fn(net, cond, 3.0)(x, t)
    assert len(net.calls) == 1
    call = net.calls[0]
    assert call["batch"] == 2 * B
    assert call["drop"].tolist() == [False] * B + [True] * B
    assert torch.equal(call["cond"]["tokens"], torch.cat([cond["tokens"]] * 2))

    ref = FakeNet()
    c = ref(x, t, cond, torch.zeros(B, dtype=torch.bool))
    u = ref(x, t, cond, torch.ones(B, dtype=torch.bool))
    assert torch.allclose(out, u + 3.0 * (c - u), atol=1e-6)
    assert torch.allclose(out, 3.0 * c + (1 - 3.0) * u, atol=1e-5)  # DITTO's w*eps(c) + (1-w)*eps(null)

    net2 = FakeNet()
    assert torch.allclose(cfg_model_fn(net2, cond, 3.0, batched=False)(x, t), out, atol=1e-6)
    assert len(net2.calls) == 2


def test_cfg_shortcuts_use_a_single_pass():
    B = SHAPE[0]
    x, t, cond = torch.randn(SHAPE), torch.full((B,), 10.0), make_cond(B)
    net = FakeNet()
    out = cfg_model_fn(net, cond, 1.0)(x, t)
    assert len(net.calls) == 1 and not net.calls[0]["drop"].any() and net.calls[0]["batch"] == B
    assert torch.equal(out, FakeNet()(x, t, cond, torch.zeros(B, dtype=torch.bool)))

    net = FakeNet()
    out = cfg_model_fn(net, None, 4.0)(x, t)
    assert len(net.calls) == 1 and net.calls[0]["drop"].all() and net.calls[0]["cond"] is None
    assert torch.equal(out, FakeNet()(x, t, None, torch.ones(B, dtype=torch.bool)))


def test_cfg_inside_sampler_is_differentiable():
    net = FakeNet()
    x_T = torch.randn(SHAPE, requires_grad=True)
    out = get_sampler("ddim")(cfg_model_fn(net, make_cond(SHAPE[0]), 2.0), x_T, NoiseSchedule.cosine(), 3,
                              checkpoint=True)
    assert len(net.calls) == 3 and all(c["batch"] == 2 * SHAPE[0] for c in net.calls)
    out.sum().backward()
    assert torch.isfinite(x_T.grad).all() and x_T.grad.abs().sum() > 0


def test_dynamic_threshold_shortcut_equals_the_quantile_path():
    """With max_value <= 1 the quantile is clamped to 1, so thresholding must equal clipping exactly."""
    from dittomusic.sampling.samplers import dynamic_threshold

    x = (torch.randn(3, 8, 16, dtype=torch.float64) * 1.5).requires_grad_()
    flat = x.reshape(3, -1)
    s = torch.quantile(flat.abs(), 0.995, dim=1).clamp(min=1, max=1.0).unsqueeze(1)
    ref = (torch.clamp(flat, -s, s) / s).reshape(x.shape)
    out = dynamic_threshold(x, 0.995, 1.0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    g_ref, = torch.autograd.grad(ref.sum(), x)
    g_out, = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(g_out, g_ref, rtol=0, atol=0)
