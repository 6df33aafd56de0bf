"""Pieces shared by training loops: distributed setup, LR schedule, EMA, loss curves,
exact-resume checkpoints and the step loop itself (base training and distillation)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from dittomusic.checkpoint import load_optimizer_tensors, load_tensors, optimizer_tensors, save_tensors
from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> Dist:
    """torchrun sets WORLD_SIZE/RANK: gloo on CPU, NCCL on CUDA. Plain python: one process."""
    from dittomusic.utils import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to min_ratio * base_lr at `total` steps."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, max_decay: float) -> None:
    # the warm-up keeps early EMA weights from being dominated by the random init
    decay = min(max_decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - decay)


def plot_loss_curve(history: list[dict], out_png: str | Path, title: str = "training loss",
                    ylabel: str = "MSE") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dittomusic.utils import atomic_path

    steps = np.array([h["step"] for h in history if "loss" in h])
    loss = np.array([h["loss"] for h in history if "loss" in h])
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    if len(loss):
        ax.plot(steps, loss, lw=0.5, alpha=0.35, color="C0", label="train (per log interval)")
        k = max(1, len(loss) // 50)
        if len(loss) > k:
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, color="C0", label=f"train (moving mean of {k})")
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val), "o-", color="C3", ms=3, label="validation (EMA weights)")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out_png


def ddp(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    if d.world == 1:
        return model
    ids = [d.device.index] if d.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, clip: float) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return gnorm


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms and embeddings."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in n.lower() else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


@dataclass(kw_only=True)
class LoopConfig:
    """Settings of run_steps (and the seed and device) that every training config shares."""

    seed: int = 0
    log_every: int = 10
    ckpt_minutes: float = 5.0
    val_every: int = 500
    val_clips: int = 64
    max_minutes: float | None = None
    # a CPU-time budget for the whole run (all processes, all resumes): fair bake-offs on a busy machine
    max_cpu_hours: float | None = None
    device: str | None = None


@dataclass
class Counters:
    """Run progress carried in a checkpoint's metadata (under these same keys)."""

    step: int = 0
    history: list = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    def summary(self) -> dict:
        return {"step": self.step, "cpu_hours": self.cpu_seconds / 3600, "wall_hours": self.wall_seconds / 3600,
                "last_loss": last_value(self.history, "loss"), "last_val_loss": last_value(self.history, "val_loss")}


def last_value(history: list[dict], key: str, field_: str | None = None):
    """The newest history entry's `field_` (default: `key` itself) among entries that have `key`."""
    return next((h[field_ or key] for h in reversed(history) if key in h), None)


def state_tensors(modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in m.state_dict().items()}
    return {**out, **optimizer_tensors(opt)}


def resume(ck: Path, cfg, fixed: tuple[str, ...], modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
           device) -> tuple[Counters, dict]:
    """Restore modules and optimizer bit for bit from checkpoint `ck` (if it exists), refusing changed settings."""
    if not ck.exists():
        return Counters(), {}
    tensors, meta = load_tensors(ck, device)
    old, mine = meta["train_config"], asdict(cfg)
    fields = type(cfg).__dataclass_fields__
    # a key that an older run lacks had its field's default then
    diff = [k for k in fixed if old.get(k, fields[k].default if k in fields else None) != mine.get(k)]
    if diff:
        raise DittoError(f"{ck.parent} holds a run with different settings ({', '.join(diff)}); "
                         f"use a new --out or the same settings to resume")
    for prefix, m in modules.items():
        m.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
    load_optimizer_tensors(opt, tensors)
    return Counters(meta["step"], meta["history"], meta["cpu_seconds"], meta["wall_seconds"]), meta


def write_checkpoint(ck: Path, tensors: dict[str, torch.Tensor], meta: dict, title: str, ylabel: str = "MSE") -> None:
    """The checkpoint, plus history.json and loss.png beside it (meta["history"])."""
    save_tensors(ck, tensors, meta)
    atomic_write_text(ck.parent / "history.json", json.dumps(meta["history"]))
    plot_loss_curve(meta["history"], ck.parent / "loss.png", title, ylabel)


def run_steps(d: Dist, cfg: LoopConfig, c: Counters, step_fn: Callable[[int], tuple],
              save: Callable[[float, float], None], val: Callable[[], float] | None = None, *,
              progress: bool = True, desc: str = "train") -> Counters:
    """The step loop: step_fn(step) -> (loss, grad_norm, lr) does one optimizer step.

    Logs every cfg.log_every steps, validates every cfg.val_every (val: main process only), and
    calls save(cpu_seconds, wall_seconds) on the main process every cfg.ckpt_minutes, at the end,
    and when cfg.max_minutes have passed (then it stops). Updates and returns `c`.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=c.step, disable=not (progress and d.main), desc=desc, dynamic_ncols=True)
    t_start, c_start = time.time(), time.process_time()
    last_ck = time.time()
    run_loss, run_n = 0.0, 0

    def cpu_seconds() -> float:
        x = torch.tensor([time.process_time() - c_start])
        if d.world > 1:
            dist.all_reduce(x)
        return float(x)

    while c.step < cfg.steps:
        if cfg.max_cpu_hours is not None and c.cpu_seconds >= cfg.max_cpu_hours * 3600:
            break  # a resumed run that has already spent its budget
        loss, gnorm, lr = step_fn(c.step)
        c.step += 1
        lv = loss.detach()
        if d.world > 1:
            dist.all_reduce(lv)
            lv /= d.world
        run_loss += float(lv)
        run_n += 1
        bar.update(1)
        if c.step % cfg.log_every == 0 or c.step == cfg.steps:
            c.history.append({"step": c.step, "loss": run_loss / run_n, "lr": lr, "grad_norm": float(gnorm)})
            bar.set_postfix(loss=f"{run_loss / run_n:.4f}")
            run_loss, run_n = 0.0, 0
        if val is not None and (c.step % cfg.val_every == 0 or c.step == cfg.steps):
            c.history.append({"step": c.step, "val_loss": val()})
        # all ranks must agree on when to checkpoint or stop
        now = time.time()
        over_cpu = cfg.max_cpu_hours is not None and (
            c.cpu_seconds + (time.process_time() - c_start) * d.world >= cfg.max_cpu_hours * 3600)
        flags = torch.tensor([float(now - last_ck >= cfg.ckpt_minutes * 60),
                              float(over_cpu or (cfg.max_minutes is not None and (now - t_start) >= cfg.max_minutes * 60))])
        if d.world > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags.any() or c.step == cfg.steps:
            cpu = cpu_seconds()
            if d.main:
                save(c.cpu_seconds + cpu, c.wall_seconds + (now - t_start))
            last_ck = now
            if flags[1] > 0:
                break
    bar.close()
    c.cpu_seconds += cpu_seconds()
    c.wall_seconds += time.time() - t_start
    if d.main:
        save(c.cpu_seconds, c.wall_seconds)
    barrier(d)
    return c
