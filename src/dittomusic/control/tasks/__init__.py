"""User-facing tasks: one module per task here, each a Control plus its TaskSpec (control/spec.py);
every module in this package is imported and so registered. This module turns a task name and
options into a Control and resolves the task defaults.

    ctrl = build_control("intensity+melody", frames=512, options=TaskOptions(preset="tanh-rise",
                                                                              target_notes="C5:1 E5:1"))

A task is one name or several joined by '+', weighted by each spec's `weight` (DITTO App. H).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

from ..base import Control, MultiControl
from ..spec import TaskSpec, all_tasks, get_task, method_default, task_names

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

def split_task(task: str) -> list[str]:
    names = task_names()
    parts = [p.strip().lower() for p in str(task).split("+") if p.strip()]
    bad = [p for p in parts if p not in names]
    if not parts or bad:
        raise DittoError(f"unknown task {task!r}; choose from {', '.join(names)} or combine them with '+', "
                         "e.g. intensity+melody")
    if len(set(parts)) != len(parts):
        raise DittoError(f"task {task!r} names a control twice")
    paint = [t.name for t in all_tasks() if t.painting]
    if sum(p in paint for p in parts) > 1:
        raise DittoError(f"task {task!r} combines several painting tasks; use at most one of {', '.join(paint)}")
    return parts


def task_options() -> dict[str, object]:
    """Every task option's dest -> default (an option shared by tasks is declared alike by each)."""
    return {o.dest: o.default for t in all_tasks() for o in t.options}


class TaskOptions(SimpleNamespace):
    """Targets for every task (one attribute per TaskOption dest); only the ones a task uses need
    to be set."""

    def __init__(self, **given):
        defaults = task_options()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise TypeError(f"unknown task option(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
        super().__init__(**{**defaults, **given})


def build_control(task: str, frames: int, options: TaskOptions | None = None, cfg: MelConfig | None = None,
                  multiple: int = 1) -> Control:
    """frames: the clip length; multiple: what clip lengths the backend takes a multiple of
    (Backend.frame_multiple), for a task that sets its own (inpainting a short reference)."""
    o = options or TaskOptions()
    cfg = cfg or MelConfig()
    parts = split_task(task)
    return join([(p, get_task(p).build(frames, o, cfg, multiple)) for p in parts])


def join(parts: list[tuple[str, Control]]) -> Control:
    """(task, control) pairs built for one '+' task, as one control (see `combine`); next to a
    painting task the others constrain only the new material (App. H)."""
    masks = next((c.masks for _, c in parts if getattr(c, "masks", None) is not None), None)
    if masks is not None and len(parts) > 1:
        for _, c in parts:
            if hasattr(c, "free_frames"):
                c.free_frames(masks.gen_idx)
    return combine(parts)


def combine(parts: list[tuple[str, Control]], scales: list[float] | None = None) -> Control:
    """(task, control) pairs as one control: a single one itself, several a weighted sum with each
    spec's `weight` next to the others (DITTO App. H) times its scale (default 1)."""
    names = [p for p, _ in parts]
    split_task("+".join(names))  # the same checks as a '+' task
    if len(parts) == 1:
        return parts[0][1]
    scales = scales or [1.0] * len(parts)
    m = len(parts)
    return MultiControl([(c, get_task(p).weight(set(names) - {p}) / m * k) for (p, c), k in zip(parts, scales)])


def task_reports(task: str, backend, control: Control, out, prompt, settings, options: TaskOptions,
                 x_T=None) -> dict:
    """What each part's TaskSpec.report adds to a finished run's report."""
    extra: dict = {}
    for p in split_task(task):
        fn = get_task(p).report
        if fn is not None:
            extra.update(fn(backend, control, out, prompt, settings, options, x_T))
    return extra


def default_iters(task: str) -> int:
    return max(get_task(p).iters for p in split_task(task))


def default_method(task: str) -> str:
    """The painting part's method if any (ditto_draft), else the parts' own where they agree, else
    ditto (every task runs it; a tuned default such as ditto2's was measured on its task alone)."""
    specs = [get_task(p) for p in split_task(task)]
    painting = next((t.method for t in specs if t.painting), None)
    if painting:
        return painting
    return specs[0].method if all(t.method == specs[0].method for t in specs) else "ditto"


__all__ = ["TaskOptions", "TaskSpec", "all_tasks", "build_control", "combine", "default_iters", "default_method",
           "get_task", "join", "method_default", "split_task", "task_names", "task_options", "task_reports"]
