"""Student maps and samplers: exact at init, boundary condition, differentiable, deterministic."""

from __future__ import annotations

import pytest
import torch

from dittomusic.distill import (CLEAN, KINDS, alpha_sigma, consistency_fn, consistency_sample, ctd_sample, jump,
                                student_from_teacher, teacher_ode, teacher_step, time_grid)
from dittomusic.sampling import NoiseSchedule, cfg_model_fn, sample_ddim

from ..conftest import make_vocab
from .conftest import random_teacher

SAMPLE = {"cd": consistency_sample, "ctd": ctd_sample}


@pytest.fixture(scope="module")
def teacher():
    return random_teacher(make_vocab())


def _x(b=2, frames=64, seed=0, dtype=torch.float32):
    return torch.randn(b, 160, frames, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _cond(b=2):
    inst = torch.zeros(b, 28)
    inst[:, 3] = 1
    return {"collection": torch.tensor([0, 2])[:b], "tempo": torch.tensor([1, -1])[:b],
            "mode": torch.tensor([0, 1])[:b], "instruments": inst}


def _perturbed(student, seed=1):
    """A student that no longer equals its teacher (s embedding included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return student


def test_grid_is_ddim_trailing_then_clean():
    assert time_grid(20) == list(range(999, 0, -50)) + [CLEAN]
    assert time_grid(1) == [999, CLEAN]


@pytest.mark.parametrize("kind", KINDS)
def test_student_at_init_is_the_teachers_one_step_ddim(teacher, kind):
    student = student_from_teacher(teacher, kind)
    x_T, cond = _x(), _cond()
    with torch.no_grad():
        ref = sample_ddim(cfg_model_fn(teacher, cond, 1.0), x_T, NoiseSchedule.cosine(), 1)
        assert torch.equal(SAMPLE[kind](student, x_T, cond, 1), ref)
        # the zero-initialised s embedding: every jump G(x_t, t, s) is the teacher's DDIM jump
        x = _x(seed=3)
        for t, s in ((749, 249), (999, 949), (49, CLEAN)):
            assert torch.equal(jump(student, x, t, s, cond), teacher_step(teacher, x, t, s, cond, 1.0, clip=False))


def test_teacher_steps_along_the_grid_are_guided_ddim_with_thresholding(teacher):
    x_T, cond = _x(), _cond()
    g = time_grid(4)
    with torch.no_grad():
        x = x_T
        for t, s in zip(g[:-1], g[1:]):
            x = teacher_step(teacher, x, t, s, cond, 3.0)
        ref = sample_ddim(cfg_model_fn(teacher, cond, 3.0), x_T, NoiseSchedule.cosine(), 4, thresholding=True)
    assert torch.equal(x, ref)


def test_teacher_ode_is_the_guided_ddim_from_a_grid_time_to_clean(teacher):
    x_T, cond = _x(), _cond()
    g = time_grid(4)
    with torch.no_grad():
        ref = sample_ddim(cfg_model_fn(teacher, cond, 3.0), x_T, NoiseSchedule.cosine(), 4, thresholding=True)
        assert torch.equal(teacher_ode(teacher, x_T, 999, cond, 3.0, g), ref)
        x = _x(seed=5)  # from a later grid time: the remaining steps only
        by_hand = teacher_step(teacher, teacher_step(teacher, x, 499, 249, cond, 3.0, clip=False), 249, CLEAN, cond,
                               3.0, clip=False)
        assert torch.equal(teacher_ode(teacher, x, 499, cond, 3.0, g, clip=False), by_hand)
    for bad in (500, CLEAN):
        with pytest.raises(ValueError, match="must be a time of the grid"):
            teacher_ode(teacher, x, bad, cond, 3.0, g)


@pytest.mark.parametrize("kind", KINDS)
def test_boundary_condition(teacher, kind):
    student = _perturbed(student_from_teacher(teacher, kind))
    x, cond = _x(), _cond()
    with torch.no_grad():
        assert torch.equal(consistency_fn(student, x, CLEAN, cond), x)  # (alpha, sigma) = (1, 0) at CLEAN
        assert torch.equal(jump(student, x, CLEAN, CLEAN, cond), x)
        # continuity: at the smallest network time EDM's c_skip ~ 1, c_out ~ 0.006
        torch.testing.assert_close(consistency_fn(student, x, 0, cond), x, atol=0.05, rtol=0.01)
        torch.testing.assert_close(jump(student, x, 500, 500, cond), x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_samples_are_differentiable_and_checkpointing_is_exact(teacher, kind, steps):
    student = _perturbed(student_from_teacher(teacher, kind)).requires_grad_(False)
    cond, w = _cond(), torch.linspace(-1, 1, 2 * 160 * 64).view(2, 160, 64)
    grads = []
    for ckpt in (False, True):
        x_T = _x().requires_grad_(True)
        kw = {"generator": torch.Generator().manual_seed(7)} if kind == "cd" else {}
        out = SAMPLE[kind](student, x_T, cond, steps, checkpoint=ckpt, **kw)
        assert out.requires_grad
        (out * w).sum().backward()
        grads.append(x_T.grad)
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_gradient_matches_finite_differences(teacher, kind):
    student = _perturbed(student_from_teacher(teacher, kind)).double().requires_grad_(False)
    cond = _cond(1)
    x_T = _x(1, 16, dtype=torch.float64).requires_grad_(True)
    w = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (SAMPLE[kind](student, x_T, cond, 1) * w).sum().backward()
    d = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = 1e-5
    with torch.no_grad():
        f = lambda x: float((SAMPLE[kind](student, x, cond, 1) * w).sum())  # noqa: E731
        fd = (f(x_T + eps * d) - f(x_T - eps * d)) / (2 * eps)
    assert float((x_T.grad * d).sum()) == pytest.approx(fd, rel=1e-5)


def test_samplers_are_deterministic_for_a_seed(teacher):
    cd = _perturbed(student_from_teacher(teacher, "cd"))
    ctd = _perturbed(student_from_teacher(teacher, "ctd"))
    x_T, cond = _x(), _cond()
    with torch.no_grad():
        a, b, c = (consistency_sample(cd, x_T, cond, 3, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
        assert torch.equal(a, b) and not torch.allclose(a, c)
        noise = [torch.randn(x_T.shape, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
        assert torch.equal(consistency_sample(cd, x_T, cond, 3, noise=noise),
                           consistency_sample(cd, x_T, cond, 3, noise=noise))
        assert torch.equal(ctd_sample(ctd, x_T, cond, 3), ctd_sample(ctd, x_T, cond, 3))
        assert not torch.allclose(ctd_sample(ctd, x_T, cond, 3), ctd_sample(ctd, x_T, cond, 1))
    with pytest.raises(ValueError, match="re-noise 2 times"):
        consistency_sample(cd, x_T, cond, 3, noise=noise[:1])


def test_consistency_sample_re_noises_at_the_given_times(teacher):
    cd = _perturbed(student_from_teacher(teacher, "cd"))
    x_T, cond = _x(), _cond()
    noise = [torch.randn(x_T.shape, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    seen = []
    with torch.no_grad():
        grid = consistency_sample(cd, x_T, cond, 3, noise=noise)
        same = consistency_sample(cd, x_T, cond, 3, noise=noise, times=time_grid(3)[:-1])
        low = consistency_sample(cd, x_T, cond, 3, noise=noise, times=[999, 100, 20],
                                 callback=lambda d: seen.append(d["t"]))
        # by hand: f at 999, then re-noise to 100 and 20 with the given draws
        x0 = consistency_fn(cd, x_T, 999, cond)
        for t, z in zip((100, 20), noise):
            a, s = alpha_sigma(torch.full((2,), float(t)), x0)
            x0 = consistency_fn(cd, a * x0 + s * z, t, cond)
    assert torch.equal(grid, same) and seen == [999.0, 100.0, 20.0]
    assert torch.allclose(low, x0) and not torch.allclose(low, grid)
    for bad in ([999, 100], [999, 100, 100], [999, 20, 100], [1000, 100, 20], [999, 100, -1]):
        with pytest.raises(ValueError, match="falling timesteps"):
            consistency_sample(cd, x_T, cond, 3, noise=noise, times=bad)
