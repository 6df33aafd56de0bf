"""A control run from settings to files, the steps `dittomusic control` and the web app share:
the run's settings (run_settings), its starting latent when it continues a saved one
(start_latent), and its outputs on disk (write_outputs).

    method, settings = run_settings("intensity", None, steps=20, guidance=3.0)
    x_T, resume = start_latent(None, method, backend)
    res = run_control(backend, method, ctrl, prompt, x_T=x_T, settings=settings, resume=resume)
    paths = write_outputs(res, ctrl, "out.wav", task="intensity", report="out.json")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dittomusic.errors import DittoError

from .base import Control
from .defaults import resolve
from .methods import ControlOutput, Settings, get_method, resumable_methods
from .optimize import load_latent, save_latent


def run_settings(task: str, method: str | None = None, iters: int | None = None, lr: float | None = None,
                 tol: float | None = None, **settings) -> tuple[str, Settings]:
    """(method, Settings) for a run of `task`: the given method and optimizer values, else the task's
    and the method's defaults (control/defaults.py); settings: Settings fields (steps, guidance,
    checkpoint, progress, callback, the methods' own options)."""
    method, optim = resolve(task, method, iters, lr, tol)
    get_method(method)
    return method, Settings(optim=optim, **settings)


def start_latent(path, method: str, backend, batch: int = 1):
    """(x_T, resume state) to continue the latent saved at `path`, or (None, None) without one.

    With a method that cannot continue it (default, freedom, ...), the saved x_T is sampled as it is, repeated
    `batch` times for stochastic samplers (latent reuse, DITTO App. I)."""
    if not path:
        return None, None
    x_T, resume, _ = load_latent(path, backend.device)
    if method in resumable_methods():
        return resume["x_T"], resume
    if x_T.shape[0] == 1:
        x_T = x_T.expand(batch, *x_T.shape[1:]).clone()
    return x_T, None


def model_for(method: str, model_path, backend: str | None, student=None):
    """The model file to open: `model_path`, or for ditto2 without one the bundled model its student
    was distilled from, when that is not the default (the students trail a new base model)."""
    if method != "ditto2" or model_path is not None or backend not in (None, "dittomusic"):
        return model_path
    from dittomusic.distill.student import bundled_teacher
    from dittomusic.models.loading import bundled_path

    teacher = bundled_teacher(student)
    if teacher is not None and teacher != bundled_path():
        import logging

        logging.getLogger("dittomusic").warning(
            "ditto2: running on the student's own teacher, the bundled %s (the students have not been "
            "distilled from the default model yet)", teacher.name)
        return teacher
    return model_path


def runnable_method(task: str, method: str, given: str | None, backend, student=None) -> str:
    """`method`, or "ditto" where it is the task's ditto2 default (the user chose neither --method nor
    --student) and no bundled student fits the backend: another backend, or a --model no bundled
    student was distilled from."""
    if given is not None or method != "ditto2" or student is not None:
        return method
    from dittomusic.distill.student import check_teacher, get_student

    try:
        st, meta = get_student(student, backend.device)
        check_teacher(meta, backend, st)
    except DittoError as e:
        import logging

        logging.getLogger("dittomusic").warning(
            "%s: running ditto, as DITTO-2 (this task's default) cannot run here: %s", task, str(e).split(":")[0])
        return "ditto"
    return method


@dataclass
class Outputs:
    audio: list[Path]  # one wav per batch item
    plot: Path | None = None  # target vs achieved
    report: Path | None = None
    latent: Path | None = None
    extra: list[Path] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [p for p in (*self.audio, self.plot, self.report, self.latent, *self.extra) if p is not None]


def write_outputs(res: ControlOutput, ctrl: Control, out, *, task: str, seed: int = 0, png: bool = True,
                  report=None, latent=None) -> Outputs:
    """The run's wav(s) (OUT, or OUT_0.wav ... for a batch), the target-vs-achieved PNG beside them,
    the report JSON and the optimized latent (to continue later), each written atomically."""
    from dittomusic.audio.io import save_wav
    from dittomusic.utils import atomic_write_text

    out = Path(out)
    wavs = [out] if len(res.audio) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}")
                                               for i in range(len(res.audio))]
    for p, a in zip(wavs, res.audio):
        save_wav(p, a, res.sr)
    written = Outputs(wavs)
    if png:
        from .plots import loss_curves, plot_control

        rep = res.report
        written.plot = plot_control(
            ctrl, {res.method: (res.clip_audio[0], res.audio[0] if "stitch_boundaries_s" in rep else None)},
            res.sr, out.with_suffix(".png"), title=f"{task} — {res.method} (seed {seed})",
            boundaries=rep.get("stitch_boundaries_s"),
            loss_history={res.method: loss_curves(rep)} if loss_curves(rep) else None)
    if latent and res.result.optim is not None:
        written.latent = Path(save_latent(latent, res.result.optim, {"task": task, "method": res.method,
                                                                     "seed": seed}))
    if report:
        atomic_write_text(report, json.dumps(res.report, indent=1))
        written.report = Path(report)
    return written
