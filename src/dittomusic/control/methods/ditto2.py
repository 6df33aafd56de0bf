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
(defect correction / space mapping). The refresh runs as optimize_latent's pre_step, before
that iteration's forward pass, so every iteration's loss and gradient come from one surrogate,
and the optimizer's best iterate is chosen among iterates of the latest one. Each refresh also
scores the real decode, and the result is the best decode seen, not the best surrogate value.

Search (`--search N`). Before optimizing, each item's x_T competes with N - 1 other noise draws
(a generator seeded by a hash of x_T, so a seed gives the same pool): all are decoded for real and
the item starts from the draw whose decode has the least loss. The draws are the model's own
samples, so a scorer cannot be fooled by them the way its gradients can be (text: CLAP steering
alone found CLAP-pleasing textures that the tag classifier did not read as the prompt's collection).

Steer (`--steer mix`). With a search, Adam may move the weights w of a normalized mix of the N
draws, sum_i w_i z_i / |w|, instead of x_T itself: for any fixed unit w that is again an exact draw
from N(0, I), so no iterate leaves the noise distribution. On text it did not keep the steered clips'
texture better than steering x_T (benchmarks/text_loss_variants.py --steer mix), so it is not a default.

Render (`--render teacher`). The student's decode ranks the iterates, then the chosen x_T is
rendered once more by the teacher's sampler (--decode-sampler, --teacher-steps; an unconditional
clip takes UNCONDITIONAL_STEPS by default) and that is the returned clip. Text control uses it: the
CTD student's 4-step decode of an unconditional x_T is cleaner than the teacher's (flatness 0.81x
real, background 3 dB lower), and the unconditional teacher needs ~50 DDIM steps where CFG
sampling needs 20 (benchmarks/uncond_steps.py).

