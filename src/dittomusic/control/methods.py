"""Control methods behind one interface, and the end-to-end run (x_T -> mel -> audio -> metrics).

    out = run_control(pipe, "ditto", control, tags, seed=0, batch=1)
    out.audio, out.report        # report: task, method, wall time, model calls, losses, metrics

A method is method(backend, control, cond, x_T, settings) -> MethodResult, registered by name:
backend is a `dittomusic.backends.Backend` (methods see nothing else of the model), cond its
conditioning (backend.make_cond). DITTO-2 registers itself from dittomusic.control.ditto2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from dittomusic.backends.base import Backend, along_time
from dittomusic.errors import DittoError
from dittomusic.sampling.samplers import invert_ddim

from .baselines import FREEDOM_SCALE, guided_ddim, mask_hook, require_paint
from .features import spectral_flux_seam_ratio
from .base import BatchedControl, Control
from .optimize import OptimConfig, OptimResult, optimize_latent
from .stitching import stitch
from .tasks.painting import paint_of


@dataclass
class Settings:
    """Sampling and optimization settings shared by every method (DITTO sec. 5.1 defaults)."""

    steps: int = 20
    guidance: float = 3.0
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: bool = True  # per-step gradient checkpointing for DITTO
    freedom_scale: float = FREEDOM_SCALE
    # DITTO-2: the distilled student (None = bundled) and how the optimized x_T is decoded
    student: str | None = None
    decode: str | None = None  # "student" or "teacher"; None: by task (control.ditto2.default_decoder)
    decode_steps: int = 4  # student decode steps
    decode_sampler: str | None = None  # teacher decode: "ddim" or "dpmpp_2m"; None: by task (control.ditto2.TEACHER_DECODE)
    teacher_steps: int | None = None  # teacher decode steps; None: by task, else `steps`
    refresh: int | None = None  # re-decode (and re-correct the surrogate) every N iterations; None: by decoder; 0: never
    progress: bool = False
    callback: Callable | None = None


@dataclass
class MethodResult:
    x_T: Tensor
    mel: Tensor  # [B, n_mels, F], detached
    model_calls: int  # network evaluations (a CFG pair, run as one batched pass, counts once)
    optim: OptimResult | None = None
    info: dict = field(default_factory=dict)


_METHODS: dict[str, Callable[..., MethodResult]] = {}


def register_method(name: str):
    def deco(fn):
        _METHODS[name] = fn
        return fn

    return deco


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Callable[..., MethodResult]:
    if name not in _METHODS:
        raise DittoError(f"unknown method {name!r}; choose from: {', '.join(available_methods())}")
    return _METHODS[name]


def _ddim(backend: Backend, cond, x_T: Tensor, s: Settings, **hooks) -> Tensor:
    """guided_ddim on the backend, decoded to the mel (clamped to [-1, 1])."""
    x0 = guided_ddim(backend.model_fn(cond, s.guidance), x_T, backend.schedule, s.steps,
                     prediction=backend.prediction, thresholding=backend.thresholding, **hooks)
    return backend.decode(x0)


@register_method("default")
def default_sampling(backend: Backend, control: Control, cond, x_T: Tensor, s: Settings) -> MethodResult:
    """The unsteered model: DDIM from x_T (the 'Default TTM' row of DITTO's Table 3)."""
    with torch.no_grad():
        mel = backend.sample(x_T, cond, steps=s.steps, guidance=s.guidance)
    return MethodResult(x_T, mel, s.steps)


@register_method("ditto")
def ditto(backend: Backend, control: Control, cond, x_T: Tensor, s: Settings,
          resume: dict | None = None) -> MethodResult:
    """Optimize x_T through the whole checkpointed DDIM sampler (Alg. 1); the loss reads the
    decoded mel, so with a latent model the gradient also flows back through the decoder."""

    def render(x):
        return backend.sample(x, cond, steps=s.steps, guidance=s.guidance, checkpoint=s.checkpoint)

    r = optimize_latent(render, control.loss, x_T, s.optim, resume=resume, progress=s.progress,
                        callback=s.callback, desc=f"ditto {control.name}")
    # backprop through a checkpointed step reruns its forward: 2 calls per step per gradient
    per_grad = s.steps * (2 if s.checkpoint else 1)
    calls = r.grad_evaluations * per_grad + (r.evaluations - r.grad_evaluations) * s.steps
    return MethodResult(r.x_T, r.x0, calls, optim=r)


# DDIM inversion steps for ditto_draft. On the bundled model 20-step inversion is far off
# (round trip x_T -> x0 -> x_T: MSE 0.34, std 0.51); 100 steps: 0.025, std 0.87
# (python scripts/inversion_check.py --data data/full).
DRAFT_INVERT_STEPS = 100


def _matched_frames(control: Control, item: int) -> Tensor:
    c = control.controls[item] if isinstance(control, BatchedControl) else control
    return require_paint(c).masks.gen_idx


def draft_start(backend: Backend, control: Control, cond, x_T: Tensor, s: Settings) -> tuple[Tensor, Tensor]:
    """ditto_draft's starting noise, and the whole inverted draft it borrows from (the draft's
    mel encoded, then DDIM-inverted; a latent frame takes the draft only where all its mel
    frames are matched)."""
    with torch.no_grad():
        draft = naive_masking(backend, control, cond, x_T, s).mel
        inv = invert_ddim(backend.model_fn(cond, s.guidance), backend.encode(draft), backend.schedule,
                          DRAFT_INVERT_STEPS, prediction=backend.prediction)
    x_T = x_T.clone()
    for b in range(x_T.shape[0]):
        idx = backend.frames_to_latent(_matched_frames(control, b)).to(x_T.device)
        v = along_time(backend, inv[b])[..., idx]
        # inverted noise is narrower than N(0, I) (std 0.6-0.75 here); put back at unit std it
        # kept the match and the seams and brought inpainting's FAD from 685 back to 470
        along_time(backend, x_T[b])[..., idx] = v / v.std()
    return x_T, inv


@register_method("ditto_draft")
def ditto_draft(backend: Backend, control: Control, cond, x_T: Tensor, s: Settings,
                resume: dict | None = None) -> MethodResult:
    """DITTO started closer to the answer: the noise of the matched frames (the overlap or the
    context around a gap) is replaced by the DDIM inversion of the naive-masking draft, which
    holds the reference there, rescaled to unit std; the new material keeps x_T's own noise. DITTO's App. D uses DDIM
    inversion as the initial guess for inversion. Painting tasks only; the optimization is
    DITTO's, unchanged. Inverting the whole draft instead (x_T of std 0.70-0.76) gave duller,
    drone-like continuations."""
    calls = 0
    if resume is None:  # a resumed run carries its own x_T
        x_T = draft_start(backend, control, cond, x_T, s)[0]
        calls = s.steps + DRAFT_INVERT_STEPS
    res = ditto(backend, control, cond, x_T, s, resume=resume)
    res.model_calls += calls
    res.info["draft_invert_steps"] = DRAFT_INVERT_STEPS
    return res


@register_method("freedom")
def freedom(backend: Backend, control: Control, cond, x_T: Tensor, s: Settings) -> MethodResult:
    """FreeDoM: a gradient step on x_t at every DDIM step, through the one-step x0 estimate
    (decoded: the loss reads the mel)."""
    mel = _ddim(backend, cond, x_T, s, guide=lambda x0: control.loss(backend.decode(x0)),
                guide_scale=s.freedom_scale)
    return MethodResult(x_T, mel.detach(), s.steps, info={"freedom_scale": s.freedom_scale})


def _masking(backend: Backend, control, cond, x_T, s: Settings, mix: float, until: float) -> MethodResult:
    hook = mask_hook(control, backend, x_T, s.steps, mix=mix, until=until)
    with torch.no_grad():
        mel = _ddim(backend, cond, x_T, s, post=hook)
    return MethodResult(x_T, mel, s.steps)


@register_method("naive")
def naive_masking(backend: Backend, control, cond, x_T, s: Settings) -> MethodResult:
    return _masking(backend, control, cond, x_T, s, mix=1.0, until=1.0)


@register_method("multidiffusion")
def multidiffusion(backend: Backend, control, cond, x_T, s: Settings) -> MethodResult:
    return _masking(backend, control, cond, x_T, s, mix=0.5, until=1.0)


@register_method("multidiffusion50")
def multidiffusion50(backend: Backend, control, cond, x_T, s: Settings) -> MethodResult:
    return _masking(backend, control, cond, x_T, s, mix=0.5, until=0.5)


# ------------------------------------------------------------------ end-to-end run

@dataclass
class ControlOutput:
    method: str
    x_T: Tensor
    mel: Tensor  # the generated clips [B, n_mels, F]
    clip_audio: np.ndarray  # [B, samples]: each generated clip, vocoded
    audio: list[np.ndarray]  # per item: the clip, or for painting tasks the stitched result
    sr: int
    report: dict
    result: MethodResult


def run_control(pipe, method: str, control: Control, tags, *, seed: int = 0, batch: int = 1,
                x_T: Tensor | None = None, settings: Settings | None = None, task: str | None = None,
                resume: dict | None = None) -> ControlOutput:
    """Run one method end to end. pipe: a Backend, or anything with one as .backend (a
    generate.Pipeline); tags: what its make_cond takes. Metrics are measured on the vocoded
    waveform of each clip; painting tasks are also stitched with their reference and scored for
    seams."""
    backend = as_backend(pipe)
    s = settings or Settings()
    fn = get_method(method)
    if isinstance(control, BatchedControl):
        batch = len(control)
    frames = _frames_of(control, backend)
    need = backend.latent_shape(frames)
    if x_T is None:
        x_T = backend.noise(batch, frames, seed)
    if (x_T.dim() != 1 + len(need) or tuple(x_T.shape[1:]) != tuple(need) or not x_T.is_floating_point()
            or x_T.shape[0] < 1):
        raise DittoError(f"a starting latent of shape {tuple(x_T.shape)} ({x_T.dtype}) does not fit this run, which "
                         f"needs float [batch, {', '.join(map(str, need))}]: continue a saved latent with the task, "
                         "--seconds and model it was saved with")
    if isinstance(control, BatchedControl) and x_T.shape[0] != len(control):
        raise DittoError(f"{len(control)} controls for a batch of {x_T.shape[0]} latents")
    cond = backend.make_cond(tags, x_T.shape[0])
    t0 = time.perf_counter()
    res = (fn(backend, control, cond, x_T, s, resume=resume) if resume is not None
           else fn(backend, control, cond, x_T, s))
    t_method = time.perf_counter() - t0
    with torch.no_grad():
        final_loss = control.loss(res.mel).float().cpu().tolist()
        clip_audio = backend.vocoder(res.mel).cpu().numpy()
    wall = time.perf_counter() - t0
    sr = backend.mel_cfg.sample_rate
    items, audio, boundaries = [], [], []
    for b in range(res.mel.shape[0]):
        c = control.for_item(b)
        idx = b if c is control else 0
        it = {"seed": seed, "item": b, "final_loss": final_loss[b], **c.metrics(clip_audio[b], sr, item=idx)}
        paint = paint_of(c)
        if paint is None:
            audio.append(clip_audio[b])
        else:
            a, it["seam_ratio"], bounds = stitch_and_score(backend, paint.masks, res.mel[b:b + 1])
            audio.append(a)
            boundaries.append(bounds)
        items.append(it)
    report = {
        "task": task or control.name,
        "method": method,
        "seed": seed,
        "batch": int(res.mel.shape[0]),
        "steps": s.steps,
        "guidance": s.guidance,
        "wall_s": wall,
        "method_wall_s": t_method,
        "model_calls": res.model_calls,
        "final_loss": final_loss,
        "items": items,
        "metrics": _mean_metrics(items),
        **res.info,
    }
    if res.optim is not None:
        o = res.optim
        report.update(iterations=o.iters, lr=s.optim.lr, max_iters=s.optim.iters, initial_loss=o.initial_loss,
                      best_loss=o.best_loss, best_iter=o.best_iter, stopped=o.stopped, warnings=o.warnings,
                      loss_history=o.history)
    else:
        report.update(iterations=0, initial_loss=final_loss)
    if boundaries:
        report["stitch_boundaries_s"] = boundaries[0] if len(boundaries) == 1 else boundaries
    return ControlOutput(method, res.x_T, res.mel, clip_audio, audio, sr, report, res)


def stitch_and_score(pipe, masks, mel: Tensor) -> tuple[np.ndarray, float, list[float]]:
    """One painted clip [1, n_mels, F] stitched with its reference and vocoded as a whole:
    (mono audio, seam ratio, stitch boundaries in seconds)."""
    st = stitch(masks, mel, vocoder=pipe.vocoder)
    a = st.audio.reshape(-1)
    return a, spectral_flux_seam_ratio(a, pipe.mel_cfg.sample_rate, st.boundaries_s), st.boundaries_s


def as_backend(pipe) -> Backend:
    """A Backend, or the one a generate.Pipeline holds."""
    return getattr(pipe, "backend", pipe)


def _frames_of(control: Control, backend: Backend) -> int:
    """Mel frames of the clip a control is built for (the backend's clip for a free one)."""
    return control.frames or backend.clip_frames


def _mean_metrics(items: list[dict]) -> dict:
    keys = [k for k in items[0] if k not in ("seed", "item")]
    return {k: float(np.mean([it[k] for it in items])) for k in keys}


from . import ditto2 as _ditto2  # noqa: E402,F401  (registers "ditto2")
