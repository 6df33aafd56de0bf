"""`dittomusic distill`: consistency (CD) or consistency-trajectory (CTD) distillation of a MelDiT.

The student starts as the teacher; theta^- (the loss target) is an EMA of it with decay
`target_decay`, and a slower EMA (`ema_decay`, once ema_update's warm-up passes it) is what gets exported;
`init` continues from an earlier student with a fresh optimizer and LR schedule. The teacher's ODE solver
is DDIM (eta 0) with classifier-free guidance at a fixed scale on the grid time_grid(grid_steps),
so the student needs one forward pass per jump and no CFG doubling; tag dropout (as in base
training) keeps the student usable with partial or no tags.

Grid: 20 DDIM trailing steps by default, the base model's default sampler. CD's fixed point is
then exactly the teacher's 20-step guided DDIM sample, which is known to sound right here, and a
coarser grid needs fewer bootstrap rounds for the boundary anchor to reach t = 999 than Song et
al.'s N = 40 (a step costs the same either way; `--grid-steps 40` is there to try).

Validation ("val_loss" in history.json): MSE between the EMA student's one-jump sample and the
teacher's guided DDIM sample over the whole grid, from fixed noise and tags: the distillation
error that DITTO-2's one-step surrogate inherits. meta["val_init"] is the same for the
untrained student, i.e. the teacher's own unguided one-step x0.

Exact resume and multi-process training work as in train/base.py, whose machinery this reuses.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dittomusic.data.dataset import MelDataset
from dittomusic.distill.consistency import (consistency_fn, cd_loss, ctd_loss, ctd_sample, consistency_sample,
                                            teacher_step, time_grid)
from dittomusic.distill.student import check_kind, load_student, resolve_student_path, student_from_teacher
from dittomusic.errors import DittoError
from dittomusic.models.loading import bundled_path, load_model
from dittomusic.train.base import (CKPT, _Batches, _to, autocast, cond_from_batch, open_run, rank_slice,
                                   add_continued_cost, release_train_info)
from dittomusic.train.common import (LoopConfig, adamw, ddp, ema_update, lr_at, optimizer_step, resume, run_steps,
                                     set_lr, state_tensors, write_checkpoint)
from dittomusic.utils import stable_hash


@dataclass
class DistillConfig(LoopConfig):
    kind: str  # "cd" or "ctd"
    data: str
    out: str
    teacher: str | None = None  # model checkpoint; None = the bundled base model
    init: str | None = None  # continue from this student (release or run folder) of the same teacher and kind
    steps: int = 2000  # length of the LR schedule; --max-minutes may stop earlier
    batch_size: int = 32  # global, split across processes
    lr: float = 1e-4  # fine-tuning a trained model: a third of the base run's 3e-4
    warmup: int = 100
    weight_decay: float = 0.0  # decay would pull the student off the teacher it starts as
    grad_clip: float = 1.0
    target_decay: float = 0.95  # theta^- (Song et al.'s CD value, after ema_update's warm-up); 0: theta^- = theta
    ema_decay: float = 0.999  # the exported weights
    guidance: float = 3.0  # teacher CFG scale baked into the student (generation's default)
    grid_steps: int = 20
    teacher_steps: int = 4  # CTD: at most this many teacher steps from t to u (drawn per step)
    teacher_clip: bool = True  # clip the teacher's x0 to [-1, 1] as the generation pipeline does (mel teachers only)
    precision: str = "fp32"  # "bf16": student, target and teacher passes under bfloat16 autocast
    tag_drop: float = 0.1
    all_drop: float = 0.1
    val_every: int = field(default=250, kw_only=True)
    val_clips: int = field(default=16, kw_only=True)

    # changing these would make a resumed run a different run
    FIXED = ("kind", "data", "teacher", "steps", "batch_size", "lr", "warmup", "weight_decay", "grad_clip",
             "target_decay", "ema_decay", "guidance", "grid_steps", "teacher_steps", "teacher_clip", "tag_drop",
             "all_drop", "seed", "precision", "init")

    def __post_init__(self):
        check_kind(self.kind)
        if not 1 <= self.grid_steps <= 1000:
            raise DittoError(f"--grid-steps {self.grid_steps} is out of range; give 1-1000")
        if self.teacher_steps < 1:
            raise DittoError("--teacher-steps must be at least 1")


def _draws(cfg: DistillConfig, step: int, batch: int, shape: tuple[int, int], n_grid: int) -> tuple[int, dict]:
    """(k, per-row draws): k teacher steps (1 for CD) from grid index i_t; CTD's target index i_s >= i_t + k."""
    g = torch.Generator().manual_seed(stable_hash(cfg.seed, "distill", step) % 2**63)
    n = n_grid - 1  # intervals
    k = 1 if cfg.kind == "cd" else int(torch.randint(1, min(cfg.teacher_steps, n) + 1, (1,), generator=g))
    i_t = torch.randint(0, n - k + 1, (batch,), generator=g)
    i_u = i_t + k
    i_s = i_u + (torch.rand((batch,), generator=g) * (n - i_u + 1)).long().clamp(max=n - i_u)
    return k, {"i_t": i_t, "i_s": i_s,
               "noise": torch.randn((batch, *shape), generator=g),
               "drop_tags": torch.rand((batch, 4), generator=g) < cfg.tag_drop,
               "drop_all": torch.rand((batch,), generator=g) < cfg.all_drop}


