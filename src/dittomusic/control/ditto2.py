"""DITTO-2 (Novack et al., ISMIR 2024): optimize x_T through a distilled student's one-step map
x_T -> x0 as a cheap surrogate for the full sampler, then decode the optimized x_T with
multi-step sampling: the student's own multistep sampler, or the teacher's DDIM.

The student bakes classifier-free guidance in (one pass per step instead of a CFG pair), so a
surrogate iteration costs one network forward + backward against DITTO's 2 x steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dittomusic.errors import DittoError

from .losses import Control
from .methods import MethodResult, Settings, register_method
from .optimize import optimize_latent

DECODERS = ("student", "teacher")
_CACHE: dict = {}


def get_student(path, device) -> tuple[torch.nn.Module, dict]:
    """Load (once per path and device) a student: a release file, a run folder or None = bundled."""
    from dittomusic.distill import load_student

    key = (str(path), str(device))
    if key not in _CACHE:
        model, meta = load_student(path, device)
        _CACHE[key] = (model.requires_grad_(False), meta)
    return _CACHE[key]


def student_sampler(student, meta: dict):
    """(x_T, cond, steps, checkpoint) -> x0 for the student's kind."""
    from dittomusic.distill import consistency_sample, ctd_sample

    if meta["kind"] == "ctd":
        return lambda x, cond, steps, checkpoint=False: ctd_sample(student, x, cond, steps, checkpoint=checkpoint)

    def cd(x, cond, steps, checkpoint=False):
        # fixed re-noising draws: the decode must be a deterministic function of x_T
        g = torch.Generator().manual_seed(0)
        noise = [torch.randn(x.shape, generator=g).to(x) for _ in range(steps - 1)]
        return consistency_sample(student, x, cond, steps, noise=noise, checkpoint=checkpoint)

    return cd


@register_method("ditto2")
def ditto2(pipe, control: Control, tags, x_T: Tensor, s: Settings, resume: dict | None = None) -> MethodResult:
    if s.decode not in DECODERS:
        raise DittoError(f"--decode must be one of {', '.join(DECODERS)}, got {s.decode!r}")
    student, meta = get_student(s.student, pipe.device)
    if student.cfg.vocab != pipe.model.cfg.vocab:
        raise DittoError("the student was distilled from a model with a different tag vocabulary than --model")
    cond = pipe.cond(tags, x_T.shape[0])
    sample = student_sampler(student, meta)

    def surrogate(x):
        return sample(x, cond, 1).clamp(-1, 1)

    r = optimize_latent(surrogate, control.loss, x_T, s.optim, resume=resume, progress=s.progress,
                        callback=s.callback, desc=f"ditto2 {control.name}")
    with torch.no_grad():
        if s.decode == "student":
            mel = sample(r.x_T, cond, s.decode_steps).clamp(-1, 1)
            decode_calls = s.decode_steps
        else:
            mel = pipe.sample(r.x_T, tags, steps=s.steps, guidance=s.guidance)
            decode_calls = s.steps
    calls = r.evaluations + decode_calls
    info = {"student_kind": meta["kind"], "student_guidance": meta["guidance"], "decode": s.decode,
            "decode_steps": s.decode_steps if s.decode == "student" else s.steps,
            "surrogate_loss": r.best_loss}
    return MethodResult(r.x_T, mel, calls, optim=r, info=info)
