"""Inference-time optimization of the initial noise x_T (DITTO, Novack et al. 2024, Alg. 1).

    x*_T = argmin_{x_T} L(f(render(x_T)), y)

`render` is any differentiable map x_T -> x0 mel: the full checkpointed sampler for DITTO, a
distilled one-step map for DITTO-2. Only x_T is a leaf; model weights never receive gradients.
Items of a batch are independent (the loss is a per-item sum and Adam is element-wise), so a
batch of seeds is B separate optimizations run at the price of one batched forward/backward.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import Tensor

from dittomusic.errors import DittoError

Render = Callable[[Tensor], Tensor]
LossFn = Callable[[Tensor], Tensor]


@dataclass
class OptimConfig:
    """DITTO sec. 5.1: Adam, lr 5e-3 ("higher leads to stability issues"), K = 70 (150 for
    melody and structure). tol: stop once every item's loss is <= tol. patience: stop once no
    item has improved for this many iterations (None = never)."""

    iters: int = 70
    lr: float = 5e-3
    tol: float | None = None
    patience: int | None = None

    def __post_init__(self):
        if not (isinstance(self.iters, int) and self.iters >= 0):
            raise DittoError(f"--iters must be an integer >= 0, got {self.iters!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise DittoError(f"--lr must be a finite number > 0, got {self.lr!r}")
        if self.patience is not None and self.patience < 1:
            raise DittoError(f"patience must be >= 1 or None, got {self.patience!r}")


@dataclass
class OptimResult:
    x_T: Tensor  # best iterate per item [B, ...]
    x0: Tensor  # render(x_T) at the best iterate, detached
    history: list[list[float]]  # loss per evaluated iterate, per item (history[k][b])
    best_iter: list[int]
    best_loss: list[float]
    iters: int  # optimizer updates made
    evaluations: int  # render calls (with or without gradient)
    grad_evaluations: int  # render calls that were backpropagated
    stopped: str  # "iters" | "tolerance" | "patience"
    wall_s: float
    warnings: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)  # last x_T and Adam moments, for resuming

    @property
    def initial_loss(self) -> list[float]:
        return self.history[0] if self.history else []

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("x_T", "x0", "state", "history")}
        d["initial_loss"] = self.initial_loss
        return d


class Adam:
    """torch.optim.Adam on one tensor, update for update (its single-tensor path, the CPU default:
    no amsgrad, weight decay or maximize; a test compares them bit for bit). Written out because
    constructing any torch.optim optimizer imports torch._dynamo, 1.5-3 s of a cold
    `dittomusic control`. state[param] holds step, exp_avg and exp_avg_sq as torch's does."""

    def __init__(self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.state: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        p, g = self.param, self.param.grad
        if g is None:
            return
        st = self.state.get(p)
        if not st:
            st = self.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                  "exp_avg_sq": torch.zeros_like(p)}
        b1, b2 = self.betas
        st["step"] += 1
        st["exp_avg"].lerp_(g, 1 - b1)
        st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        step = st["step"].item()
        denom = (st["exp_avg_sq"].sqrt() / (1 - b2 ** step) ** 0.5).add_(self.eps)
        p.addcdiv_(st["exp_avg"], denom, value=-(self.lr / (1 - b1 ** step)))


def _finite_rows(t: Tensor) -> Tensor:
    return torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)


