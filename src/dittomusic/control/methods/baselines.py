"""Training-free baselines DITTO is compared with (DITTO sec. 5.4), on the same DDIM sampler.

  default         the unsteered model ('Default TTM' of DITTO's Table 3)
  freedom         x_{t-1} <- x_{t-1} - eta_t grad_{x_t} L(f(x0_hat(x_t)), y)   (Yu et al. 2023)
  naive           after each step, reference frames := the reference noised to t-1
  multidiffusion  after each step, reference frames := mean(generated, noised reference)
  multidiffusion50  the same, for the first half of the steps only ("MD-50")

`guided_ddim` is sample_ddim (trailing spacing, eta 0, thresholding) with a FreeDoM step and a
post-step hook; with neither it returns sample_ddim's output bit for bit (tested). Unlike the
samplers it may enable gradients internally (FreeDoM needs grad_{x_t}); it never backpropagates
into its caller.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dittomusic.backends.base import Backend, along_time
from dittomusic.errors import DittoError
from dittomusic.sampling.samplers import ModelFn, sample_ddim
from dittomusic.sampling.schedule import NoiseSchedule

from ..base import BatchedControl, Control
from ..masks import PaintMasks
from ..tasks.painting import PaintControl, paint_of
from .base import FREEDOM_SCALE, FreedomConfig, MethodConfig, MethodResult, register_method


def guided_ddim(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", thresholding: bool = True,
                guide: Callable[[Tensor], Tensor] | None = None, guide_scale: float = FREEDOM_SCALE,
                post: Callable[[int, int, Tensor], Tensor] | None = None, callback=None) -> Tensor:
    """DDIM with an optional FreeDoM gradient step (guide: x0 -> per-item loss [B]) and a
    post-step hook post(i, prev_t, x_prev) -> x_prev (prev_t = -1 after the last step)."""

    def leaf(i: int, x: Tensor) -> Tensor:  # FreeDoM differentiates each step from its own x_t
        return x.detach().requires_grad_(True)

    def after(i: int, prev: int, x_t: Tensor, x_prev: Tensor, x0: Tensor) -> Tensor:
        if guide is not None:
            (grad,) = torch.autograd.grad(guide(x0).sum(), x_t)
            x_prev = x_prev.detach()
            # FreeDoM's eta_t: a fixed fraction of this step's own update size, per item, so the
            # guidance neither vanishes early nor swamps the sampler late in the chain
            dims = tuple(range(1, x_t.dim()))
            step_norm = (x_prev - x_t.detach()).square().mean(dim=dims, keepdim=True).sqrt()
            g_norm = grad.square().mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)
            x_prev = x_prev - guide_scale * step_norm / g_norm * grad
        x_prev = x_prev.detach()
        return x_prev if post is None else post(i, prev, x_prev)

    with torch.set_grad_enabled(guide is not None):
        return sample_ddim(model_fn, x_T.detach(), schedule, steps, prediction=prediction, thresholding=thresholding,
                           pre=leaf if guide is not None else None, post=after, callback=callback)


def guided_sample(backend: Backend, cond, x_T: Tensor, cfg: MethodConfig, **hooks) -> Tensor:
    """guided_ddim on the backend, decoded to the mel (clamped to [-1, 1])."""
    x0 = guided_ddim(backend.model_fn(cond, cfg.guidance), x_T, backend.schedule, cfg.steps,
                     prediction=backend.prediction, thresholding=backend.thresholding, **hooks)
    return backend.decode(x0)


@register_method("default", help="no steering")
def default_sampling(backend: Backend, control: Control, cond, x_T: Tensor, cfg: MethodConfig,
                     resume=None) -> MethodResult:
    """The unsteered model: DDIM from x_T (the 'Default TTM' row of DITTO's Table 3)."""
    with torch.no_grad():
        mel = backend.sample(x_T, cond, steps=cfg.steps, guidance=cfg.guidance)
    return MethodResult(x_T, mel, cfg.steps)


@register_method("freedom", config=FreedomConfig, help="FreeDoM: a loss gradient step at every sampler step")
def freedom(backend: Backend, control: Control, cond, x_T: Tensor, cfg: FreedomConfig, resume=None) -> MethodResult:
    """FreeDoM: a gradient step on x_t at every DDIM step, through the one-step x0 estimate
    (decoded: the loss reads the mel)."""
    mel = guided_sample(backend, cond, x_T, cfg, guide=lambda x0: control.loss(backend.decode(x0)),
                        guide_scale=cfg.freedom_scale)
    return MethodResult(x_T, mel.detach(), cfg.steps, info={"freedom_scale": cfg.freedom_scale})


def _masking(backend: Backend, control, cond, x_T, cfg: MethodConfig, mix: float, until: float) -> MethodResult:
    hook = mask_hook(control, backend, x_T, cfg.steps, mix=mix, until=until)
    with torch.no_grad():
        mel = guided_sample(backend, cond, x_T, cfg, post=hook)
    return MethodResult(x_T, mel, cfg.steps)


@register_method("naive", help="naive masking: the reference pasted into the matched frames (painting)")
def naive_masking(backend: Backend, control, cond, x_T, cfg: MethodConfig, resume=None) -> MethodResult:
    return _masking(backend, control, cond, x_T, cfg, mix=1.0, until=1.0)


@register_method("multidiffusion", help="MultiDiffusion: matched frames averaged with the reference (painting)")
def multidiffusion(backend: Backend, control, cond, x_T, cfg: MethodConfig, resume=None) -> MethodResult:
    return _masking(backend, control, cond, x_T, cfg, mix=0.5, until=1.0)


@register_method("multidiffusion50", help="MultiDiffusion for the first half of the steps (painting)")
def multidiffusion50(backend: Backend, control, cond, x_T, cfg: MethodConfig, resume=None) -> MethodResult:
    return _masking(backend, control, cond, x_T, cfg, mix=0.5, until=0.5)


def require_paint(control: Control) -> PaintControl:
    """The painting control of a masking method's control, or a clear error."""
    paint = paint_of(control)
    if paint is None:
        raise DittoError(f"naive masking and MultiDiffusion apply to outpaint/inpaint/loop only, not {control.name!r}; "
                         "use --method ditto or freedom")
    return paint


def mask_hook(control: Control, backend: Backend, x_T: Tensor, steps: int, *, mix: float,
              until: float = 1.0, seed: int = 0) -> Callable[[int, int, Tensor], Tensor]:
    """Post-step hook replacing (mix=1, naive masking) or averaging with (mix=0.5, MultiDiffusion)
    the matched frames and the reference noised to the new timestep. Reference-free loops tie
    the two matched regions of the sample to each other instead. until: fraction of the steps
    to apply it for (0.5 = MD-50). On a latent backend the hook works on the latent frames
    whose mel frames are all matched (`Backend.frames_to_latent`), against the encoded
    reference (`reference_latent`)."""
    if isinstance(control, BatchedControl):  # one reference per item: hook each row separately
        hooks = [mask_hook(c, backend, x_T[b:b + 1], steps, mix=mix, until=until, seed=seed + b)
                 for b, c in enumerate(control.controls)]
        return lambda i, prev, x: torch.cat([h(i, prev, x[b:b + 1]) for b, h in enumerate(hooks)])
    m = require_paint(control).masks
    ac = backend.schedule.alphas_cumprod.float()
    gen_idx = backend.frames_to_latent(m.gen_idx)
    ref = None
    if m.ref_mel is None:  # a self-loop: the two regions pair up frame for frame
        ref_idx = backend.frames_to_latent(m.ref_idx)
        k = min(len(gen_idx), len(ref_idx))
        gen_idx, ref_idx = gen_idx[:k].to(x_T.device), ref_idx[:k].to(x_T.device)
    else:
        gen_idx = gen_idx.to(x_T.device)
        ref = reference_latent(backend, m).to(x_T)
    g = torch.Generator().manual_seed(seed)

    def post(i: int, prev: int, x: Tensor) -> Tensor:
        if i + 1 > until * steps:
            return x
        x = x.clone()
        xt = along_time(backend, x)  # a view: writes land in x
        cur = xt[..., gen_idx]
        if ref is None:  # self-loop: both regions move to their mean (naive: copy the earlier one)
            other = xt[..., ref_idx]
            new = other if mix >= 1.0 else (1 - mix) * cur + mix * other
            xt[..., gen_idx] = new
            if mix < 1.0:
                xt[..., ref_idx] = new
            return x
        a = ac[prev] if prev >= 0 else torch.tensor(1.0)
        noise = torch.randn(cur.shape, generator=g).to(x)
        target = a.sqrt().to(x) * ref + (1 - a).sqrt().to(x) * noise
        xt[..., gen_idx] = (1 - mix) * cur + mix * target
        return x

    return post


def reference_latent(backend: Backend, m: PaintMasks) -> Tensor:
    """The painting reference in the backend's space, at the latent frames
    frames_to_latent(m.gen_idx) [..., len]: the reference's matched frames are laid on the
    generated clip's mel grid (silence, -1, elsewhere) and encoded, so a latent model sees them
    where the clip has them. A mel model gets m.ref_mel[:, m.ref_idx] itself."""
    canvas = torch.full((1, m.ref_mel.shape[0], m.frames), -1.0, dtype=m.ref_mel.dtype)
    canvas[..., m.gen_idx] = m.ref_mel[:, m.ref_idx]
    with torch.no_grad():
        z = backend.encode(canvas.to(backend.device))[0]
    return along_time(backend, z)[..., backend.frames_to_latent(m.gen_idx).to(z.device)]
