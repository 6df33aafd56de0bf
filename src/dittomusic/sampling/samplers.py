"""Diffusion samplers as plain differentiable functions.

Each sampler reproduces one diffusers scheduler step for step (same timesteps, same float32
coefficients, same operation order) so a model trained/evaluated with diffusers samples
identically here, while staying a pure function of x_T that autograd can differentiate
through (DITTO optimises x_T by backpropagating through the whole sampling chain).

Conventions shared by every sampler:
  * model_fn(x, t) gets the variance-preserving input x_t = alpha_t x0 + sigma_t eps and float32
    timesteps t of shape [B]; it returns the raw network output of type `prediction`.
  * x_T ~ N(0, I). Sigma-space samplers (Euler, Heun) scale by diffusers' init_noise_sigma and
    divide the model input by sqrt(sigma^2 + 1) themselves.
  * callback(dict(i, t, x, x0)) after step i: t the step's timestep, x the new sample (always in
    VP convention), x0 the denoised prediction used by the step.
  * checkpoint=True recomputes each model call during backward instead of storing its activations.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..errors import DittoError
from .names import SAMPLER_NAMES
from .schedule import NoiseSchedule, _check_prediction, model_output_to_x0_eps

ModelFn = Callable[[Tensor, Tensor], Tensor]
SPACINGS = ("leading", "trailing", "linspace")


# ---------------------------------------------------------------- timesteps and noise levels

def _timesteps(kind: str, spacing: str, steps: int, T: int) -> np.ndarray:
    """diffusers' set_timesteps. kind: "discrete" (DDIM/DDPM), "dpm", or "sigma" (Euler/Heun)."""
    if spacing not in SPACINGS:
        raise ValueError(f"timestep_spacing must be one of {SPACINGS}, got {spacing!r}")
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    if spacing == "trailing":
        # float arange: for some step counts (e.g. 61) this yields steps + 1 timesteps, as in diffusers
        ts = np.round(np.arange(T, 0, -T / steps)) - 1
    elif kind == "dpm":  # DPM-Solver spaces steps + 1 points and drops t = 0
        if spacing == "linspace":
            ts = np.linspace(0, T - 1, steps + 1).round()[::-1][:-1]
        else:
            ts = (np.arange(0, steps + 1) * (T // (steps + 1))).round()[::-1][:-1]
    elif spacing == "linspace":
        if kind == "sigma":  # Euler/Heun keep fractional timesteps (float32) and interpolate sigmas
            return np.linspace(0, T - 1, steps, dtype=np.float32)[::-1].copy()
        ts = np.linspace(0, T - 1, steps).round()[::-1]
    else:
        ts = (np.arange(0, steps) * (T // steps)).round()[::-1]
    return ts.astype(np.float32 if kind == "sigma" else np.int64)


def _sigma_table(schedule: NoiseSchedule, ts: np.ndarray, final_sigmas_type: str = "zero") -> Tensor:
    """Sigma-space levels at ts plus the final one, float32, computed exactly as diffusers does."""
    ac = schedule.alphas_cumprod.float()
    s = np.interp(ts, np.arange(len(ac)), np.array(((1 - ac) / ac) ** 0.5))
    if final_sigmas_type == "zero":
        last = 0.0
    elif final_sigmas_type == "sigma_min":
        last = float(((1 - ac[0]) / ac[0]) ** 0.5)
    else:
        raise ValueError(f"final_sigmas_type must be 'zero' or 'sigma_min', got {final_sigmas_type!r}")
    return torch.from_numpy(np.concatenate([s, [last]]).astype(np.float32))


def _init_noise_sigma(sigmas: Tensor, spacing: str) -> Tensor:
    # diffusers' Euler/Heun quirk: no "+1" for linspace/trailing (harmless when sigma_max ~ 2e4)
    return sigmas.max() if spacing in ("linspace", "trailing") else (sigmas.max() ** 2 + 1) ** 0.5


# ---------------------------------------------------------------- shared helpers

def dynamic_threshold(x0: Tensor, ratio: float = 0.995, max_value: float = 1.0) -> Tensor:
    """Imagen dynamic thresholding, exactly diffusers' _threshold_sample (differentiable)."""
    dtype, shape = x0.dtype, x0.shape
    if max_value <= 1.0:
        # s = clamp(quantile, 1, max_value) is then identically 1: plain clipping, same values and
        # gradients, without a full sort of every sample at every step (~6 ms a step here)
        return x0.clamp(-1.0, 1.0)
    flat = x0.reshape(shape[0], -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # quantile/clamp need float on CPU
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(shape).to(dtype)


def _postprocess_x0(x0: Tensor, thresholding, ratio, max_value, clip_sample, clip_range) -> Tensor:
    if thresholding:
        return dynamic_threshold(x0, ratio, max_value)
    if clip_sample:
        return x0.clamp(-clip_range, clip_range)
    return x0


def _call_model(model_fn: ModelFn, x: Tensor, t) -> Tensor:
    tt = torch.full((x.shape[0],), float(t), dtype=torch.float32, device=x.device)
    out = model_fn(x, tt)
    if out.shape != x.shape:
        raise ValueError(f"model_fn returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
    return out


def run_step(fn, *args, checkpoint: bool):
    # Step inputs/outputs are the only tensors kept between steps, so multistep state stays exact.
    if checkpoint and torch.is_grad_enabled():
        # Reentrant mode records one graph node per step; non-reentrant keeps a node per op of every
        # step (about 0.8 MB a step here: 40 steps cost 1.3x the memory of 10, not 1.06x). It needs
        # an input that requires grad; otherwise (gradients to parameters only) use non-reentrant.
        reentrant = any(isinstance(a, Tensor) and a.requires_grad for a in args)
        return _checkpoint(fn, *args, use_reentrant=reentrant)
    return fn(*args)


def randn_like(like: Tensor, generator: torch.Generator | None) -> Tensor:
    # Same call as diffusers' randn_tensor, so a seeded generator yields the same noise.
    # Drawn outside checkpointed steps: recomputation must not consume the generator again.
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _upcast(x: Tensor) -> Tensor:
    # diffusers does sample.to(float32) in DPM/Euler steps; that is meant as an upcast for half
    # precision, so float64 is kept (diffusers would silently drop it to float32)
    return x if x.dtype == torch.float64 else x.float()


def _emit(callback, i, t, x, x0) -> None:
    if callback is not None:
        callback(dict(i=i, t=float(t), x=x, x0=x0))


# ---------------------------------------------------------------- DDIM / DDPM

def sample_ddim(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", eta: float = 0.0, timestep_spacing: str = "trailing",
                thresholding: bool = False, dynamic_thresholding_ratio: float = 0.995,
                sample_max_value: float = 1.0, clip_sample: bool = False, clip_sample_range: float = 1.0,
                use_clipped_model_output: bool = False, generator: torch.Generator | None = None,
                checkpoint: bool = False, callback=None, pre=None, post=None) -> Tensor:
    """DDIMScheduler (set_alpha_to_one=True). eta > 0 draws noise from `generator` like diffusers.

    Hooks for guided sampling (FreeDoM, masking), outside any checkpointed step:
    pre(i, x_t) -> x_t before step i; post(i, prev_t, x_t, x_prev, x0) -> x_prev after it
    (prev_t = -1 after the last step)."""
    _check_prediction(prediction)
    ac = schedule.alphas_cumprod.float()
    T = len(ac)
    ts = _timesteps("discrete", timestep_spacing, steps, T)
    stride = T // steps  # diffusers steps DDIM by this fixed stride, whatever the spacing
    x = x_T
    for i, t in enumerate(ts.tolist()):
        prev = t - stride
        a_t = ac[t]
        a_prev = ac[prev] if prev >= 0 else torch.tensor(1.0)
        b_t, b_prev = 1 - a_t, 1 - a_prev
        std = eta * ((b_prev / b_t) * (1 - a_t / a_prev)) ** 0.5
        noise = randn_like(x, generator) if eta > 0 else None

        def step(x, noise, t=t, a_t=a_t, b_t=b_t, a_prev=a_prev, std=std):
            out = _call_model(model_fn, x, t)
            x0, eps = model_output_to_x0_eps(out, x, a_t ** 0.5, b_t ** 0.5, prediction)
            x0 = _postprocess_x0(x0, thresholding, dynamic_thresholding_ratio, sample_max_value,
                                 clip_sample, clip_sample_range)
            # diffusers keeps the *unthresholded* eps unless use_clipped_model_output
            if use_clipped_model_output:
                eps = (x - a_t ** 0.5 * x0) / b_t ** 0.5
            x_prev = a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * eps
            if noise is not None:
                x_prev = x_prev + std * noise
            return x_prev, x0

        if pre is not None:
            x = pre(i, x)
        x_t = x
        x, x0 = run_step(step, x, noise, checkpoint=checkpoint)
        if post is not None:
            x = post(i, prev, x_t, x, x0)
        _emit(callback, i, t, x, x0)
    return x


def invert_ddim(model_fn: ModelFn, x0: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", timestep_spacing: str = "trailing",
                checkpoint: bool = False, callback=None, match_diffusers: bool = False) -> Tensor:
    """DDIM inversion x0 -> x_T. The sampler's timesteps run backwards; each step asks the model
    for eps at the next timestep t, with the sample taken at its current level, and re-noises
    deterministically. Approximate (the model sees the sample one level early), so its accuracy
    depends on the model and the step count: measure it before relying on it.

    eps is read off the output with level t's coefficients, the level the model was told, as an
    epsilon model would give it. match_diffusers=True reads it with the current level's instead,
    as DDIMInverseScheduler (set_alpha_to_one=True) does, step for step: for v-prediction that
    makes the first step's eps the raw v of a clean input (v = -sigma x0 + ...), and on the
    bundled v2 model an 8-step invert-then-sample misses its clip by mel MSE 0.27 against 0.023
    (20 steps: 0.062 against 0.013; `scripts/base_v2_probes.py inversion`). The two agree for epsilon
    prediction."""
    _check_prediction(prediction)
    ac = schedule.alphas_cumprod.float()
    T = len(ac)
    stride = T // steps
    x = x0
    for i, t in enumerate(_timesteps("discrete", timestep_spacing, steps, T).tolist()[::-1]):
        cur = min(t - stride, T - 1)
        a_cur = ac[cur] if cur >= 0 else torch.tensor(1.0)
        a_t = ac[t]

        def step(x, t=t, a_cur=a_cur, a_t=a_t):
            out = _call_model(model_fn, x, t)
            if match_diffusers:
                x0_hat, eps = model_output_to_x0_eps(out, x, a_cur ** 0.5, (1 - a_cur) ** 0.5, prediction)
            else:
                eps = model_output_to_x0_eps(out, x, a_t ** 0.5, (1 - a_t) ** 0.5, prediction)[1]
                x0_hat = (x - (1 - a_cur) ** 0.5 * eps) / a_cur ** 0.5
            return a_t ** 0.5 * x0_hat + (1 - a_t) ** 0.5 * eps, x0_hat

        x, x0_hat = run_step(step, x, checkpoint=checkpoint)
        _emit(callback, i, t, x, x0_hat)
    return x


def sample_ddpm(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", timestep_spacing: str = "trailing",
                generator: torch.Generator | None = None, thresholding: bool = False,
                dynamic_thresholding_ratio: float = 0.995, sample_max_value: float = 1.0,
                clip_sample: bool = False, clip_sample_range: float = 1.0,
                checkpoint: bool = False, callback=None, pre=None, post=None) -> Tensor:
    """DDPMScheduler (variance_type="fixed_small"): ancestral sampling between the chosen timesteps.
    Its noise comes from `generator` (None: the global RNG), so a seeded generator repeats a sample.
    pre / post: the guidance hooks of sample_ddim (post sees x_prev with its noise added)."""
    _check_prediction(prediction)
    ac = schedule.alphas_cumprod.float()
    ts = _timesteps("discrete", timestep_spacing, steps, len(ac)).tolist()
    x = x_T
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        a_t = ac[t]
        a_prev = ac[prev] if prev >= 0 else torch.tensor(1.0)
        b_t, b_prev = 1 - a_t, 1 - a_prev
        cur_alpha = a_t / a_prev
        cur_beta = 1 - cur_alpha
        c_x0 = (a_prev ** 0.5 * cur_beta) / b_t
        c_x = cur_alpha ** 0.5 * b_prev / b_t
        std = torch.clamp(b_prev / b_t * cur_beta, min=1e-20) ** 0.5
        # diffusers draws noise whenever t > 0, even on the last step where std is ~1e-10
        noise = randn_like(x, generator) if t > 0 else None

        def step(x, noise, t=t, a_t=a_t, b_t=b_t, c_x0=c_x0, c_x=c_x, std=std):
            out = _call_model(model_fn, x, t)
            x0, _ = model_output_to_x0_eps(out, x, a_t ** 0.5, b_t ** 0.5, prediction)
            x0 = _postprocess_x0(x0, thresholding, dynamic_thresholding_ratio, sample_max_value,
                                 clip_sample, clip_sample_range)
            x_prev = c_x0 * x0 + c_x * x
            if noise is not None:
                x_prev = x_prev + std * noise
            return x_prev, x0

        if pre is not None:
            x = pre(i, x)
        x_t = x
        x, x0 = run_step(step, x, noise, checkpoint=checkpoint)
        if post is not None:
            x = post(i, prev, x_t, x, x0)
        _emit(callback, i, t, x, x0)
    return x


# ---------------------------------------------------------------- EDICT (exactly invertible coupled DDIM)

def edict_mix(steps: int) -> float:
    """DOODL's EDICT mixing weight p as DITTO App. L set it: 0.83 at 20 steps, 0.93 at 50
    (linear between, clamped outside)."""
    return float(min(0.93, max(0.83, 0.83 + (steps - 20) * (0.93 - 0.83) / 30)))


def _edict_plan(schedule: NoiseSchedule, steps: int, timestep_spacing: str) -> list[tuple[float, Tensor, Tensor]]:
    # per step: (t, a = sqrt(abar_prev / abar_t), b = eps coefficient of the DDIM update)
    ac = schedule.alphas_cumprod.double()
    T = len(ac)
    stride = T // steps
    plan = []
    for t in _timesteps("discrete", timestep_spacing, steps, T).tolist():
        a_t = ac[t]
        a_prev = ac[t - stride] if t - stride >= 0 else torch.tensor(1.0, dtype=torch.float64)
        plan.append((t, (a_prev / a_t) ** 0.5, (1 - a_prev) ** 0.5 - (a_prev * (1 - a_t) / a_t) ** 0.5))
    return plan


def _edict_eps(model_fn: ModelFn, x: Tensor, t, a_t: Tensor, prediction: str) -> Tensor:
    out = _call_model(model_fn, x, t)
    return model_output_to_x0_eps(out, x, (a_t ** 0.5).to(x.dtype), ((1 - a_t) ** 0.5).to(x.dtype), prediction)[1]


class Edict:
    """One EDICT step (Wallace et al. 2023, as DOODL runs it: the pair's update order alternates
    each step) and its exact inverse."""

    def __init__(self, model_fn: ModelFn, schedule: NoiseSchedule, steps: int, prediction: str, mix: float,
                 timestep_spacing: str):
        _check_prediction(prediction)
        if not 0.0 < mix <= 1.0:
            raise ValueError(f"EDICT mixing weight p must be in (0, 1], got {mix}")
        self.fn, self.prediction, self.p = model_fn, prediction, mix
        self.plan = _edict_plan(schedule, steps, timestep_spacing)
        self.ac = schedule.alphas_cumprod.double()

    def _coef(self, i: int, like: Tensor):
        t, a, b = self.plan[i]
        return t, a.to(like.dtype), b.to(like.dtype), self.ac[int(t)]

    def step(self, i: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        t, a, b, a_t = self._coef(i, x)
        if i % 2:
            x, y = y, x
        x = a * x + b * _edict_eps(self.fn, y, t, a_t, self.prediction)
        y = a * y + b * _edict_eps(self.fn, x, t, a_t, self.prediction)
        if i % 2:
            x, y = y, x
        x = self.p * x + (1 - self.p) * y
        y = self.p * y + (1 - self.p) * x
        return x, y

    def inverse(self, i: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        t, a, b, a_t = self._coef(i, x)
        y = (y - (1 - self.p) * x) / self.p
        x = (x - (1 - self.p) * y) / self.p
        if i % 2:
            x, y = y, x
        y = (y - b * _edict_eps(self.fn, x, t, a_t, self.prediction)) / a
        x = (x - b * _edict_eps(self.fn, y, t, a_t, self.prediction)) / a
        if i % 2:
            x, y = y, x
        return x, y


def sample_edict(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                 prediction: str = "v_prediction", mix: float = 0.93, timestep_spacing: str = "leading",
                 y_T: Tensor | None = None, callback=None) -> tuple[Tensor, Tensor]:
    """EDICT sampling: two coupled DDIM chains (x, y), both from x_T unless y_T is given, mixed
    with weight p after every step; -> (x0, y0). 2 model calls a step, no thresholding (it would
    break invertibility). Differentiable like the other samplers; DOODL backpropagates at O(1)
    memory in steps by rebuilding each step with Edict.inverse instead (control/methods/doodl.py).
    "leading" spacing by default (SD's, where EDICT and DOODL were made): "trailing" starts at
    t = 999, where abar ~ 2e-9 makes the step's x coefficient sqrt(abar_prev / abar_t) ~ 1e3,
    and EDICT's cross-chain eps mismatch blows up by that factor."""
    edict = Edict(model_fn, schedule, steps, prediction, mix, timestep_spacing)
    x, y = x_T, x_T if y_T is None else y_T
    for i in range(len(edict.plan)):
        x, y = edict.step(i, x, y)
        _emit(callback, i, edict.plan[i][0], x, None)
    return x, y


def invert_edict(model_fn: ModelFn, x0: Tensor, y0: Tensor, schedule: NoiseSchedule, steps: int, *,
                 prediction: str = "v_prediction", mix: float = 0.93,
                 timestep_spacing: str = "leading") -> tuple[Tensor, Tensor]:
    """The exact inverse of sample_edict: (x0, y0) -> (x_T, y_T), to float rounding."""
    edict = Edict(model_fn, schedule, steps, prediction, mix, timestep_spacing)
    x, y = x0, y0
    for i in reversed(range(len(edict.plan))):
        x, y = edict.inverse(i, x, y)
    return x, y


# ---------------------------------------------------------------- DPM-Solver++(2M)

def _vp_from_sigma(s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    alpha = 1 / ((s ** 2 + 1) ** 0.5)
    sigma = s * alpha
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


def sample_dpmpp_2m(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                    prediction: str = "v_prediction", timestep_spacing: str = "linspace",
                    thresholding: bool = False, dynamic_thresholding_ratio: float = 0.995,
                    sample_max_value: float = 1.0, lower_order_final: bool = True,
                    final_sigmas_type: str = "zero", checkpoint: bool = False, callback=None) -> Tensor:
    """DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint")."""
    _check_prediction(prediction)
    T = schedule.num_train_timesteps
    ts = _timesteps("dpm", timestep_spacing, steps, T).tolist()
    sig = _sigma_table(schedule, np.asarray(ts), final_sigmas_type)
    n = len(ts)
    x, prev_x0 = x_T, None
    for i, t in enumerate(ts):
        # First step has no history; the last is first order when it lands on sigma = 0 (the
        # default "zero" final sigma) or, with lower_order_final, for short (< 15 step) schedules.
        first_order = i == 0 or (i == n - 1 and ((lower_order_final and n < 15) or final_sigmas_type == "zero"))
        alpha_t, sigma_t, lam_t = _vp_from_sigma(sig[i + 1])
        alpha_s0, sigma_s0, lam_s0 = _vp_from_sigma(sig[i])
        h = lam_t - lam_s0
        c_x = sigma_t / sigma_s0
        c_d = alpha_t * (torch.exp(-h) - 1.0)
        inv_r0 = None if first_order else 1.0 / ((lam_s0 - _vp_from_sigma(sig[i - 1])[2]) / h)

        def step(x, prev_x0, t=t, alpha_s0=alpha_s0, sigma_s0=sigma_s0, c_x=c_x, c_d=c_d, inv_r0=inv_r0):
            out = _call_model(model_fn, x, t)
            x0, _ = model_output_to_x0_eps(out, x, alpha_s0, sigma_s0, prediction)
            if thresholding:
                x0 = dynamic_threshold(x0, dynamic_thresholding_ratio, sample_max_value)
            xf = _upcast(x)
            if inv_r0 is None:
                x_next = c_x * xf - c_d * x0
            else:  # midpoint 2nd order: D1 = (m0 - m1) / r0
                x_next = c_x * xf - c_d * x0 - 0.5 * c_d * (inv_r0 * (x0 - prev_x0))
            return x_next.to(out.dtype), x0

        x, prev_x0 = run_step(step, x, prev_x0, checkpoint=checkpoint)
        _emit(callback, i, t, x, prev_x0)
    return x


# ---------------------------------------------------------------- Euler / Heun (sigma space)

def _x0_sigma_space(out: Tensor, x: Tensor, s: Tensor, prediction: str) -> Tensor:
    # x here is the sigma-space sample x0 + s * eps; formulas as in diffusers Euler/Heun
    if prediction == "epsilon":
        return x - s * out
    return out * (-s / (s ** 2 + 1) ** 0.5) + (x / (s ** 2 + 1))


def _to_vp(x: Tensor, s: Tensor) -> Tensor:
    return x / ((s ** 2 + 1) ** 0.5)


def sample_euler(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                 prediction: str = "v_prediction", timestep_spacing: str = "linspace",
                 final_sigmas_type: str = "zero", checkpoint: bool = False, callback=None) -> Tensor:
    """EulerDiscreteScheduler with s_churn = 0 (deterministic), linear sigma interpolation."""
    _check_prediction(prediction)
    ts = _timesteps("sigma", timestep_spacing, steps, schedule.num_train_timesteps)
    sig = _sigma_table(schedule, ts, final_sigmas_type)
    x = x_T * _init_noise_sigma(sig, timestep_spacing)
    for i, t in enumerate(ts.tolist()):
        s, s_next = sig[i], sig[i + 1]

        def step(x, t=t, s=s, s_next=s_next):
            out = _call_model(model_fn, _to_vp(x, s), t)
            xf = _upcast(x)
            x0 = _x0_sigma_space(out, xf, s, prediction)
            return (xf + (xf - x0) / s * (s_next - s)).to(out.dtype), x0

        x, x0 = run_step(step, x, checkpoint=checkpoint)
        _emit(callback, i, t, _to_vp(x, s_next), x0)
    return _to_vp(x, sig[-1])


def sample_heun(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", timestep_spacing: str = "linspace",
                clip_sample: bool = False, clip_sample_range: float = 1.0,
                checkpoint: bool = False, callback=None) -> Tensor:
    """HeunDiscreteScheduler: Euler predictor + trapezoidal corrector, 2 * steps - 1 model calls.

    The last step lands on sigma = 0, where the corrector would divide by zero, so diffusers
    (and this) ends with a plain Euler step.
    """
    _check_prediction(prediction)
    ts = _timesteps("sigma", timestep_spacing, steps, schedule.num_train_timesteps).tolist()
    sig = _sigma_table(schedule, np.asarray(ts, dtype=np.float32))
    x = x_T * _init_noise_sigma(sig, timestep_spacing)

    def denoise(x, t, s):
        x0 = _x0_sigma_space(_call_model(model_fn, _to_vp(x, s), t), x, s, prediction)
        return x0.clamp(-clip_sample_range, clip_sample_range) if clip_sample else x0

    for i, t in enumerate(ts):
        s, s_next = sig[i], sig[i + 1]

        def predictor(x, t=t, s=s, s_next=s_next):
            x0 = denoise(x, t, s)
            d = (x - x0) / s
            return x + d * (s_next - s), d, x0

        def corrector(x_pred, x, d, t=ts[i + 1] if i + 1 < len(ts) else None, s=s, s_next=s_next):
            d2 = (x_pred - denoise(x_pred, t, s_next)) / s_next
            return x + (d + d2) / 2 * (s_next - s)

        # two checkpoints per step: only one model call's activations are live during backward
        x_pred, d, x0 = run_step(predictor, x, checkpoint=checkpoint)
        x = x_pred if i == len(ts) - 1 else run_step(corrector, x_pred, x, d, checkpoint=checkpoint)
        _emit(callback, i, t, _to_vp(x, s_next), x0)
    return x


# ---------------------------------------------------------------- registry

SAMPLERS: dict[str, Callable[..., Tensor]] = {name: globals()[f"sample_{name}"] for name in SAMPLER_NAMES}
_KIND = {"ddim": "discrete", "ddpm": "discrete", "dpmpp_2m": "dpm", "euler": "sigma", "heun": "sigma"}
DEFAULT_SPACING = {"ddim": "trailing", "ddpm": "trailing", "dpmpp_2m": "linspace", "euler": "linspace",
                   "heun": "linspace"}


def get_sampler(name: str) -> Callable[..., Tensor]:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise DittoError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}") from None


def sampler_timesteps(name: str, schedule: NoiseSchedule | int, steps: int, *,
                      timestep_spacing: str | None = None, **_sampler_kwargs) -> list[float]:
    """Timesteps at which `name` calls the model, in call order (Heun repeats all but the first).

    Extra sampler kwargs are accepted and ignored so callers can pass the sampler's kwargs as is.
    `schedule` may also be just num_train_timesteps.
    """
    get_sampler(name)
    T = schedule if isinstance(schedule, int) else schedule.num_train_timesteps
    ts = _timesteps(_KIND[name], timestep_spacing or DEFAULT_SPACING[name], steps, T).tolist()
    if name == "heun":
        ts = ts[:1] + [t for t in ts[1:] for _ in (0, 1)]
    return [float(t) for t in ts]


def model_calls(name: str, steps: int, *, timestep_spacing: str | None = None,
                num_train_timesteps: int = 1000) -> int:
    """Number of model_fn calls per sample: steps (2 * steps - 1 for Heun).

    Counted from the actual timesteps, since diffusers' "trailing" spacing gives steps + 1
    timesteps for a few step counts (e.g. 61).
    """
    return len(sampler_timesteps(name, num_train_timesteps, steps, timestep_spacing=timestep_spacing))
