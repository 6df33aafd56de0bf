"""Consistency (CD) and consistency-trajectory (CTD) students: their maps, samplers and losses.

Time is the teacher's discrete timestep 0..999 plus CLEAN = -1, the alpha = 1 end on which
DDIM's last step lands (diffusers' set_alpha_to_one). Training and sampling use the grid of
DDIM "trailing" timesteps followed by CLEAN, e.g. [999, 949, ..., 49, -1] for 20 steps.

Consistency function. A student is a MelDiT, and f(x_t, t) is simply its x0 estimate,
x0 = alpha_t x_t - sigma_t v(x_t, t), which inside MelDiT is EDM's c_skip * y + c_out * F.
No extra (c_skip, c_out) wrapper: at CLEAN (alpha, sigma) = (1, 0), so f(x, CLEAN) = x exactly,
and EDM's c_skip -> 1, c_out -> 0 as sigma -> 0 keep f continuous there (at t = 0, f is already
0.9996 x + 0.0064 F). That is Song et al.'s boundary parameterisation with t_min = CLEAN, and it
leaves a student initialised from its teacher identical to the teacher, bit for bit.

Trajectory map (CTM, Kim et al. 2023). G(x_t, t, s) = alpha_s g + sigma_s eps with g, eps the
student's x0 and noise estimates at x_t given the target time s (eps = (x_t - alpha_t g) /
sigma_t): a deterministic DDIM jump, so G(x_t, t, CLEAN) = g. With its zero-initialised s
embedding a CTD student's G starts as the teacher's DDIM jump.

All maps are plain differentiable functions: nothing here switches autograd off, except the
teacher/target computations inside the losses.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dittomusic.sampling.guidance import cfg_model_fn
from dittomusic.sampling.samplers import randn_like, run_step, sampler_timesteps
from dittomusic.sampling.schedule import NoiseSchedule, model_output_to_x0_eps

CLEAN = -1
_COSINE = NoiseSchedule.cosine()


def time_grid(steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """DDIM trailing timesteps for `steps` steps, then CLEAN: [999, 949, ..., 49, -1] for 20.

    Stepping between adjacent points is exactly sample_ddim's step when steps divides 1000.
    """
    return [int(t) for t in sampler_timesteps("ddim", num_train_timesteps, steps)] + [CLEAN]


def _cfg(net):
    return getattr(net, "module", net).cfg  # DDP keeps the model in .module


def _times(t, like: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float32)
    return (t.expand(like.shape[0]) if t.dim() == 0 or t.numel() == 1 else t).to(like.device)


def alpha_sigma(t: Tensor, like: Tensor, schedule: NoiseSchedule | None = None) -> tuple[Tensor, Tensor]:
    """VP (alpha, sigma) per row, shaped to broadcast over `like`; CLEAN gives (1, 0).

    Float32 from the float32 alphas_cumprod, as sample_ddim computes them, so the results agree bitwise.
    """
    ac = (schedule or _COSINE).alphas_cumprod.float()
    tc = t.detach().cpu()
    a = torch.where(tc < 0, torch.ones(()), ac[tc.clamp(min=0).long()])
    shape = (-1,) + (1,) * (like.ndim - 1)
    return ((a ** 0.5).to(like.device, like.dtype).reshape(shape),
            ((1 - a) ** 0.5).to(like.device, like.dtype).reshape(shape))


def _jump_from_output(out: Tensor, x: Tensor, t: Tensor, s: Tensor, prediction: str, clip: bool,
                      schedule: NoiseSchedule | None) -> tuple[Tensor, Tensor]:
    # sample_ddim's operations in its order (eta 0): clip x0 only, keep the unclipped eps
    a_t, s_t = alpha_sigma(t, x, schedule)
    a_s, s_s = alpha_sigma(s, x, schedule)
    x0, eps = model_output_to_x0_eps(out, x, a_t, s_t, prediction)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)  # = dynamic thresholding at sample_max_value 1, as the pipeline samples
    return a_s * x0 + s_s * eps, x0


def _student_out(net, x: Tensor, t: Tensor, cond: dict | None, s: Tensor | None) -> Tensor:
    if _cfg(net).target_time:
        return net(x, t, cond, None, s)
    return net(x, t, cond, None)


def consistency_fn(student, x: Tensor, t, cond: dict | None = None,
                   schedule: NoiseSchedule | None = None) -> Tensor:
    """f(x_t, t): the student's x0 estimate (a CTD student's jump straight to CLEAN). f(x, CLEAN) = x."""
    t = _times(t, x)
    s = torch.full_like(t, CLEAN) if _cfg(student).target_time else None
    out = _student_out(student, x, t, cond, s)
    a_t, s_t = alpha_sigma(t, x, schedule)
    return model_output_to_x0_eps(out, x, a_t, s_t, _cfg(student).prediction)[0]


def _jump(student, x: Tensor, t, s, cond, schedule) -> tuple[Tensor, Tensor]:
    t, s = _times(t, x), _times(s, x)
    out = _student_out(student, x, t, cond, s)
    return _jump_from_output(out, x, t, s, _cfg(student).prediction, False, schedule)


def jump(student, x: Tensor, t, s, cond: dict | None = None, schedule: NoiseSchedule | None = None) -> Tensor:
    """G(x_t, t, s): DDIM jump from t to s (s <= t) with the student's estimate g(x_t, t, s).

    A CD student ignores s: G is then DDIM with its consistency x0.
    """
    return _jump(student, x, t, s, cond, schedule)[0]


def teacher_step(teacher, x: Tensor, t, s, cond: dict | None, guidance: float, *, clip: bool = True,
                 schedule: NoiseSchedule | None = None) -> Tensor:
    """One DDIM step (eta 0) of the teacher with classifier-free guidance from t to s.

    clip=True clips x0 to [-1, 1] as the generation pipeline's DDIM (thresholding) does, so
    the student learns the trajectories users get from the base model.
    """
    t, s = _times(t, x), _times(s, x)
    out = cfg_model_fn(teacher, cond, guidance)(x, t)
    return _jump_from_output(out, x, t, s, _cfg(teacher).prediction, clip, schedule)[0]


def teacher_ode(teacher, x: Tensor, t: int, cond: dict | None, guidance: float, grid: Sequence[int], *,
                clip: bool = True, schedule: NoiseSchedule | None = None) -> Tensor:
    """The teacher's guided DDIM from grid time t down the rest of `grid` (ending at CLEAN): the map a
    perfect CD student on that grid learns, as a stand-in f for consistency_sample's analysis."""
    grid = [int(u) for u in grid]
    if int(t) not in grid[:-1]:
        raise ValueError(f"t must be a time of the grid {grid[:-1]}, got {t}")
    i = grid.index(int(t))
    for u, v in zip(grid[i:], grid[i + 1:]):
        x = teacher_step(teacher, x, u, v, cond, guidance, clip=clip, schedule=schedule)
    return x


