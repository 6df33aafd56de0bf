"""DITTO-2 (Novack et al., ISMIR 2024): optimize x_T through a distilled student's one-step map
x_T -> x0 as a cheap surrogate for the full sampler, then decode the optimized x_T with
multi-step sampling: the student's own multistep sampler, or the teacher's DDIM / DPM-Solver++.

The student bakes classifier-free guidance in (one pass per step instead of a CFG pair), so a
surrogate iteration costs one network forward + backward against DITTO's 2 x steps.

Corrected surrogate. A one-step consistency sample is a blurred version of the decode: on our
model ~11 dB quieter, so optimizing it alone overshoots (a tanh-rise target met to 0.1 dB^2 on
the surrogate decoded at 100+ dB^2). Every `refresh` iterations the current x_T is decoded
for real (no gradient) and the surrogate becomes one_step(x) + (decode(x_k) - one_step(x_k)):
the residual is frozen between refreshes, so gradients still come from the one-step map only
(defect correction / space mapping). Each refresh also scores the real decode, and the result
is the best decode seen, not the best surrogate value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dittomusic.errors import DittoError

from .base import BatchedControl, Control, MultiControl
from .methods import MethodResult, Settings, register_method
from .optimize import optimize_latent
from .spec import all_tasks

DECODERS = ("student", "teacher")
TEACHER_SAMPLERS = ("ddim", "dpmpp_2m")  # one (CFG-batched) model call per step each
REFRESH = {"student": 10, "teacher": 20}  # a student decode is 4 passes, a teacher's 20 CFG pairs (benchmarked)
# Per task (TaskSpec.method_defaults["ditto2"]): "decode", the default decoder (the student's 4-step
# decode unless a task says "teacher"), and "teacher_decode", the teacher decode's (sampler, steps,
# refresh) (else DDIM with Settings.steps); benchmarks/ditto2_speed.py measured both per task.
TEACHER_DECODED = frozenset(t.name for t in all_tasks() if t.method_defaults.get("ditto2", {}).get("decode") == "teacher")
TEACHER_DECODE = {t.name: t.method_defaults["ditto2"]["teacher_decode"] for t in all_tasks()
                  if "teacher_decode" in t.method_defaults.get("ditto2", {})}
_CACHE: dict = {}


def get_student(path, device) -> tuple[torch.nn.Module, dict]:
    """Load (once per path and device) a student: a release file, a run folder or None = bundled."""
    from dittomusic.distill import load_student

    key = (str(path), str(device))
    if key not in _CACHE:
        model, meta = load_student(path, device)
        _CACHE[key] = (model.requires_grad_(False), meta)
    return _CACHE[key]


def check_teacher(meta: dict, pipe) -> None:
    """A student is a surrogate of one teacher only: refuse any other --model. pipe: a
    DenoiserBackend or a generate.Pipeline (anything with model_file and model_digest)."""
    if not hasattr(type(pipe), "model_digest"):
        raise DittoError("ditto2 needs a dittomusic model with a student distilled from it; this backend has none: "
                         "use --method ditto")
    want = meta.get("distill", {}).get("teacher_sha1")
    if want and want != pipe.model_digest:
        raise DittoError(f"this student was distilled from the teacher file with sha1 {want[:12]}, but --model "
                         f"({pipe.model_file.name}) has sha1 {pipe.model_digest[:12]}: DITTO-2 needs the student's own "
                         f"teacher. Pass that teacher with --model, or distill a student from this model "
                         f"(dittomusic distill --teacher {pipe.model_file.name} ...)")


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


def leaf_names(control: Control) -> list[str]:
    """Task names inside a control, through weighted sums and batches."""
    if isinstance(control, MultiControl):
        return [n for c, _ in control.items for n in leaf_names(c)]
    if isinstance(control, BatchedControl):
        return [n for c in control.controls for n in leaf_names(c)]
    return [control.task]


def default_decoder(control: Control) -> str:
    return "teacher" if TEACHER_DECODED & set(leaf_names(control)) else "student"


def teacher_decode(control: Control, s: Settings) -> tuple[str, int, int]:
    """(sampler, steps, refresh) of the teacher decode: the task's default (TEACHER_DECODE),
    else DDIM with s.steps; s.decode_sampler, s.teacher_steps and s.refresh override each."""
    names = set(leaf_names(control))
    default = next((v for k, v in TEACHER_DECODE.items() if k in names), ("ddim", s.steps, REFRESH["teacher"]))
    sampler = s.decode_sampler or default[0]
    if sampler not in TEACHER_SAMPLERS:
        raise DittoError(f"--decode-sampler must be one of {', '.join(TEACHER_SAMPLERS)}, got {sampler!r}")
    steps = default[1] if s.teacher_steps is None else s.teacher_steps
    if steps < 1:
        raise DittoError(f"--teacher-steps must be >= 1, got {steps}")
    return sampler, steps, default[2] if s.refresh is None else s.refresh


@register_method("ditto2")
def ditto2(backend, control: Control, cond, x_T: Tensor, s: Settings, resume: dict | None = None) -> MethodResult:
    decoder = default_decoder(control) if s.decode is None else s.decode
    if decoder not in DECODERS:
        raise DittoError(f"--decode must be one of {', '.join(DECODERS)}, got {s.decode!r}")
    student, meta = get_student(s.student, backend.device)
    check_teacher(meta, backend)
    if student.cfg.vocab != backend.vocab:
        raise DittoError("the student was distilled from a model with a different tag vocabulary than --model")
    sample = student_sampler(student, meta)
    if decoder == "student":
        t_sampler, every = None, REFRESH["student"] if s.refresh is None else s.refresh
        decode_calls = s.decode_steps
    else:
        t_sampler, decode_calls, every = teacher_decode(control, s)
    if every < 0:
        raise DittoError(f"--refresh must be >= 0 (0: never re-decode), got {every}")

    # the student works in the teacher's space: its samples are decoded (clamped) like the teacher's
    def one_step(x):
        return backend.decode(sample(x, cond, 1))

    def decode(x):
        if decoder == "student":
            return backend.decode(sample(x, cond, s.decode_steps))
        return backend.sample(x, cond, sampler=t_sampler, steps=decode_calls, guidance=s.guidance)

    B = x_T.shape[0]
    best = {"loss": torch.full((B,), math.inf), "x": x_T.detach().clone(), "mel": None, "iter": [-1] * B}
    state = {"residual": 0.0, "decodes": 0, "corrections": 0}

    def score(x, k: int, correct: bool) -> None:
        with torch.no_grad():
            mel = decode(x)
            state["decodes"] += 1
            lv = control.loss(mel).detach().float().cpu()
            if k == 0 and correct:
                state["initial"] = lv.tolist()
            better = torch.isfinite(lv) & (lv < best["loss"])
            best["loss"] = torch.where(better, lv, best["loss"])
            if best["mel"] is None:
                best["mel"] = mel.clone()
            m = better.to(mel.device)
            best["mel"][m], best["x"][m] = mel[m], x.detach()[m]
            for b in torch.nonzero(better).flatten().tolist():
                best["iter"][b] = k
            if correct:
                state["residual"] = mel - one_step(x)
                state["corrections"] += 1

    if every:
        score(x_T, 0, True)

    def on_iter(info):
        k = info["iter"]
        if every and k > 0 and k % every == 0:
            score(info["x_T"], k, True)
        return s.callback(info) if s.callback is not None else None

    def surrogate(x):
        return one_step(x) + state["residual"]

    r = optimize_latent(surrogate, control.loss, x_T, s.optim, resume=resume, progress=s.progress,
                        callback=on_iter, desc=f"ditto2 {control.name}")
    score(r.x_T, r.iters, False)  # the surrogate's own best iterate competes too
    calls = r.evaluations + state["decodes"] * decode_calls + state["corrections"]
    info = {"student_kind": meta["kind"], "student_guidance": meta["guidance"], "decode": decoder,
            "decode_sampler": t_sampler or f"{meta['kind']} student", "decode_steps": decode_calls, "refresh": every, "decodes": state["decodes"],
            "surrogate_loss": r.best_loss, "decoded_initial_loss": state.get("initial"),
            "decoded_best_iter": best["iter"]}
    return MethodResult(best["x"], best["mel"], calls, optim=r, info=info)
