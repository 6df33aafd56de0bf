"""The end-to-end run: x_T -> method -> mel -> audio -> metrics (and stitching for painting).

    out = run_control(pipe, "ditto", control, tags, seed=0, batch=1)
    out.audio, out.report        # report: task, method, wall time, model calls, losses, metrics
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dittomusic.backends.base import Backend
from dittomusic.errors import DittoError

from ..base import BatchedControl, Control
from ..features import spectral_flux_seam_ratio
from ..stitching import stitch
from ..tasks.painting import paint_of
from .base import MethodResult, Settings, config_for, get_method


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
    fn = get_method(method)  # checks resume too: only the optimizing methods continue a saved run
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
    res = fn(backend, control, cond, x_T, s, resume=resume)
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
        o, oc = res.optim, config_for(fn, s).optim
        report.update(iterations=o.iters, lr=oc.lr, max_iters=oc.iters, initial_loss=o.initial_loss,
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