Tolerance. `--tol` (OptimConfig.tol) is read on those real decodes, not on the surrogate. An item
whose decode is within it keeps that iterate (the first one within, not the best one later: no more
steering than the target asks; the report's `within_tol`), and the run stops at the first refresh
where every item is within (report: stopped "tolerance"), so an easy target costs a fraction of K
iterations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import torch
from torch import Tensor

from dittomusic.errors import DittoError
from dittomusic.options import Option

from ..base import BatchedControl, Control, MultiControl
from ..optimize import optimize_latent
from ..spec import all_tasks, method_default
from .base import Ditto2Config, MethodResult, register_method

DECODERS = ("student", "teacher")
TEACHER_SAMPLERS = ("ddim", "dpmpp_2m")  # one (CFG-batched) model call per step each
REFRESH = {"student": 10, "teacher": 20}  # a student decode is 4 passes, a teacher's 20 CFG pairs (benchmarked)
DECODE_STEPS = 4
RENDERS = ("decode", "teacher")
STEERS = ("noise", "mix")
# Unconditional DDIM on the bundled model: texture FAD (120 test clips) 9.1 / 7.9 / 6.8 / 6.9 at 20 / 30 / 50 / 100
# steps, while tagged CFG sampling is no better at 50 than at 20 (0.96x; benchmarks/uncond_steps.py)
UNCONDITIONAL_STEPS = 50
# Per task (TaskSpec.method_defaults["ditto2"]): "decode", the default decoder (the student's
# multistep decode unless a task says "teacher"); with the student decode, "decode_steps" and
# "refresh" (else DECODE_STEPS, REFRESH); "teacher_decode", the teacher decode's (sampler, steps,
# refresh) (else DDIM with Settings.steps). benchmarks/ditto2_speed.py and ditto2_floor.py measured them.
TEACHER_DECODE = {t.name: t.method_defaults["ditto2"]["teacher_decode"] for t in all_tasks()
                  if "teacher_decode" in t.method_defaults.get("ditto2", {})}
# DITTO-2's Adam step size: its one-step surrogate is smoother, and benchmarks/ditto2_speed.py measured
# it better at 1e-2 than DITTO's 5e-3 on melody (99.4 vs 99.0 % accuracy) and structure (MSE 0.0037 vs 0.0046)
DITTO2_LR = 1e-2


def leaf_names(control: Control) -> list[str]:
    """Task names inside a control, through weighted sums and batches."""
    if isinstance(control, MultiControl):
        return [n for c, _ in control.items for n in leaf_names(c)]
    if isinstance(control, BatchedControl):
        return [n for c in control.controls for n in leaf_names(c)]
    return [control.task]


def default_decoder(control: Control) -> str:
    """The teacher where any steered task asks for it (TaskSpec.method_defaults), else the student."""
    return "teacher" if any(method_default([n], "ditto2", "decode") == "teacher" for n in leaf_names(control)) \
        else "student"


def teacher_decode(control: Control, s: Ditto2Config) -> tuple[str, int, int]:
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


OPTIONS = (
    Option("--student", "student", None, "ditto2: distilled student: a release file, a distill run folder, or cd / ctd "
           "for a bundled one [default: the bundled CTD student]."),
    Option("--decode", "decode", None, "ditto2: decode the optimized x_T with the teacher's sampler or the student's "
           "multistep sampler [default: by task, measured; the student for every bundled task].",
           "choice", choices=tuple(reversed(DECODERS))),
    Option("--decode-steps", "decode_steps", None, "ditto2 with --decode student: student sampling steps [default: "
           "by task, 4 unless measured otherwise].", "int", lo=1, hi=20),
    Option("--decode-sampler", "decode_sampler", None, "ditto2 with the teacher decode: its sampler [default: "
           "dpmpp_2m for structure, ddim otherwise].", "choice", choices=TEACHER_SAMPLERS),
    Option("--teacher-steps", "teacher_steps", None, "ditto2 with the teacher decode: its steps [default: 8 for "
           "structure, --steps otherwise].", "int", lo=1, hi=1000),
    Option("--refresh", "refresh", None, "ditto2: decode for real and re-correct the one-step surrogate every N "
           "iterations (0: never) [default: by task; 5 for text, 10 with the student decode or for structure, 20 otherwise].",
           "int", lo=0),
    Option("--render", "render", None, "ditto2: the returned audio: the decode that ranked the optimized x_T, or "
           "one more render of it by the teacher (--decode-sampler, --teacher-steps; by default --steps with "
           f"tags, {UNCONDITIONAL_STEPS} without) [default: by task, teacher for text, else decode].",
           "choice", choices=RENDERS),
    Option("--steer", "steer", None, "ditto2: what the optimizer moves: x_T itself (noise), or the weights of a "
           "normalized mix of the --search draws (mix: every iterate is again a draw from N(0, I)) [default: by task, "
           "noise].", "choice", choices=STEERS),
    Option("--search", "search", None, "ditto2: start each clip from the best of N noise draws, judged on their real "
           "decodes (1: the seed's own x_T) [default: by task, 32 for text, else 1].", "int", lo=1, hi=256),
)


def search_start(x_T: Tensor, n: int, decode, loss) -> tuple[Tensor, list[list[float]], Tensor, Tensor, Tensor]:
    """Per item, the best of x_T and n - 1 draws seeded by a hash of x_T, by loss(decode(draws)).
    Returns the chosen x_T, the losses [B, n], the chosen draws' decodes (the first refresh's),
    the pool [n, B, ...] and each item's pick [B]."""
    g = torch.Generator().manual_seed(int(hashlib.sha1(x_T.detach().float().cpu().numpy().tobytes()).hexdigest()[:15], 16))
    B = x_T.shape[0]
    extra = torch.randn(n - 1, *x_T.shape, generator=g).to(x_T.device, x_T.dtype)
    pool = torch.cat([x_T.detach()[None], extra])  # [n, B, ...]
    losses, best_mel, best_loss = [], None, torch.full((B,), math.inf)
    pick = torch.zeros(B, dtype=torch.long)
    with torch.no_grad():
        for i in range(n):  # one batch of B per draw: the controls are per item
            mel = decode(pool[i])
            lv = loss(mel).detach().float().cpu()
            losses.append(lv)
            better = torch.nan_to_num(lv, nan=math.inf) < best_loss  # strict: ties keep the earlier draw
            if best_mel is None:
                best_mel = mel.clone()
            best_mel[better.to(mel.device)] = mel[better.to(mel.device)]
            best_loss, pick = torch.where(better, lv, best_loss), torch.where(better, i, pick)
    return pool[pick, torch.arange(B)].clone(), torch.stack(losses).T.tolist(), best_mel, pool, pick


def mix(w: Tensor, pool: Tensor) -> Tensor:
    """sum_i w_i z_i / |w| per item: w [B, n], pool [n, B, ...] of iid N(0, I) draws. For any fixed
    unit w this is again exactly N(0, I), so steering w keeps every iterate a plausible x_T."""
    w = w / w.norm(dim=1, keepdim=True)
    return torch.einsum("bn,nb...->b...", w.to(pool.dtype), pool)


@register_method("ditto2", config=Ditto2Config, lr=DITTO2_LR, resumable=True, options=OPTIONS,
                 help="DITTO-2: x_T optimized through a distilled student's one-step map, then decoded")
def ditto2(backend, control: Control, cond, x_T: Tensor, s: Ditto2Config, resume: dict | None = None) -> MethodResult:
    decoder = default_decoder(control) if s.decode is None else s.decode
    if decoder not in DECODERS:
        raise DittoError(f"--decode must be one of {', '.join(DECODERS)}, got {s.decode!r}")
    from dittomusic.distill.student import check_teacher, get_student, student_sampler

    student, meta = get_student(s.student, backend.device)
    check_teacher(meta, backend, student)
    sample = student_sampler(student, meta)
    if decoder == "student":
        names = leaf_names(control)
        every = method_default(names, "ditto2", "refresh", REFRESH["student"]) if s.refresh is None else s.refresh
        steps = method_default(names, "ditto2", "decode_steps", DECODE_STEPS) if s.decode_steps is None else s.decode_steps
        if steps < 1:
            raise DittoError(f"--decode-steps must be >= 1, got {steps}")
        t_sampler, decode_calls = None, steps
    else:
        t_sampler, decode_calls, every = teacher_decode(control, s)
    if every < 0:
        raise DittoError(f"--refresh must be >= 0 (0: never re-decode), got {every}")
    render = method_default(leaf_names(control), "ditto2", "render", "decode") if s.render is None else s.render
    if render not in RENDERS:
        raise DittoError(f"--render must be one of {', '.join(RENDERS)}, got {s.render!r}")
    if render == "teacher" and decoder == "teacher":
        render = "decode"  # the decode is the teacher's already

    # the student works in the teacher's space: its samples are decoded (clamped) like the teacher's
    def one_step(x):
        return backend.decode(sample(x, cond, 1))

    def decode(x):
        if decoder == "student":
            return backend.decode(sample(x, cond, decode_calls))
        return backend.sample(x, cond, sampler=t_sampler, steps=decode_calls, guidance=s.guidance)

    n_search = method_default(leaf_names(control), "ditto2", "search", 1) if s.search is None else s.search
    if n_search < 1:
        raise DittoError(f"--search must be >= 1 (1: no search), got {n_search}")
    steer = method_default(leaf_names(control), "ditto2", "steer", "noise") if s.steer is None else s.steer
    if steer not in STEERS:
        raise DittoError(f"--steer must be one of {', '.join(STEERS)}, got {s.steer!r}")
    search_losses, searched, pool = None, None, None
    if n_search > 1 and resume is None:
        x_T, search_losses, searched, pool, pick = search_start(x_T, n_search, decode, control.loss)
    if steer == "mix" and pool is None:  # nothing to mix: a run resumed in noise space, or --search 1
        steer = "noise"
    B, start = x_T.shape[0], x_T.detach().clone()
    best = {"loss": torch.full((B,), math.inf), "x": x_T.detach().clone(), "mel": None, "iter": [-1] * B,
            "leaf": None}
    state = {"residual": 0.0, "decodes": 0, "corrections": 0, "met": False, "history": [],
             "done": torch.zeros(B, dtype=torch.bool)}
    tol = s.optim.tol

    def score(x, k: int, correct: bool, leaf: Tensor | None = None) -> None:
        with torch.no_grad():
            if searched is not None and torch.equal(x.detach(), start):  # the search decoded it already
                mel = searched
            else:
                mel = decode(x)
                state["decodes"] += 1
            lv = control.loss(mel).detach().float().cpu()
            state["history"].append([k, lv.tolist()])
            if k == 0 and correct:
                state["initial"] = lv.tolist()
            # an item within --tol keeps the first decode that met it: no more steering than it takes
            better = torch.isfinite(lv) & (lv < best["loss"]) & ~state["done"]
            best["loss"] = torch.where(better, lv, best["loss"])
            if best["mel"] is None:
                best["mel"] = mel.clone()
            m = better.to(mel.device)
            best["mel"][m], best["x"][m] = mel[m], x.detach()[m]
            if leaf is not None:
                if best["leaf"] is None:
                    best["leaf"] = leaf.detach().clone()
                best["leaf"][better.to(leaf.device)] = leaf.detach()[better.to(leaf.device)]
            for b in torch.nonzero(better).flatten().tolist():
                best["iter"][b] = k
            if tol is not None:
                state["done"] |= best["loss"] <= tol
            state["met"] = bool(state["done"].all())
            if correct and not state["met"]:
                state["residual"] = mel - one_step(x)
                state["corrections"] += 1

    if steer == "mix":  # Adam moves the weights w [B, n], starting at the search's pick
        leaf0 = torch.nn.functional.one_hot(pick, n_search).to(x_T.device, torch.float32)

        def to_x(w):
            return mix(w, pool)
    else:
        leaf0 = x_T

        def to_x(x):
            return x

    def pre_step(k: int, leaf: Tensor) -> bool:
        """The refresh, before iterate k is rendered: True (the surrogate changed) after the first.
        The last iterate takes no gradient step, so there it is only scored: its surrogate stays
        the one its predecessors were ranked on."""
        if every and k % every == 0:
            last = k == s.optim.iters
            score(to_x(leaf), k, not last, leaf)
            return 0 < k and not last
        return False

    def freeze(leaf: Tensor) -> None:
        """After each update: the items already within --tol go back to the iterate that met it."""
        done = state["done"].to(leaf.device)
        if done.any() and best["leaf"] is not None:
            leaf[done] = best["leaf"][done].to(leaf)

    def surrogate(leaf):
        return one_step(to_x(leaf)) + state["residual"]

    def callback(info: dict) -> bool:
        user = s.callback(info) if s.callback is not None else False
        return bool(user) or state["met"]  # the decodes met --tol: stop after this evaluation

    # the surrogate's loss never decides the stop: only real decodes do (callback)
    r = optimize_latent(surrogate, control.loss, leaf0, dataclasses.replace(s.optim, tol=None), resume=resume,
                        progress=s.progress, callback=callback, pre_step=pre_step, project=freeze,
                        desc=f"ditto2 {control.name}")
    if steer == "mix":  # the result speaks x_T, as --save-latent and --init-latent do
        with torch.no_grad():
            xs = to_x(r.x_T)
        r = dataclasses.replace(r, x_T=xs, state={"x_T": to_x(r.state["x_T"]).detach().clone()})
    if state["met"]:
        r = dataclasses.replace(r, stopped="tolerance")
    else:
        score(r.x_T, r.iters, False)  # the surrogate's own best iterate competes too
    calls = r.evaluations + (state["decodes"] + (n_search if search_losses else 0)) * decode_calls \
        + state["corrections"]
    rendered = {}
    if render == "teacher":
        r_sampler, r_steps, _ = teacher_decode(control, s)
        if s.teacher_steps is None and cond is None:
            r_steps = UNCONDITIONAL_STEPS
        with torch.no_grad():
            best["mel"] = backend.sample(best["x"], cond, sampler=r_sampler, steps=r_steps, guidance=s.guidance)
            rendered = {"render": f"teacher {r_sampler} {r_steps}",
                        "decoded_loss": best["loss"].tolist(),  # the student decode's, which ranked x_T
                        "rendered_loss": control.loss(best["mel"]).detach().float().cpu().tolist()}
        calls += r_steps
    info = {"student_kind": meta["kind"], "student_guidance": meta["guidance"], "decode": decoder,
            "decode_sampler": t_sampler or f"{meta['kind']} student", "decode_steps": decode_calls, "refresh": every, "decodes": state["decodes"],
            "search": n_search if search_losses else 1, "steer": steer, "search_losses": search_losses, "surrogate_loss": r.best_loss, "decoded_initial_loss": state.get("initial"),
            "decoded_best_iter": best["iter"], "within_tol": state["done"].tolist() if tol is not None else None,
            "decoded_history": state["history"],
            "render": "decode", **rendered}
    return MethodResult(best["x"], best["mel"], calls, optim=r, info=info)
