"""The defaults of a control run, resolved in one place (the CLI and the eval both ask here):
the task's method and iterations (TaskSpec.method, .iters) and the method's step size (its
registered lr), unless the task tuned them for that method (TaskSpec.method_defaults: iters, lr, tol)."""

from __future__ import annotations

from .methods import default_lr
from .optimize import OptimConfig
from .tasks import default_iters, default_method, method_default


def resolve(task: str, method: str | None = None, iters: int | None = None, lr: float | None = None,
            tol: float | None = None) -> tuple[str, OptimConfig]:
    """(method, optimizer config) of a run of `task`: what was given, else the defaults."""
    method = method or default_method(task)
    return method, OptimConfig(
        iters=method_default(task, method, "iters", default_iters(task)) if iters is None else iters,
        lr=method_default(task, method, "lr", default_lr(method)) if lr is None else lr,
        tol=method_default(task, method, "tol") if tol is None else tol)
