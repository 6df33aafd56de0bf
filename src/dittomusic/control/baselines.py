"""Training-free baselines DITTO is compared with (DITTO sec. 5.4), on the same DDIM sampler.

  freedom         x_{t-1} <- x_{t-1} - eta_t grad_{x_t} L(f(x0_hat(x_t)), y)   (Yu et al. 2023)
  naive           after each step, reference frames := the reference noised to t-1
  multidiffusion  after each step, reference frames := mean(generated, noised reference)
  multidiffusion50  the same, for the first half of the steps only ("MD-50")

`guided_ddim` is sample_ddim (trailing spacing, eta 0, thresholding) with two hooks; with no
hooks it returns sample_ddim's output bit for bit (tested). Unlike the samplers it may enable
gradients internally (FreeDoM needs grad_{x_t}); it never backpropagates into its caller.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dittomusic.backends.base import Backend, along_time
from dittomusic.errors import DittoError
from dittomusic.sampling.samplers import ModelFn, _postprocess_x0, _timesteps
from dittomusic.sampling.schedule import NoiseSchedule, model_output_to_x0_eps

from .base import BatchedControl, Control
from .masks import PaintMasks
from .tasks.painting import PaintControl, paint_of

FREEDOM_SCALE = 0.3  # guidance step as a fraction of the DDIM update size (see guided_ddim)


def guided_ddim(model_fn: ModelFn, x_T: Tensor, schedule: NoiseSchedule, steps: int, *,
                prediction: str = "v_prediction", thresholding: bool = True,
                guide: Callable[[Tensor], Tensor] | None = None, guide_scale: float = FREEDOM_SCALE,
                post: Callable[[int, int, Tensor], Tensor] | None = None, callback=None) -> Tensor:
    """DDIM with an optional FreeDoM gradient step (guide: x0 -> per-item loss [B]) and a
    post-step hook post(i, prev_t, x_prev) -> x_prev (prev_t = -1 after the last step)."""
    ac = schedule.alphas_cumprod.float()
    T = len(ac)
    ts = _timesteps("discrete", "trailing", steps, T).tolist()
    stride = T // steps
    x = x_T.detach()
    for i, t in enumerate(ts):
        prev = t - stride
        a_t = ac[t]
        a_prev = ac[prev] if prev >= 0 else torch.tensor(1.0)
        with torch.set_grad_enabled(guide is not None):
            if guide is not None:
                x = x.detach().requires_grad_(True)
            tt = torch.full((x.shape[0],), float(t), dtype=torch.float32, device=x.device)
            out = model_fn(x, tt)
            x0, eps = model_output_to_x0_eps(out, x, a_t ** 0.5, (1 - a_t) ** 0.5, prediction)
            x0 = _postprocess_x0(x0, thresholding, 0.995, 1.0, False, 1.0)
            x_prev = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
            if guide is not None:
                loss = guide(x0)
                (grad,) = torch.autograd.grad(loss.sum(), x)
                x_prev = x_prev.detach()
                # FreeDoM's eta_t: a fixed fraction of this step's own update size, per item, so the
                # guidance neither vanishes early nor swamps the sampler late in the chain
                dims = tuple(range(1, x.dim()))
                step_norm = (x_prev - x.detach()).square().mean(dim=dims, keepdim=True).sqrt()
                g_norm = grad.square().mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)
                x_prev = x_prev - guide_scale * step_norm / g_norm * grad
        x = x_prev.detach()
        if post is not None:
            x = post(i, prev, x)
        if callback is not None:
            callback(dict(i=i, t=float(t), x=x, x0=x0.detach()))
    return x


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
