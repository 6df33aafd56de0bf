"""Target vs achieved, measured on the final waveform, plus the optimization loss curve; and the
target alone, before a run. Each task draws its own panels (TaskSpec.plot, TaskSpec.preview)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dittomusic.utils import atomic_path

from .base import Control, MultiControl
from .spec import get_task


def loss_curves(report: dict, item: int = 0) -> dict[str, list[tuple[int, float]]]:
    """The loss curves of one item of a run's report, as (iteration, loss) points: the optimizer's
    own ("optimized": for ditto2 its one-step surrogate's), and for ditto2 the real decodes that rank
    the result ("decoded", the search's pick at 0) and the teacher's render of the result ("rendered",
    at the last iteration). A surrogate's curve alone can fall while what is heard does not."""
    curves: dict[str, list[tuple[int, float]]] = {}
    if report.get("loss_history"):
        curves["optimized"] = [(k, float(h[item])) for k, h in enumerate(report["loss_history"])]
    if report.get("decoded_history"):
        curves["decoded"] = [(int(k), float(ls[item])) for k, ls in report["decoded_history"]]
        if report.get("rendered_loss") is not None:
            last = max(k for k, _ in curves["decoded"])
            curves["rendered"] = [(last, float(report["rendered_loss"][item]))]
    return curves


CURVE_STYLE = {"optimized": {"lw": 1.2}, "decoded": {"marker": "o", "ls": "--", "ms": 4},
               "rendered": {"marker": "*", "ls": "none", "ms": 10}}
CURVE_LABEL = {"decoded": "real decodes", "rendered": "teacher render"}


def plot_control(control: Control, runs: dict[str, tuple[np.ndarray, np.ndarray | None]], sr: int, out_png,
                 item: int = 0, title: str = "", boundaries: list[float] | None = None,
                 loss_history: dict[str, dict[str, list[tuple[int, float]]]] | None = None) -> Path:
    """runs: method -> (clip audio [samples], stitched audio or None). One row per control (and
    per method for matrix/spectrogram panels), one loss-curve panel if histories are given
    (method -> loss_curves(report))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctrls = [c for c, _ in control.items] if isinstance(control, MultiControl) else [control]
    rows = []
    for c in ctrls:
        if get_task(c.task).overlay:
            rows.append((c, None))  # all methods overlaid
        else:
            rows += [(c, m) for m in runs]
    n = len(rows) + (1 if loss_history else 0)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), squeeze=False, layout="constrained")
    for ax, (c, m) in zip(axes[:, 0], rows):
        for name in (runs if m is None else [m]):
            clip, stitched = runs[name]
            get_task(c.task).plot(ax, c, clip, sr, item, name, stitched, boundaries or ())
        metric = " | ".join(f"{name}: {c.metric(runs[name][0], sr, item):.3g}" for name in (runs if m is None else [m]))
        ax.set_title(f"{c.name} ({c.metric_name}) — {metric}", fontsize=8)
    if loss_history:
        ax = axes[-1, 0]
        for name, curves in loss_history.items():
            surrogate = "decoded" in curves
            for kind, pts in curves.items():
                label = CURVE_LABEL.get(kind, "one-step surrogate" if surrogate else "loss")
                ax.plot(*zip(*pts), label=f"{name}: {label}", **CURVE_STYLE.get(kind, {}))
        ax.set_yscale("log")
        ax.set_xlabel("optimization step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_png


def plot_target(control: Control, out_png, title: str = "") -> Path:
    """The target of each control (one panel per control that has a preview), before any run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctrls = [(c, w) for c, w in control.items] if isinstance(control, MultiControl) else [(control, None)]
    ctrls = [(c, w) for c, w in ctrls if get_task(c.task).preview is not None]
    if not ctrls:
        from dittomusic.errors import DittoError

        raise DittoError(f"{control.name} has no target preview")
    fig, axes = plt.subplots(len(ctrls), 1, figsize=(9, 2.6 * len(ctrls)), squeeze=False, layout="constrained")
    for ax, (c, w) in zip(axes[:, 0], ctrls):
        get_task(c.task).preview(ax, c)
        ax.set_title(f"{c.name} target" + ("" if w is None else f" (weight {w:.3g})"), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_png
