"""DOODL (Wallace et al. 2023), DITTO's optimization baseline (sec. 5.4, App. L): x_T optimized
through EDICT, an exactly invertible coupled DDIM, whose backward rebuilds each step from its
output instead of storing it, so memory is O(1) in the number of steps without checkpoints.
DOODL's two ad-hoc changes to plain latent optimization are kept: after each update, x_T gets
a little fresh noise and is renormalized to its starting norm.

DOODL's own code takes SGD steps with momentum on a clipped gradient; DITTO ran it at its own
learning rate (App. L), so here it shares DITTO's optimizer (Adam, optimize_latent).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dittomusic.backends.base import Backend
from dittomusic.errors import DittoError
from dittomusic.options import Option
from dittomusic.sampling.samplers import Edict, ModelFn, edict_mix
from dittomusic.sampling.schedule import NoiseSchedule

from ..base import Control
from ..optimize import optimize_latent
from .base import DOODL_NOISE, DoodlConfig, MethodResult, register_method

OPTIONS = (
    Option("--edict-mix", "edict_mix", None, "doodl: EDICT's mixing weight p [default: 0.83 at 20 steps, 0.93 at "
           "50, as DITTO App. L].", "float"),
    Option("--doodl-noise", "doodl_noise", DOODL_NOISE, "doodl: std of the noise added to x_T after each update.",
           "float"),
)


class _ReversibleChain(torch.autograd.Function):
    """The whole EDICT chain with O(1) memory in the number of steps: forward keeps only the last
    pair; backward walks the chain back, rebuilding each step's input with the exact inverse and
    backpropagating through that one step (DOODL's use of EDICT: no checkpoints stored)."""

    @staticmethod
    def forward(ctx, x, y, edict: Edict):
        for i in range(len(edict.plan)):
            x, y = edict.step(i, x, y)
        ctx.edict = edict
        ctx.save_for_backward(x, y)
        return x.clone(), y.clone()

    @staticmethod
    def backward(ctx, gx, gy):
        edict = ctx.edict
        x, y = ctx.saved_tensors
        gx = torch.zeros_like(x) if gx is None else gx
        gy = torch.zeros_like(y) if gy is None else gy
        for i in reversed(range(len(edict.plan))):
            with torch.no_grad():
                x, y = edict.inverse(i, x, y)
            with torch.enable_grad():
                xi, yi = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
                gx, gy = torch.autograd.grad(edict.step(i, xi, yi), (xi, yi), (gx, gy))
        return gx, gy, None


def edict_reversible(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                     prediction: str = "v_prediction", mix: float = 0.93,
                     timestep_spacing: str = "leading") -> tuple[Tensor, Tensor]:
    """sample_edict from x_T (both chains), differentiable in x_T at O(1) memory in steps: each
    step runs once more in backward to be rebuilt (2 calls) and once to be differentiated (2)."""
    edict = Edict(model_fn, schedule, steps, prediction, mix, timestep_spacing)
    return _ReversibleChain.apply(x_T, x_T, edict)


@register_method("doodl", config=DoodlConfig, resumable=True, options=OPTIONS,
                 help="DOODL: x_T optimized through the invertible EDICT sampler (O(1) memory in steps)")
def doodl(backend: Backend, control: Control, cond, x_T: Tensor, cfg: DoodlConfig,
          resume: dict | None = None) -> MethodResult:
    p = edict_mix(cfg.steps) if cfg.edict_mix is None else float(cfg.edict_mix)
    if not 0.0 < p <= 1.0:
        raise DittoError(f"--edict-mix must be in (0, 1], got {p}")
    if not cfg.doodl_noise >= 0:
        raise DittoError(f"--doodl-noise must be >= 0, got {cfg.doodl_noise}")
    if cfg.sampler != "ddim":
        raise DittoError(f"doodl samples with EDICT (coupled DDIM), not --sampler {cfg.sampler}")
    fn = backend.model_fn(cond, cfg.guidance)

    def render(x):
        x0, _ = edict_reversible(fn, x, backend.schedule, cfg.steps, prediction=backend.prediction, mix=p)
        return backend.decode(x0)

    start = resume["x_T"] if resume is not None else x_T
    norm = start.detach().flatten(1).norm(dim=1)
    g = torch.Generator().manual_seed(cfg.noise_seed)

    def project(x: Tensor) -> None:
        if cfg.doodl_noise:
            x.add_(cfg.doodl_noise * torch.randn(x.shape, generator=g).to(x))
        x.mul_((norm.to(x) / x.flatten(1).norm(dim=1)).view(-1, *[1] * (x.dim() - 1)))

    r = optimize_latent(render, control.loss, x_T, cfg.optim, resume=resume, progress=cfg.progress,
                        callback=cfg.callback, project=project, desc=f"doodl {control.name}")
    # a rendered iterate is 2 calls a step; its backward 2 to rebuild each step and 2 to differentiate it
    calls = r.evaluations * 2 * cfg.steps + r.grad_evaluations * 4 * cfg.steps
    return MethodResult(r.x_T, r.x0, calls, optim=r, info={"edict_mix": p, "doodl_noise": cfg.doodl_noise})