def _file_digest(path: Path) -> str:
    from dittomusic.utils import file_sha1

    return file_sha1(path)


def _val_tags(cfg: DistillConfig, n: int) -> dict:
    try:
        ds = MelDataset(cfg.data, "val", random_crop=False)
    except DittoError:
        ds = MelDataset(cfg.data, "train", random_crop=False)
    b = _Batches(ds, cfg.seed).get(range(min(n, len(ds))))
    return cond_from_batch(b)


def warm_start_student(cfg: DistillConfig, teacher_sha1: str, modules: dict[str, torch.nn.Module]) -> dict:
    """Continue from a student (a release, or a run folder's EMA): the same teacher file, kind, guidance and
    grid, with a fresh optimizer and LR schedule. Returns what the release records about it (its cost included)."""
    path = resolve_student_path(cfg.init)
    student, meta = load_student(path, "cpu")  # copied into the run's modules on their device below
    if meta["kind"] != cfg.kind:
        raise DittoError(f"--init {cfg.init} is a {meta['kind'].upper()} student; this run distills {cfg.kind.upper()}")
    if meta["distill"].get("teacher_sha1") != teacher_sha1:
        raise DittoError(f"--init {cfg.init} was distilled from another teacher file than this run's; "
                         f"continue it with its own teacher (--teacher)")
    for k in ("guidance", "grid_steps"):
        if meta["distill"].get(k) != getattr(cfg, k):
            raise DittoError(f"--init {cfg.init} was distilled with {k} {meta['distill'].get(k)}, this run with "
                             f"{getattr(cfg, k)}: give the same --{k.replace('_', '-')}")
    for m in modules.values():
        m.load_state_dict(student.state_dict())
    if "train" in meta:  # a release: its "train" already counts whatever it continued
        before = meta["train"]
    else:  # a run folder: its own steps, plus its own start point's if it was itself continued
        before = release_train_info(meta)
        if meta["distill"].get("init"):
            add_continued_cost(before, meta["distill"]["init"]["train"])
    return {"file": str(path), "sha1": _file_digest(path), "train": before}


