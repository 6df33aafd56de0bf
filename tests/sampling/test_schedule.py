"""NoiseSchedule: training-side helpers agree with diffusers and invert each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dittomusic.sampling import NoiseSchedule

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def ddpm():
    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def test_from_betas_matches_diffusers_linear():
    theirs = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ours = NoiseSchedule.from_betas(theirs.betas)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod.double())
    with pytest.raises(ValueError):
        NoiseSchedule(torch.tensor([0.5, 1.5]))


def test_add_noise_and_velocity_match_diffusers(ddpm):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 8, 16, generator=g), torch.randn(4, 8, 16, generator=g)
    t = torch.tensor([0, 17, 500, 999])
    s = NoiseSchedule.cosine()
    assert torch.allclose(s.add_noise(x0, noise, t), ddpm.add_noise(x0, noise, t), atol=1e-6)
    assert torch.allclose(s.velocity(x0, noise, t), ddpm.get_velocity(x0, noise, t), atol=1e-6)
    assert torch.equal(s.target(x0, noise, t, "epsilon"), noise)
    assert torch.equal(s.target(x0, noise, t, "v_prediction"), s.velocity(x0, noise, t))
    assert s.add_noise(x0, noise, 5).shape == x0.shape  # scalar timestep broadcasts


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_split_inverts_target(prediction):
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 8, 16, dtype=torch.float64, generator=g), torch.randn(3, 8, 16, dtype=torch.float64,
                                                                                       generator=g)
    t = torch.tensor([10, 400, 900])
    s = NoiseSchedule.cosine()
    x_t = s.add_noise(x0, noise, t)
    out = s.target(x0, noise, t, prediction)
    got_x0, got_eps = s.split(out, x_t, t, prediction)
    assert torch.allclose(got_x0, x0, atol=1e-8) and torch.allclose(got_eps, noise, atol=1e-8)
    assert torch.allclose(s.from_x0_eps(x0, noise, t, prediction), out)
    assert torch.allclose(s.to_x0(out, x_t, t, prediction), x0, atol=1e-8)
    assert torch.allclose(s.to_eps(out, x_t, t, prediction), noise, atol=1e-8)


def test_alpha_sigma_and_interpolation(ddpm):
    s = NoiseSchedule.cosine()
    alpha, sigma = s.alpha_sigma(torch.arange(1000))
    assert torch.allclose(alpha**2 + sigma**2, torch.ones(1000, dtype=torch.float64))
    assert torch.allclose(sigma / alpha, s.sigmas)
    assert bool((s.sigmas[1:] > s.sigmas[:-1]).all())
    # fractional timesteps: linear in sigma, like diffusers' Euler/Heun set_timesteps
    ts = np.linspace(0, 999, 20)
    ref = np.interp(ts, np.arange(1000), s.sigmas.numpy())
    assert np.allclose(s.sigma_at(torch.tensor(ts)).numpy(), ref)
    a, sg = s.alpha_sigma(torch.tensor([52.5]))
    assert torch.allclose(sg / a, s.sigma_at(52.5))
