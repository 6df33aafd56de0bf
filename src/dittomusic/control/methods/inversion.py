"""Inverting a real recording (DITTO App. D, Table 7): where a sampler's x_T comes from.

  naive_noising   the reference noised to the sampler's first timestep (forward diffusion), then DDIM
  ddim_inversion  the reference's DDIM inversion (same steps and guidance), then DDIM
  ditto_invert    DITTO started from the DDIM inversion (the paper's choice)

Null-text inversion is not here: it optimizes the unconditional text embedding per step, and
dittomusic's models have no embedding to optimize (the null condition is a dropped tag).
These run on the invert task (or any control with a `reference(batch)` mel).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dittomusic.backends.base import Backend
from dittomusic.errors import DittoError
from dittomusic.sampling.samplers import invert_ddim, sampler_timesteps

from ..base import BatchedControl, Control
from .base import DittoConfig, MethodConfig, MethodResult, register_method
from .ditto import ditto


def reference_of(control: Control, batch: int) -> Tensor:
    """The reference mel of each item [batch, n_mels, F] of an inversion control."""
    if isinstance(control, BatchedControl):
        return torch.cat([reference_of(c, 1) for c in control.controls])
    if not hasattr(control, "reference"):
        raise DittoError(f"this method inverts a recording: use it with the invert task, not {control.name!r}")
    return control.reference(batch)


def ddim_inverted(backend: Backend, control: Control, cond, x_T: Tensor, cfg: MethodConfig) -> Tensor:
    """x_T that DDIM (cfg.steps, cfg.guidance) maps back to about the reference."""
    ref = reference_of(control, x_T.shape[0]).to(x_T)
    with torch.no_grad():
        return invert_ddim(backend.model_fn(cond, cfg.guidance), backend.encode(ref), backend.schedule, cfg.steps,
                           prediction=backend.prediction)


def _sampled(backend: Backend, cond, x_T: Tensor, cfg: MethodConfig, info: dict) -> MethodResult:
    with torch.no_grad():
        mel = backend.sample(x_T, cond, steps=cfg.steps, guidance=cfg.guidance)
    return MethodResult(x_T, mel, 2 * cfg.steps if info.get("inverted") else cfg.steps, info=info)


@register_method("naive_noising", help="the reference noised to the first timestep, then sampled (invert)")
def naive_noising(backend: Backend, control: Control, cond, x_T: Tensor, cfg: MethodConfig,
                  resume=None) -> MethodResult:
    ref = backend.encode(reference_of(control, x_T.shape[0]).to(x_T))
    t = int(sampler_timesteps("ddim", backend.schedule, cfg.steps)[0])
    a = backend.schedule.alphas_cumprod[t].to(x_T)
    return _sampled(backend, cond, a.sqrt() * ref + (1 - a).sqrt() * x_T, cfg, {"noised_to": t})


@register_method("ddim_inversion", help="the reference's DDIM inversion, then sampled (invert)")
def ddim_inversion(backend: Backend, control: Control, cond, x_T: Tensor, cfg: MethodConfig,
                   resume=None) -> MethodResult:
    return _sampled(backend, cond, ddim_inverted(backend, control, cond, x_T, cfg), cfg, {"inverted": True})


@register_method("ditto_invert", config=DittoConfig, resumable=True,
                 help="DITTO from the reference's DDIM inversion (invert, App. D)")
def ditto_invert(backend: Backend, control: Control, cond, x_T: Tensor, cfg: DittoConfig,
                 resume: dict | None = None) -> MethodResult:
    calls = 0
    if resume is None:  # a resumed run carries its own x_T
        x_T, calls = ddim_inverted(backend, control, cond, x_T, cfg), cfg.steps
    res = ditto(backend, control, cond, x_T, cfg, resume=resume)
    res.model_calls += calls
    return res