def optimize_latent(render: Render, loss_fn: LossFn, x_T: Tensor, cfg: OptimConfig | None = None, *,
                    resume: dict | None = None, progress: bool = False, callback=None, pre_step=None,
                    project=None, desc: str = "ditto") -> OptimResult:
    """Adam on x_T only; returns the best iterate of each item and the mel it renders to.

    Evaluates K + 1 iterates (K updates), so iters=0 is plain sampling of x_T. Non-finite losses
    or gradients restore that item's best iterate and reset its Adam moments (reported in
    warnings) rather than poisoning the batch. resume: OptimResult.state of an earlier run.
    callback(dict(iter, loss [B] tensor, x0, x_T)) after each evaluation; return True to stop.
    pre_step(k, x_T) before iterate k is rendered (x_T detached): where a caller may change what
    `render` computes (DITTO-2 re-corrects its surrogate), so that each iteration's loss and
    gradient come from one objective. It returns True when the objective changed: the best losses
    so far, measured on the old one, are forgotten (the best iterates stay, for the NaN guard).
    project(x_T) after each update, in place and without gradient: DOODL's renormalization and
    noise injection.
    """
    from tqdm.auto import tqdm

    cfg = cfg or OptimConfig()
    if x_T.dim() < 2:
        raise DittoError(f"x_T must be batched [B, ...], got shape {tuple(x_T.shape)}")
    x = torch.nn.Parameter(x_T.detach().clone())
    opt = Adam(x, lr=cfg.lr)
    if resume:
        if resume["x_T"].shape != x.shape:
            raise DittoError(f"saved latent has shape {tuple(resume['x_T'].shape)}, this run needs {tuple(x.shape)}")
        with torch.no_grad():
            x.copy_(resume["x_T"].to(x))
        if "exp_avg" in resume:
            opt.state[x] = {"step": resume["step"].detach().clone().float().cpu(),
                            "exp_avg": resume["exp_avg"].to(x).clone(),
                            "exp_avg_sq": resume["exp_avg_sq"].to(x).clone()}
    B = x.shape[0]
    best_loss = torch.full((B,), math.inf)
    best_x = x.detach().clone()
    best_x0 = None
    best_iter = [-1] * B
    history: list[list[float]] = []
    warnings: list[str] = []
    since_best = 0
    seen_finite = False
    stopped, grad_evals, updates = "iters", 0, 0
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.iters, desc=desc, disable=not progress, leave=False)
    for k in range(cfg.iters + 1):
        last = k == cfg.iters
        if pre_step is not None and pre_step(k, x.detach()):
            best_loss = torch.full((B,), math.inf)
            since_best = 0
        opt.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(not last):
            x0 = render(x)
            loss = loss_fn(x0)
        if loss.shape != (B,):
            raise DittoError(f"the loss must give one value per batch item [{B}], got shape {tuple(loss.shape)}")
        lv = loss.detach().float().cpu()
        history.append(lv.tolist())
        ok = torch.isfinite(lv)
        seen_finite = seen_finite or bool(ok.any())
        improved = ok & (lv < best_loss)
        if improved.any():
            since_best = 0
            best_loss = torch.where(improved, lv, best_loss)
            best_x[improved.to(best_x.device)] = x.detach()[improved.to(x.device)]
            x0d = x0.detach()
            best_x0 = x0d.clone() if best_x0 is None else torch.where(
                improved.to(x0d.device).view(-1, *[1] * (x0d.dim() - 1)), x0d, best_x0)
            for b in improved.nonzero().flatten().tolist():
                best_iter[b] = k
        else:
            since_best += 1
        bar.set_postfix(loss=f"{float(lv[ok].mean()) if ok.any() else float('nan'):.4g}",
                        best=f"{float(best_loss[torch.isfinite(best_loss)].mean()) if torch.isfinite(best_loss).any() else float('nan'):.4g}")
        if callback is not None and callback(dict(iter=k, loss=lv, x0=x0.detach(), x_T=x.detach())):
            stopped = "callback"
            break
        if last:
            break
        if cfg.tol is not None and bool((best_loss <= cfg.tol).all()):
            stopped = "tolerance"
            break
        if cfg.patience is not None and since_best >= cfg.patience:
            stopped = "patience"
            break
        if not ok.all() and not seen_finite:
            raise DittoError("the control loss is NaN/inf at the starting latent; check the target "
                             "(e.g. its length matches the clip) and the model")
        # sum of independent per-item losses: each item's gradient is its own
        loss[ok.to(loss.device)].sum().backward() if ok.any() else None
        grad_evals += 1
        g = x.grad if x.grad is not None else torch.zeros_like(x)
        bad = (~ok.to(x.device)) | ~_finite_rows(g)
        if bad.any():
            rows = bad.nonzero().flatten().tolist()
            warnings.append(f"iteration {k}: non-finite loss/gradient for item(s) {rows}; restored their best iterate")
            with torch.no_grad():
                x[bad] = best_x[bad.to(best_x.device)].to(x)
                g = g.clone()
                g[bad] = 0
                x.grad = g
                st = opt.state.get(x)
                if st:
                    st["exp_avg"][bad] = 0
                    st["exp_avg_sq"][bad] = 0
        opt.step()
        if bad.any():  # a zero gradient still moves Adam by its momentum: undo that for bad rows
            with torch.no_grad():
                x[bad] = best_x[bad.to(best_x.device)].to(x)
        if project is not None:
            with torch.no_grad():
                project(x.data)
        updates += 1
        bar.update(1)
    bar.close()
    if best_x0 is None:
        raise DittoError("the control loss was NaN/inf at every iterate; nothing to return")
    st = opt.state.get(x, {})
    state = {"x_T": x.detach().clone()}
    if st:
        state.update(exp_avg=st["exp_avg"].detach().clone(), exp_avg_sq=st["exp_avg_sq"].detach().clone(),
                     step=torch.as_tensor(st["step"]).detach().clone().reshape(()))
    return OptimResult(x_T=best_x, x0=best_x0, history=history, best_iter=best_iter,
                       best_loss=best_loss.tolist(), iters=updates, evaluations=len(history),
                       grad_evaluations=grad_evals, stopped=stopped, wall_s=time.perf_counter() - t0,
                       warnings=warnings, state=state)


def save_latent(path, result: OptimResult, meta: dict | None = None):
    """The best x_T plus the last iterate and its Adam moments, so a run can continue exactly
    where it stopped (safetensors; meta is free-form JSON, e.g. task, method, seed)."""
    from dittomusic.checkpoint import save_tensors

    tensors = {"best_x_T": result.x_T, **{k: v for k, v in result.state.items()}}
    info = {"kind": "latent", "iters_done": result.iters, "best_loss": result.best_loss, **(meta or {})}
    return save_tensors(path, tensors, info)


def load_latent(path, device=None) -> tuple[Tensor, dict, dict]:
    """-> (best x_T, resume state for optimize_latent, meta)."""
    from dittomusic.checkpoint import load_tensors

    tensors, meta = load_tensors(path, device or "cpu")
    if meta.get("kind") != "latent" or "best_x_T" not in tensors or "x_T" not in tensors:
        raise DittoError(f"{path} is not a dittomusic latent file (write one with --save-latent)")
    x, best = tensors["x_T"], tensors["best_x_T"]
    if x.dim() < 2 or x.shape != best.shape or not (x.is_floating_point() and best.is_floating_point()):
        raise DittoError(f"{path} is not a dittomusic latent file: x_T {tuple(x.shape)} {x.dtype} and best_x_T "
                         f"{tuple(best.shape)} {best.dtype} must be batched float tensors of one shape")
    moments = [k for k in ("exp_avg", "exp_avg_sq", "step") if k in tensors]
    if moments and (len(moments) < 3 or tensors["step"].numel() != 1 or tensors["exp_avg"].shape != x.shape
                    or tensors["exp_avg_sq"].shape != x.shape):
        raise DittoError(f"{path} is not a dittomusic latent file: its Adam state (exp_avg, exp_avg_sq, step) is "
                         "incomplete or does not match x_T")
    state = {k: v for k, v in tensors.items() if k != "best_x_T"}
    return tensors["best_x_T"], state, meta
