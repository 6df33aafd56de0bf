"""TaskSpec: everything the CLI, the eval, the plots and the methods need to know about a control
task, declared once beside the task's Control (one module per task in control/tasks/, found
there by name: adding a task is adding a module).

A spec says how to build the control from options and which options (with their help) the CLI
offers for it, which targets the eval runs, how a target and a result are plotted, which report metric the
eval tables lead with, and the task's defaults: method, iterations and per-method settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from dittomusic.errors import DittoError
from dittomusic.options import Option


TaskOption = Option  # a task's CLI option (dittomusic.options)


# the same option for every task that can take its target from a recording
TARGET_AUDIO = TaskOption("--target-audio", "target_audio", None,
                          "Take the intensity / melody / structure target from this recording.", "path")


def _plain(value: float, median: float) -> str:
    return f"{value:.3f} (median {median:.3f})"


def _equal_weight(others: set[str]) -> float:
    return 1.0


@dataclass
class TaskSpec:
    name: str
    # (frames, options, mel config, multiple) -> Control; options: a TaskOptions (every task's option
    # dests); a builder that picks its own clip length keeps it a multiple of `multiple` (the backend's)
    build: Callable[..., Any]
    # (n, frames, reference mels [N, n_mels, F] or None, mel config) -> (n controls, n target names)
    eval_targets: Callable[..., tuple[list, list[str]]]
    # (ax, control, audio, sr, item, label, stitched audio or None, stitch boundaries) draws one panel
    plot: Callable[..., None]
    # (ax, control) draws the target alone, before anything runs (the web app's preview); None: none
    preview: Callable[..., None] | None = None
    options: tuple[TaskOption, ...] = ()
    help: str = ""  # what the task steers, one line
    order: int = 100  # position in listings (CLI help, eval)
    metric: str | None = None  # the report metric the eval's Table 3 shows (None: a painting table instead)
    metric_label: str = "MSE ↓"
    metric_cell: Callable[[float, float], str] = _plain  # (mean, median) -> table cell
    higher_better: bool = False  # the metric's direction (accuracy up, MSE down)
    # the paper's DITTO-2 figure for this metric (DITTO-2 Table 1 as reported): a clip within it adheres at
    # the scale a listener of the paper's demos heard; the tables give the share of clips within it
    paper_scale: float | None = None
    painting: bool = False  # needs matched frames: naive masking / MultiDiffusion / ditto_draft apply
    method: str = "ditto"  # default method
    iters: int = 70  # default optimization steps K (DITTO sec. 5.1: 150 for melody and structure)
    overlay: bool = False  # plot every method in one panel (else one panel per method)
    weight: Callable[[set[str]], float] = _equal_weight  # its weight next to the other tasks of a '+' task
    # per method, tuned settings: "iters", "lr", "tol" (the optimizer's) and the method's own (ditto2:
    # "decode", "decode_steps", "refresh", "teacher_decode"); a '+' task uses one only where its parts agree
    method_defaults: dict[str, dict] = field(default_factory=dict)
    eval_settings: dict = field(default_factory=dict)  # painting: the eval's overlap / gap
    table: str = ""  # painting: the eval table's title, formatted with eval_settings
    control_eval: bool = True  # in `eval control`'s default tasks (False: the task has its own eval / table)
    # (backend, control, run_control output, prompt, settings, options, starting x_T or None) -> entries
    # added to a run's report (text: the CLAP score before and after, and the second opinions)
    report: Callable[..., dict] | None = None
    # () -> None when the task can run with its defaults, else why not (text: no bundled CLAP yet); the
    # web app shows no tab for a task that is not ready rather than one that can only fail
    ready: Callable[[], str | None] | None = None


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def method_default(task: str | list[str], method: str, key: str, fallback=None):
    """A task's tuned `key` for `method` (TaskSpec.method_defaults); for a '+' task (or a list of
    task names) only when every part sets the same value, else `fallback`."""
    parts = [p.strip().lower() for p in task.split("+")] if isinstance(task, str) else list(task)
    vals = [get_task(p).method_defaults.get(method, {}).get(key) for p in parts]
    return vals[0] if vals and vals[0] is not None and all(v == vals[0] for v in vals) else fallback


def within_paper_scale(task: str, value: float) -> bool | None:
    """Whether one clip's metric is within the paper's DITTO-2 figure for the task (None: the task has none)."""
    spec = get_task(task)
    if spec.paper_scale is None:
        return None
    return value >= spec.paper_scale if spec.higher_better else value <= spec.paper_scale


def _discover() -> None:
    from dittomusic.control import tasks  # noqa: F401  (imports every task module, which registers)


def all_tasks() -> list[TaskSpec]:
    _discover()
    return sorted(_TASKS.values(), key=lambda t: (t.order, t.name))


def task_names() -> tuple[str, ...]:
    return tuple(t.name for t in all_tasks())


def get_task(name: str) -> TaskSpec:
    _discover()
    if name not in _TASKS:
        raise DittoError(f"unknown task {name!r}; choose from {', '.join(task_names())}")
    return _TASKS[name]