# ---------------------------------------------------------------- sampling

def consistency_sample(student, x_T: Tensor, cond: dict | None, steps: int, schedule: NoiseSchedule | None = None,
                       *, generator: torch.Generator | None = None, noise: Sequence[Tensor] | None = None,
                       checkpoint: bool = False, callback: Callable | None = None,
                       times: Sequence[int] | None = None) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1) on the DDIM trailing timesteps.

    x0 = f(x_T, T); then for each lower timestep t: x_t = alpha_t x0 + sigma_t z, x0 = f(x_t, t).
    z comes from `noise` (steps - 1 tensors) or is drawn from `generator`; with a freshly seeded
    generator (or fixed noise) the map x_T -> x0 is deterministic, as DITTO-2's optimisation
    needs. steps=1 is the single jump f(x_T, T). Returns x0, unclipped.
    times: the `steps` timesteps to evaluate f at instead (the first is x_T's, then the re-noise
    times, falling), as Alg. 1 leaves them free.
    """
    n_train = (schedule or _COSINE).num_train_timesteps
    ts = time_grid(steps, n_train)[:-1] if times is None else [int(t) for t in times]
    if times is not None and (len(ts) != steps or any(b >= a for a, b in zip(ts, ts[1:]))
                              or not 0 <= ts[-1] <= ts[0] < n_train):
        raise ValueError(f"times must be {steps} falling timesteps in [0, {n_train}), got {list(times)}")
    if noise is not None and len(noise) != len(ts) - 1:
        raise ValueError(f"{steps} steps re-noise {len(ts) - 1} times, got {len(noise)} noise tensors")

    def first(x, t=ts[0]):
        return consistency_fn(student, x, t, cond, schedule)

    x0 = run_step(first, x_T, checkpoint=checkpoint)
    if callback is not None:
        callback(dict(i=0, t=float(ts[0]), x=x0, x0=x0))
    for i, t in enumerate(ts[1:], start=1):
        z = noise[i - 1] if noise is not None else randn_like(x0, generator)  # drawn outside the checkpoint

        def step(x0, z, t=t):
            a, s = alpha_sigma(_times(t, x0), x0, schedule)
            return consistency_fn(student, a * x0 + s * z, t, cond, schedule)

        x0 = run_step(step, x0, z, checkpoint=checkpoint)
        if callback is not None:
            callback(dict(i=i, t=float(t), x=x0, x0=x0))
    return x0


def ctd_sample(student, x_T: Tensor, cond: dict | None, steps: int, schedule: NoiseSchedule | None = None, *,
               checkpoint: bool = False, callback: Callable | None = None) -> Tensor:
    """Deterministic trajectory sampling: x <- G(x, t_i, t_i+1) along time_grid(steps), ending at CLEAN.

    steps=1 is the single jump G(x_T, T, CLEAN) = g(x_T, T, CLEAN).
    """
    g = time_grid(steps, (schedule or _COSINE).num_train_timesteps)
    x = x_T
    for i, (t, s) in enumerate(zip(g[:-1], g[1:])):
        def step(x, t=t, s=s):
            return _jump(student, x, t, s, cond, schedule)

        x, x0 = run_step(step, x, checkpoint=checkpoint)
        if callback is not None:
            callback(dict(i=i, t=float(t), x=x, x0=x0))
    return x


# ---------------------------------------------------------------- distillation losses

class StopGrad:
    """A model's function with its parameters detached: gradients reach its inputs only (CTM's sg(theta))."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.cfg = model, model.cfg

    def __call__(self, *args):
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        return torch.func.functional_call(self.model, params, args)