def distill(cfg: DistillConfig, progress: bool = True) -> dict:
    d, out, ds = open_run(cfg)
    teacher_file = Path(cfg.teacher) if cfg.teacher else bundled_path()
    teacher, _ = load_model(cfg.teacher, d.device)
    tc = teacher.cfg
    if tc.vocab and tc.vocab != ds.vocab.to_dict():
        raise DittoError(f"the teacher's tag vocabulary differs from {cfg.data}'s: distill on the data it was "
                         f"trained on (or a dataset built with the same collections)")
    if teacher.mel_bins != ds[0]["mel"].shape[0]:
        raise DittoError(f"the teacher takes {teacher.mel_bins} mel bins but {cfg.data} has {ds[0]['mel'].shape[0]}")
    if ds.clip_frames != tc.clip_frames * teacher.frames_per_step:
        raise DittoError(f"{cfg.data}'s clips are {ds.clip_frames} frames; the teacher's are "
                         f"{tc.clip_frames * teacher.frames_per_step}")
    autocast(cfg.precision, d.device)  # validates before any work
    latent = teacher.ae is not None
    # a latent model's pipeline never clips: dynamic thresholding assumes data in [-1, 1]
    clip = cfg.teacher_clip and not latent
    digest = _file_digest(teacher_file)
    torch.manual_seed(cfg.seed)  # the CTD s embedding's first layer: same on every rank
    model = student_from_teacher(teacher, cfg.kind)
    target = copy.deepcopy(model).eval().requires_grad_(False)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    modules = {"model": model, "target": target, "ema": ema}
    info = {"kind": cfg.kind, "guidance": cfg.guidance, "grid": time_grid(cfg.grid_steps), "grid_steps": cfg.grid_steps,
            "teacher_clip": clip, "teacher": str(teacher_file), "teacher_sha1": digest, "latent": latent}
    if cfg.init and not (out / CKPT).exists():
        info["init"] = warm_start_student(cfg, digest, modules)
    counters, old = resume(out / CKPT, cfg, DistillConfig.FIXED, modules, opt, d.device)
    if old and cfg.init:  # what the run started from, as recorded then (the file may have moved on since)
        info["init"] = old["distill"]["init"]
    if old and old["distill"]["teacher_sha1"] != digest:
        raise DittoError(f"{out} was distilled from a different teacher file; use a new --out")
    net = ddp(model, d)

    grid = time_grid(cfg.grid_steps)
    grid_t = torch.tensor(grid, dtype=torch.float32)
    shape = (tc.n_mels, tc.clip_frames)
    batches = _Batches(ds, cfg.seed)

    def bounded(x):  # what the pipeline's decode sees: a mel sample in [-1, 1]; a latent unchanged
        return x if latent else x.clamp(-1, 1)
    sample = consistency_sample if cfg.kind == "cd" else ctd_sample

    val_ref = val_init = None
    if d.main and cfg.val_clips > 0:
        # the teacher's guided DDIM over the whole grid, once: the fixed reference for one-jump students
        cond = _to(_val_tags(cfg, cfg.val_clips), d.device)
        n = len(cond["collection"])
        x_T = torch.randn((n, *shape), generator=torch.Generator().manual_seed(stable_hash(cfg.seed, "val") % 2**63))
        x_T = x_T.to(d.device)
        with torch.no_grad(), autocast(cfg.precision, d.device):
            x = x_T
            for t, s in zip(grid[:-1], grid[1:]):
                x = teacher_step(teacher, x, t, s, cond, cfg.guidance, clip=clip)
            val_ref = (x_T, cond, x)
            val_init = float(torch.mean((bounded(consistency_fn(teacher, x_T, grid[0], cond)) - x) ** 2))

    def checkpoint(cpu_seconds: float, wall_seconds: float):
        meta = {**asdict(counters), "cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds, "world": d.world,
                "train_config": asdict(cfg), "model_config": model.cfg.to_dict(), "schedule": "cosine",
                "distill": info, "val_init": val_init}
        write_checkpoint(out / CKPT, state_tensors(modules, opt), meta,
                         f"{cfg.kind.upper()} student, guidance {cfg.guidance:g}, {cfg.grid_steps}-step grid, "
                         f"batch {cfg.batch_size}")

    @torch.no_grad()
    def val_loss() -> float:
        x_T, cond, ref = val_ref
        with autocast(cfg.precision, d.device):
            return float(torch.mean((bounded(sample(ema, x_T, cond, 1)) - ref) ** 2))

    def step_fn(step: int):
        k, dr = _draws(cfg, step, cfg.batch_size, shape, len(grid))
        b, dr = rank_slice(batches, dr, step, cfg.batch_size, d)
        lr = set_lr(opt, lr_at(step, cfg.lr, cfg.warmup, cfg.steps))
        cond = cond_from_batch(b, dr["drop_tags"] | dr["drop_all"][:, None])  # all dropped = unconditional row
        path = grid_t[dr["i_t"].cpu()[None] + torch.arange(k + 1)[:, None]].to(d.device)  # [k + 1, B]
        with torch.no_grad():
            x0 = teacher.encode(b["mel"])  # a mel teacher's encode is the identity
        with autocast(cfg.precision, d.device):
            if cfg.kind == "cd":
                loss = cd_loss(net, target, teacher, x0, path[0], path[1], dr["noise"], cond, cfg.guidance, clip=clip)
            else:
                loss = ctd_loss(net, target, teacher, x0, path, grid_t[dr["i_s"].cpu()].to(d.device), dr["noise"],
                                cond, cfg.guidance, clip=clip)
        gnorm = optimizer_step(loss, model, opt, cfg.grad_clip)
        ema_update(target, model, step, cfg.target_decay)
        ema_update(ema, model, step, cfg.ema_decay)
        return loss, gnorm, lr

    model.train()
    run_steps(d, cfg, counters, step_fn, checkpoint, val_loss if val_ref is not None else None,
              progress=progress, desc=f"distill {cfg.kind}")
    return {**counters.summary(), "val_init": val_init}
