"""DITTO (Novack et al., ICML 2024, Alg. 1): optimize x_T through the whole checkpointed sampler,
and ditto_draft, the same started from the inverted naive-masking draft (painting tasks)."""

from __future__ import annotations

import torch
from torch import Tensor

from dittomusic.backends.base import Backend, along_time
from dittomusic.errors import DittoError
from dittomusic.sampling.samplers import invert_ddim, model_calls

from ..base import BatchedControl, Control
from ..optimize import optimize_latent
from .base import DittoConfig, MethodResult, register_method
from .baselines import naive_masking, require_paint


@register_method("ditto", config=DittoConfig, resumable=True,
                 help="DITTO: x_T optimized through the whole sampler")
def ditto(backend: Backend, control: Control, cond, x_T: Tensor, cfg: DittoConfig,
          resume: dict | None = None) -> MethodResult:
    """Optimize x_T through the whole checkpointed sampler (Alg. 1; DDIM, or another deterministic
    one: App. G); the loss reads the decoded mel, so with a latent model the gradient also flows
    back through the decoder."""
    from dittomusic.sampling.names import SAMPLER_NAMES

    if cfg.sampler not in SAMPLER_NAMES or cfg.sampler == "ddpm":
        raise DittoError(f"{control.name}: DITTO optimizes through a deterministic sampler (App. I), one of "
                         f"{', '.join(n for n in SAMPLER_NAMES if n != 'ddpm')}; got --sampler {cfg.sampler}. "
                         "Sample an optimized latent stochastically with --init-latent L --method default")

    def render(x):
        return backend.sample(x, cond, sampler=cfg.sampler, steps=cfg.steps, guidance=cfg.guidance,
                              checkpoint=cfg.checkpoint)

    r = optimize_latent(render, control.loss, x_T, cfg.optim, resume=resume, progress=cfg.progress,
                        callback=cfg.callback, desc=f"ditto {control.name}")
    # backprop through a checkpointed step reruns its forward: 2 calls per step per gradient
    n = model_calls(cfg.sampler, cfg.steps)
    calls = r.grad_evaluations * n * (2 if cfg.checkpoint else 1) + (r.evaluations - r.grad_evaluations) * n
    return MethodResult(r.x_T, r.x0, calls, optim=r, info={"sampler": cfg.sampler})


# DDIM inversion steps for ditto_draft. On the bundled model 20-step inversion is far off
# (round trip x_T -> x0 -> x_T: MSE 0.34, std 0.51); 100 steps: 0.025, std 0.87
# (python scripts/inversion_check.py --data data/full).
DRAFT_INVERT_STEPS = 100


def _matched_frames(control: Control, item: int) -> Tensor:
    c = control.controls[item] if isinstance(control, BatchedControl) else control
    return require_paint(c).masks.gen_idx


def draft_start(backend: Backend, control: Control, cond, x_T: Tensor, cfg: DittoConfig) -> tuple[Tensor, Tensor]:
    """ditto_draft's starting noise, and the whole inverted draft it borrows from (the draft's
    mel encoded, then DDIM-inverted; a latent frame takes the draft only where all its mel
    frames are matched)."""
    with torch.no_grad():
        draft = naive_masking(backend, control, cond, x_T, cfg).mel
        inv = invert_ddim(backend.model_fn(cond, cfg.guidance), backend.encode(draft), backend.schedule,
                          DRAFT_INVERT_STEPS, prediction=backend.prediction)
    x_T = x_T.clone()
    for b in range(x_T.shape[0]):
        idx = backend.frames_to_latent(_matched_frames(control, b)).to(x_T.device)
        v = along_time(backend, inv[b])[..., idx]
        # inverted noise is narrower than N(0, I) (std 0.6-0.75 here); put back at unit std it
        # kept the match and the seams and brought inpainting's FAD from 685 back to 470
        along_time(backend, x_T[b])[..., idx] = v / v.std()
    return x_T, inv


@register_method("ditto_draft", config=DittoConfig, resumable=True,
                 help="DITTO with the matched frames' noise from the DDIM-inverted naive-masking draft (painting)")
def ditto_draft(backend: Backend, control: Control, cond, x_T: Tensor, cfg: DittoConfig,
                resume: dict | None = None) -> MethodResult:
    """DITTO started closer to the answer: the noise of the matched frames (the overlap or the
    context around a gap) is replaced by the DDIM inversion of the naive-masking draft, which
    holds the reference there, rescaled to unit std; the new material keeps x_T's own noise. DITTO's App. D uses DDIM
    inversion as the initial guess for inversion. Painting tasks only; the optimization is
    DITTO's, unchanged. Inverting the whole draft instead (x_T of std 0.70-0.76) gave duller,
    drone-like continuations."""
    calls = 0
    if resume is None:  # a resumed run carries its own x_T
        x_T = draft_start(backend, control, cond, x_T, cfg)[0]
        calls = cfg.steps + DRAFT_INVERT_STEPS
    res = ditto(backend, control, cond, x_T, cfg, resume=resume)
    res.model_calls += calls
    res.info["draft_invert_steps"] = DRAFT_INVERT_STEPS
    return res
