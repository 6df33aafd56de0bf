"""Every sampler reproduces the corresponding diffusers scheduler loop step by step."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

from dittomusic.sampling import NoiseSchedule, get_sampler, model_calls, sampler_timesteps  # noqa: E402

from .tiny import SHAPE, TinyDenoiser  # noqa: E402

TOL = 1e-5
COMMON = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
CLASSES = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler,
           "euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler}
DPM = dict(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True)


def make_scheduler(name: str, prediction: str, spacing: str, **extra):
    kw = dict(COMMON, prediction_type=prediction, timestep_spacing=spacing, **extra)
    if name in ("ddim", "ddpm", "heun"):
        kw.setdefault("clip_sample", False)
    if name == "dpmpp_2m":
        kw.update(DPM)
    return CLASSES[name](**kw)


def run_diffusers(name, sched, model, x_T, steps, *, step_kw=None):
    """The standard diffusers denoising loop; returns per-step (x, x0) with x in VP convention."""
    sched.set_timesteps(steps)
    sigma_space = name in ("euler", "heun")
    x = x_T * sched.init_noise_sigma
    xs, x0s = [], []
    n_calls = len(sched.timesteps)
    for k, t in enumerate(sched.timesteps):
        x_in = sched.scale_model_input(x, t)
        out = model(x_in, t.float().reshape(1).expand(x.shape[0]))
        res = sched.step(out, t, x, **(step_kw or {}))
        x = res.prev_sample
        if name == "dpmpp_2m":
            x0 = sched.model_outputs[-1]  # the converted (and thresholded) x0 prediction
        else:
            x0 = res.pred_original_sample
        if name == "heun" and k % 2 == 0:
            x0s.append(x0)  # predictor's x0, at the step's own timestep
        elif name != "heun":
            x0s.append(x0)
        if name != "heun" or k % 2 == 1 or k == n_calls - 1:  # Heun: a step ends after its corrector
            vp = x / ((sched.sigmas[sched.step_index] ** 2 + 1) ** 0.5) if sigma_space else x
            xs.append(vp)
    return xs, x0s


def run_ours(name, model, x_T, steps, prediction, **kw):
    steps_seen = []
    out = get_sampler(name)(model, x_T, NoiseSchedule.cosine(), steps, prediction=prediction,
                            callback=steps_seen.append, **kw)
    return out, steps_seen


def assert_same(ours, out, xs, x0s, ts_expected):
    assert len(ours) == len(xs) == len(x0s)
    for rec, x, x0, t in zip(ours, xs, x0s, ts_expected):
        assert rec["t"] == t
        assert (rec["x"] - x).abs().max().item() <= TOL, f"x differs at step {rec['i']}"
        assert (rec["x0"] - x0).abs().max().item() <= TOL, f"x0 differs at step {rec['i']}"
    assert (out - xs[-1]).abs().max().item() <= TOL
    assert torch.isfinite(out).all()


# (id, sampler, steps, diffusers scheduler kwargs, our sampler kwargs; spacing in both)
CASES = [
    ("ddim-trailing", "ddim", 10, {}, dict(timestep_spacing="trailing")),
    ("ddim-leading", "ddim", 10, {}, dict(timestep_spacing="leading")),
    ("ddim-linspace", "ddim", 10, {}, dict(timestep_spacing="linspace")),
    ("ddim-trailing-7", "ddim", 7, {}, dict(timestep_spacing="trailing")),
    ("ddim-threshold", "ddim", 10, dict(thresholding=True, sample_max_value=1.5),
     dict(timestep_spacing="trailing", thresholding=True, sample_max_value=1.5)),
    ("ddpm-trailing", "ddpm", 10, {}, dict(timestep_spacing="trailing")),
    ("ddpm-leading", "ddpm", 10, {}, dict(timestep_spacing="leading")),
    ("dpm-10", "dpmpp_2m", 10, {}, dict(timestep_spacing="linspace")),
    ("dpm-20", "dpmpp_2m", 20, {}, dict(timestep_spacing="linspace")),
    ("dpm-10-sigma-min", "dpmpp_2m", 10, dict(final_sigmas_type="sigma_min"),
     dict(timestep_spacing="linspace", final_sigmas_type="sigma_min")),
    ("dpm-20-sigma-min", "dpmpp_2m", 20, dict(final_sigmas_type="sigma_min"),
     dict(timestep_spacing="linspace", final_sigmas_type="sigma_min")),
    ("dpm-trailing", "dpmpp_2m", 10, {}, dict(timestep_spacing="trailing")),
    ("dpm-leading", "dpmpp_2m", 10, {}, dict(timestep_spacing="leading")),
    ("dpm-threshold", "dpmpp_2m", 10, dict(thresholding=True, sample_max_value=1.5),
     dict(timestep_spacing="linspace", thresholding=True, sample_max_value=1.5)),
    ("euler-10", "euler", 10, {}, dict(timestep_spacing="linspace")),
    ("euler-20", "euler", 20, {}, dict(timestep_spacing="linspace")),  # fractional timesteps
    ("euler-leading", "euler", 10, {}, dict(timestep_spacing="leading")),  # init sigma sqrt(s^2+1)
    ("euler-trailing", "euler", 10, {}, dict(timestep_spacing="trailing")),
    ("heun-10", "heun", 10, {}, dict(timestep_spacing="linspace")),
    ("heun-leading", "heun", 6, {}, dict(timestep_spacing="leading")),
]


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_diffusers(case, prediction):
    _, name, steps, sched_kw, our_kw = case
    schedule = NoiseSchedule.cosine()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    sched = make_scheduler(name, prediction, our_kw["timestep_spacing"], **sched_kw)

    quantiles = []
    if sched_kw.get("thresholding"):  # record the per-row quantile s diffusers thresholds with
        original = sched._threshold_sample

        def spy(sample):
            quantiles.append(torch.quantile(sample.reshape(sample.shape[0], -1).abs(), 0.995, dim=1))
            return original(sample)

        sched._threshold_sample = spy

    step_kw, run_kw = {}, {}
    if name == "ddpm":
        step_kw["generator"] = torch.Generator().manual_seed(7)
        run_kw["generator"] = torch.Generator().manual_seed(7)
    xs, x0s = run_diffusers(name, sched, TinyDenoiser(schedule, prediction), x_T, steps, step_kw=step_kw)

    model = TinyDenoiser(schedule, prediction)
    out, ours = run_ours(name, model, x_T, steps, prediction, **our_kw, **run_kw)
    ts = sampler_timesteps(name, schedule, steps, timestep_spacing=our_kw["timestep_spacing"])
    assert_same(ours, out, xs, x0s, ts if name != "heun" else ts[::2])
    assert model.calls == model_calls(name, steps, timestep_spacing=our_kw["timestep_spacing"])
    if name == "ddpm":  # same number of draws, including diffusers' ~1e-10 noise on the last step
        assert torch.equal(step_kw["generator"].get_state(), run_kw["generator"].get_state())

    if quantiles:  # thresholding really rescaled (s > 1), not just clipped to [-1, 1]
        assert max(q.max().item() for q in quantiles) > 1.0


def test_ddim_eta_matches_diffusers_with_same_generator():
    schedule = NoiseSchedule.cosine()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    sched = make_scheduler("ddim", "v_prediction", "trailing")
    xs, x0s = run_diffusers("ddim", sched, TinyDenoiser(schedule, "v_prediction"), x_T, 8,
                            step_kw=dict(eta=0.7, generator=torch.Generator().manual_seed(3)))
    out, ours = run_ours("ddim", TinyDenoiser(schedule, "v_prediction"), x_T, 8, "v_prediction", eta=0.7,
                         generator=torch.Generator().manual_seed(3))
    assert_same(ours, out, xs, x0s, sampler_timesteps("ddim", schedule, 8))


def test_ddpm_noise_depends_on_generator():
    schedule = NoiseSchedule.cosine()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    a, b = (get_sampler("ddpm")(TinyDenoiser(schedule, "epsilon"), x_T, schedule, 5, prediction="epsilon",
                                generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    assert (a - b).abs().max() > 1e-3


def test_cosine_schedule_equals_diffusers():
    ours = NoiseSchedule.cosine().alphas_cumprod
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    for cls in CLASSES.values():
        theirs = cls(**COMMON).alphas_cumprod
        assert torch.equal(ours, theirs.double())


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_and_model_calls_equal_diffusers(name, spacing):
    sched = make_scheduler(name, "epsilon", spacing)
    schedule = NoiseSchedule.cosine()
    for steps in (1, 2, 7, 10, 15, 20, 50, 61, 250):
        sched.set_timesteps(steps)
        theirs = [float(t) for t in sched.timesteps]
        assert sampler_timesteps(name, schedule, steps, timestep_spacing=spacing) == theirs
        assert model_calls(name, steps, timestep_spacing=spacing) == len(theirs)
    if name == "heun":
        assert model_calls("heun", 10) == 19
    elif spacing == "trailing":
        assert model_calls(name, 61, timestep_spacing=spacing) == 62  # diffusers' float-arange quirk


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddim_inversion_matches_diffusers(spacing, prediction):
    from diffusers import DDIMInverseScheduler

    from dittomusic.sampling import invert_ddim

    torch.manual_seed(0)
    model = TinyDenoiser(NoiseSchedule.cosine(), prediction)
    x0 = torch.randn(SHAPE) * 0.3
    steps = 10
    sched = DDIMInverseScheduler(**COMMON, prediction_type=prediction, timestep_spacing=spacing,
                                 clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(steps)
    x, ref = x0, []
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, t.float().reshape(1).expand(x.shape[0])), t, x).prev_sample
            ref.append(x)
        seen = []
        out = invert_ddim(model, x0, NoiseSchedule.cosine(), steps, prediction=prediction,
                          timestep_spacing=spacing, callback=seen.append, match_diffusers=True)
    assert [r["t"] for r in seen] == [float(t) for t in sched.timesteps]
    for rec, x in zip(seen, ref):
        assert (rec["x"] - x).abs().max().item() <= TOL
    assert (out - ref[-1]).abs().max().item() <= TOL
    assert out.std() > 0.5 * x0.std()  # it did re-noise: not the identity


def test_ddim_inversion_round_trip_tightens_with_steps():
    from dittomusic.sampling import invert_ddim

    # DDIM is a discretized ODE, so x_T -> x0 -> x_T closes up as the steps shrink. Data ~ N(0, s^2)
    # has an exact linear denoiser: x0_hat = sqrt(a) s^2 / (a s^2 + 1 - a) x_t
    sched = NoiseSchedule.cosine()
    ac, s2 = sched.alphas_cumprod.float(), 0.3 ** 2

    def model(x, t):
        a = ac[t.long()].view(-1, *[1] * (x.dim() - 1))
        x0 = a.sqrt() * s2 / (a * s2 + 1 - a) * x
        return a.sqrt() * (x - a.sqrt() * x0) / (1 - a).sqrt() - (1 - a).sqrt() * x0  # v
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    errs, diffusers_errs = [], []
    with torch.no_grad():
        for steps in (10, 100):
            x0 = get_sampler("ddim")(model, x_T, sched, steps, prediction="v_prediction")
            back = invert_ddim(model, x0, sched, steps, prediction="v_prediction")
            errs.append((back - x_T).square().mean().item())
            back = invert_ddim(model, x0, sched, steps, prediction="v_prediction", match_diffusers=True)
            diffusers_errs.append((back - x_T).square().mean().item())
    assert errs[1] < 0.5 * errs[0]
    assert errs[1] < 0.05
    # eps read at the level the model was told closes the loop tighter than DDIMInverseScheduler's v reading
    assert errs[0] < 0.8 * diffusers_errs[0] and errs[1] <= diffusers_errs[1]
