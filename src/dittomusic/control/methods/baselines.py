"""Training-free baselines DITTO is compared with (DITTO sec. 5.4), on the same DDIM sampler.

  default         the unsteered model ('Default TTM' of DITTO's Table 3)
  freedom         x_{t-1} <- x_{t-1} - eta_t grad_{x_t} L(f(x0_hat(x_t)), y)   (Yu et al. 2023)
  gg              Guidance Gradients (Levy et al. 2023): the same step with a fixed eta, plus a
                  data-consistency step on x0_hat for painting (a linear f)
  naive           after each step, reference frames := the reference noised to t-1
  multidiffusion  after each step, reference frames := mean(generated, noised reference)
  multidiffusion50  the same, for the first half of the steps only ("MD-50")

`guided_ddim` is sample_ddim (trailing spacing, eta 0, thresholding) with a guidance step and a
post-step hook; with neither it returns sample_ddim's output bit for bit (tested). With
sampler="ddpm" the same hooks run on sample_ddpm (App. I: DDPM + FreeDoM from a reused x_T).
Unlike the samplers it may enable gradients internally (guidance needs grad_{x_t}); it never
backpropagates into its caller.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dittomusic.backends.base import Backend, along_time
from dittomusic.errors import DittoError
from dittomusic.options import Option
from dittomusic.sampling.samplers import ModelFn, sample_ddim, sample_ddpm
from dittomusic.sampling.schedule import NoiseSchedule

from ..base import BatchedControl, Control
from ..masks import PaintMasks
from ..tasks.painting import PaintControl, paint_of
from .base import (FREEDOM_SCALE, GG_SCALE, FreedomConfig, GuidanceGradientsConfig, MethodConfig, MethodResult,
                   register_method)

GUIDED_SAMPLERS = ("ddim", "ddpm")


def guided_ddim(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", thresholding: bool = True,
                guide: Callable[[Tensor], Tensor] | None = None, guide_scale: float = FREEDOM_SCALE,
                fixed_step: bool = False, consistency: Callable[[Tensor], Tensor] | None = None,
                post: Callable[[int, int, Tensor], Tensor] | None = None, callback=None,
                sampler: str = "ddim", generator: torch.Generator | None = None) -> Tensor:
    """DDIM (or DDPM) with an optional guidance step (guide: x0 -> per-item loss [B]), an optional
    data-consistency map on x0 (consistency: x0 -> x0 projected onto the constraint, DDIM only)
    and a post-step hook post(i, prev_t, x_prev) -> x_prev (prev_t = -1 after the last step).
    fixed_step=False: FreeDoM's eta_t; True: Guidance Gradients' fixed eta."""
    if sampler not in GUIDED_SAMPLERS:
        raise DittoError(f"guided sampling runs on {' or '.join(GUIDED_SAMPLERS)}, not {sampler!r}")
    if consistency is not None and sampler != "ddim":
        raise DittoError("the data-consistency step is DDIM's (it rewrites x0 inside a deterministic update)")
    ac = schedule.alphas_cumprod.float()
    g_unit: list[Tensor] = []  # GG: the first step's gradient RMS per item, its fixed unit

    def leaf(i: int, x: Tensor) -> Tensor:  # guidance differentiates each step from its own x_t
        return x.detach().requires_grad_(True)

    def rms(v: Tensor) -> Tensor:
        return v.square().mean(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()

    def after(i: int, prev: int, x_t: Tensor, x_prev: Tensor, x0: Tensor) -> Tensor:
        if guide is not None:
            (grad,) = torch.autograd.grad(guide(x0).sum(), x_t)
            x_prev = x_prev.detach()
            if fixed_step:
                # one eta for every step; set in units of the first gradient so one value serves
                # losses of any scale (dB^2, mel MSE)
                if not g_unit:
                    g_unit.append(rms(grad).clamp_min(1e-12))
                x_prev = x_prev - guide_scale * grad / g_unit[0]
            else:
                # FreeDoM's eta_t: a fixed fraction of this step's own update size, per item, so the
                # guidance neither vanishes early nor swamps the sampler late in the chain
                step_norm = rms(x_prev - x_t.detach())
                x_prev = x_prev - guide_scale * step_norm / rms(grad).clamp_min(1e-12) * grad
        x_prev = x_prev.detach()
        if consistency is not None and prev < 0:  # the clean sample itself: project it, after guidance
            x_prev = consistency(x_prev)
        elif consistency is not None:
            # DDIM (eta 0) is linear in x0 at fixed eps: moving x0 moves x_prev by sqrt(abar_prev) times that
            x0 = x0.detach()
            x_prev = x_prev + ac[prev].sqrt().to(x_prev) * (consistency(x0) - x0)
        return x_prev if post is None else post(i, prev, x_prev)

    run = sample_ddim if sampler == "ddim" else sample_ddpm
    kw = {} if generator is None else {"generator": generator}
    with torch.set_grad_enabled(guide is not None):
        return run(model_fn, x_T.detach(), schedule, steps, prediction=prediction, thresholding=thresholding,
                   pre=leaf if guide is not None else None, post=after, callback=callback, **kw)


def noise_generator(cfg: MethodConfig) -> torch.Generator | None:
    """The seeded noise of a stochastic sampler (None for a deterministic one)."""
    from dittomusic.sampling.names import STOCHASTIC_SAMPLERS

    return torch.Generator().manual_seed(cfg.noise_seed) if cfg.sampler in STOCHASTIC_SAMPLERS else None


def guided_sample(backend: Backend, cond, x_T: Tensor, cfg: MethodConfig, **hooks) -> Tensor:
    """guided_ddim on the backend (cfg.sampler: ddim or ddpm), decoded to the mel (clamped to [-1, 1])."""
    x0 = guided_ddim(backend.model_fn(cond, cfg.guidance), x_T, backend.schedule, cfg.steps,
                     prediction=backend.prediction, thresholding=backend.thresholding, sampler=cfg.sampler,
                     generator=noise_generator(cfg), **hooks)
    return backend.decode(x0)


@register_method("default", help="no steering")
def default_sampling(backend: Backend, control: Control, cond, x_T: Tensor, cfg: MethodConfig,
                     resume=None) -> MethodResult:
    """The unsteered model: cfg.sampler from x_T (DDIM: the 'Default TTM' row of DITTO's Table 3;
    DDPM from an optimized x_T: App. I's latent reuse)."""
    with torch.no_grad():
        mel = backend.sample(x_T, cond, sampler=cfg.sampler, steps=cfg.steps, guidance=cfg.guidance,
                             generator=noise_generator(cfg))
    return MethodResult(x_T, mel, cfg.steps, info={"sampler": cfg.sampler})


@register_method("freedom", config=FreedomConfig, help="FreeDoM: a loss gradient step at every sampler step")
def freedom(backend: Backend, control: Control, cond, x_T: Tensor, cfg: FreedomConfig, resume=None) -> MethodResult:
    """FreeDoM: a gradient step on x_t at every DDIM (or DDPM) step, through the one-step x0
    estimate (decoded: the loss reads the mel)."""
    mel = guided_sample(backend, cond, x_T, cfg, guide=lambda x0: control.loss(backend.decode(x0)),
                        guide_scale=cfg.freedom_scale)
    return MethodResult(x_T, mel.detach(), cfg.steps, info={"freedom_scale": cfg.freedom_scale, "sampler": cfg.sampler})


GG_OPTIONS = (Option("--gg-scale", "gg_scale", GG_SCALE, "gg: the fixed guidance step, in units of the first "
                     "step's gradient RMS.", "float"),)


@register_method("gg", config=GuidanceGradientsConfig, options=GG_OPTIONS,
                 help="Guidance Gradients: a fixed-size loss gradient step, plus data consistency for painting")
def guidance_gradients(backend: Backend, control: Control, cond, x_T: Tensor, cfg: GuidanceGradientsConfig,
                       resume=None) -> MethodResult:
    """Guidance Gradients (Levy et al. 2023) on DDIM: a gradient step of fixed size on x_t, and
    for painting (f a mask, linear) x0_hat's matched frames set to the reference at every step."""
    if cfg.sampler != "ddim":
        raise DittoError(f"gg runs on DDIM (its data-consistency step is DDIM's), not --sampler {cfg.sampler}")
    fix = consistency_map(control, backend, x_T) if paint_of(control) is not None else None
    mel = guided_sample(backend, cond, x_T, cfg, guide=lambda x0: control.loss(backend.decode(x0)),
                        guide_scale=cfg.gg_scale, fixed_step=True, consistency=fix)
    return MethodResult(x_T, mel.detach(), cfg.steps, info={"gg_scale": cfg.gg_scale,
                                                            "data_consistency": fix is not None})


def consistency_map(control: Control, backend: Backend, x_T: Tensor) -> Callable[[Tensor], Tensor]:
    """x0 -> x0 with its matched frames replaced by the reference's (a self-loop: by its own
    other region), the projection onto a painting constraint. On a latent backend, on the
    latent frames whose mel frames are all matched, against the encoded reference."""
    if isinstance(control, BatchedControl):
        maps = [consistency_map(c, backend, x_T[b:b + 1]) for b, c in enumerate(control.controls)]
        return lambda x0: torch.cat([f(x0[b:b + 1]) for b, f in enumerate(maps)])
    gen_idx, ref_idx, ref = matched_latent(control, backend, x_T)

    def fix(x0: Tensor) -> Tensor:
        x0 = x0.clone()
        xt = along_time(backend, x0)  # a view: writes land in x0
        xt[..., gen_idx] = xt[..., ref_idx] if ref is None else ref.expand_as(xt[..., gen_idx])
        return x0

    return fix


def matched_latent(control: Control, backend: Backend, like: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """A painting control's matched latent frames: (gen_idx, ref_idx, None) for a self-loop, whose
    two regions pair up frame for frame, else (gen_idx, None, the encoded reference there)."""
    m = require_paint(control).masks
    gen_idx = backend.frames_to_latent(m.gen_idx)
    if m.ref_mel is None:
        ref_idx = backend.frames_to_latent(m.ref_idx)
        k = min(len(gen_idx), len(ref_idx))
        return gen_idx[:k].to(like.device), ref_idx[:k].to(like.device), None
    return gen_idx.to(like.device), None, reference_latent(backend, m).to(like)


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
    ac = backend.schedule.alphas_cumprod.float()
    gen_idx, ref_idx, ref = matched_latent(control, backend, x_T)
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