def noisy(x0: Tensor, noise: Tensor, t: Tensor, schedule: NoiseSchedule | None = None) -> Tensor:
    a, s = alpha_sigma(t, x0, schedule)
    return a * x0 + s * noise


def cd_loss(student, target, teacher, x0: Tensor, t: Tensor, u: Tensor, noise: Tensor, cond: dict | None,
            guidance: float, *, clip: bool = True, schedule: NoiseSchedule | None = None) -> Tensor:
    """Consistency distillation: || f(x_t, t) - f^-(x_u^teacher, u) ||^2, u the grid point after t."""
    x_t = noisy(x0, noise, t, schedule)
    with torch.no_grad():
        x_u = teacher_step(teacher, x_t, t, u, cond, guidance, clip=clip, schedule=schedule)
        tgt = consistency_fn(target, x_u, u, cond, schedule)
    return F.mse_loss(consistency_fn(student, x_t, t, cond, schedule), tgt)


def ctd_loss(student, target, teacher, x0: Tensor, path: Tensor, s: Tensor, noise: Tensor, cond: dict | None,
             guidance: float, *, clip: bool = True, schedule: NoiseSchedule | None = None) -> Tensor:
    """CTM's consistency loss: path = [t, ..., u] (grid times per row, shape [k + 1, B]), s <= u.

    pred = G_theta(x_t, t, s), target = G_theta-(x_u, u, s) with x_u the teacher's k CFG DDIM
    steps along `path`; both are mapped to CLEAN by the stop-grad student G_sg(., s, CLEAN)
    before the L2 distance. (No GAN or DSM terms.)
    """
    sg = StopGrad(getattr(student, "module", student))
    x_t = noisy(x0, noise, path[0], schedule)
    with torch.no_grad():
        x_u = x_t
        for a, b in zip(path[:-1], path[1:]):
            x_u = teacher_step(teacher, x_u, a, b, cond, guidance, clip=clip, schedule=schedule)
        tgt = jump(sg, jump(target, x_u, path[-1], s, cond, schedule), s, CLEAN, cond, schedule)
    pred = jump(sg, jump(student, x_t, path[0], s, cond, schedule), s, CLEAN, cond, schedule)
    return F.mse_loss(pred, tgt)
