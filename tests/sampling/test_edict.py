"""EDICT (DOODL's sampler): exactly invertible, and its reversible backward gives the plain
autograd gradient without keeping a graph per step."""

from __future__ import annotations

import pytest
import torch

from dittomusic.sampling import NoiseSchedule, edict_mix, invert_edict, sample_ddim, sample_edict

from .tiny import SHAPE, TinyDenoiser


def _setup(prediction="v_prediction", dtype=torch.float64):
    schedule = NoiseSchedule.cosine()
    model = TinyDenoiser(schedule, prediction)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return schedule, model, x_T


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [5, 20])
def test_edict_inverts_exactly(prediction, steps):
    schedule, model, x_T = _setup(prediction)
    y_T = x_T + 0.1 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=x_T.dtype)
    x0, y0 = sample_edict(model, x_T, schedule, steps, prediction=prediction, mix=edict_mix(steps), y_T=y_T)
    xr, yr = invert_edict(model, x0, y0, schedule, steps, prediction=prediction, mix=edict_mix(steps))
    assert torch.allclose(xr, x_T, atol=1e-9) and torch.allclose(yr, y_T, atol=1e-9)


def test_edict_tracks_ddim():
    # both chains start at x_T and stay near the DDIM trajectory (same steps and spacing)
    schedule, model, x_T = _setup()
    x0, y0 = sample_edict(model, x_T, schedule, 20, mix=edict_mix(20))
    ref = sample_ddim(model, x_T, schedule, 20, timestep_spacing="leading")
    other = sample_ddim(model, -x_T, schedule, 20, timestep_spacing="leading")
    assert (x0 - ref).abs().mean() < 0.1 * (other - ref).abs().mean()
    assert (y0 - ref).abs().mean() < 0.1 * (other - ref).abs().mean()


def test_edict_mix_follows_the_paper():
    assert edict_mix(20) == pytest.approx(0.83) and edict_mix(50) == pytest.approx(0.93)
    assert edict_mix(5) == pytest.approx(0.83) and edict_mix(200) == pytest.approx(0.93)
    with pytest.raises(ValueError):
        sample_edict(TinyDenoiser(NoiseSchedule.cosine(), "epsilon"), torch.zeros(SHAPE), NoiseSchedule.cosine(), 4,
                     mix=0.0)
