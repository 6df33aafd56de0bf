"""`dittomusic train`: the base mel diffusion model.

Objective: v-prediction with MSE on the cosine (squaredcos_cap_v2) 1000-step schedule.
Why v rather than eps: near t = T the cosine schedule's alpha_bar is ~0, where an eps
model must divide by sqrt(alpha_bar) to estimate x0, so its x0 (which dynamic
thresholding, FreeDoM guidance and consistency distillation all read) blows up; v
keeps x0 = sqrt(a) x_t - sqrt(1-a) v well conditioned over the whole range.

Exact resume: every random draw (data order, crops, timesteps, noise, tag dropout) is a
pure function of (seed, step), and the model, EMA and optimizer states are restored
bit for bit, so a resumed run follows the same loss trajectory as an uninterrupted
one. Draws are made for the global batch and sliced per rank, so a 2-process DDP run
computes the same update as a 1-process run with the same global batch.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.data.dataset import MelDataset
from dittomusic.errors import DittoError
from dittomusic.models import ARCHS, build_denoiser
from dittomusic.sampling.schedule import NoiseSchedule
from dittomusic.train.common import (Dist, LoopConfig, adamw, ddp, ema_update, init_distributed, last_value, lr_at,
                                     optimizer_step, resume, run_steps, set_lr, state_tensors, write_checkpoint)
from dittomusic.utils import stable_hash

CKPT = "checkpoint.safetensors"
log = logging.getLogger("dittomusic.train")


@dataclass
class TrainConfig(LoopConfig):
    data: str
    out: str
    steps: int = 12000  # length of the LR schedule; --max-minutes may stop earlier
    batch_size: int = 32  # global, split across processes
    lr: float = 3e-4
    warmup: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    tag_drop: float = 0.1  # each tag dropped independently
    all_drop: float = 0.1  # all tags dropped: the unconditional model CFG needs
    model: dict = field(default_factory=dict)  # config overrides of the architecture (width, depth, ...)
    arch: str = "dit"  # a key of models.ARCHS
    # a trained MelAutoencoder release: diffuse in its latent instead of the mel (latent diffusion)
    autoencoder: str | None = None
    # "uniform" over the 1000 steps, or "lognormal": ln sigma ~ N(ln(0.6 sigma_data), 1.2^2), EDM's
    # training distribution, which spends most steps where fine detail is decided; "mixed": each
    # sample from either with even odds (low-noise detail kept, the high-noise steps still fed)
    timesteps: str = "uniform"
    # a release checkpoint to start from (model and EMA): training continued across machines from
    # the shipped weights, since run folders do not outlive a session; the optimizer starts fresh
    init: str | None = None
    # a folder from `dittomusic autoencoder cache`: the crops' latents, encoded once (train/latents.py)
    latent_cache: str | None = None
    # "bf16": the forward pass under bfloat16 autocast (weights, optimizer and EMA stay fp32); on a CPU
    # with AVX512-BF16 a latent DiT step took 1.1 CPU-s against 2.5 in fp32
    precision: str = "fp32"

    # changing these would make a resumed run a different run
    FIXED = ("data", "batch_size", "lr", "warmup", "weight_decay", "grad_clip", "ema_decay", "tag_drop",
             "all_drop", "seed", "model", "steps", "arch", "autoencoder", "timesteps", "init",
             "latent_cache", "precision")


class _Batches:
    """Epoch-wise permutations; the sample at global position g is a pure function of g."""

    def __init__(self, ds: MelDataset, seed: int):
        self.ds, self.seed, self.n = ds, seed, len(ds)
        self._perm: tuple[int, torch.Tensor] | None = None

    def _perm_for(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(stable_hash(self.seed, "order", epoch) % 2**63)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def get(self, positions: range) -> dict[str, torch.Tensor]:
        items = []
        for gpos in positions:
            epoch, k = divmod(gpos, self.n)
            self.ds.set_epoch(epoch)
            items.append({**self.ds[int(self._perm_for(epoch)[k])], "epoch": epoch})
        return {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else [it[k] for it in items]
                for k in items[0]}


TIMESTEPS = ("uniform", "lognormal", "mixed")
PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device) -> "torch.autocast":
    """The training forward's autocast context ("fp32": disabled)."""
    if precision not in PRECISIONS:
        raise DittoError(f"unknown --precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _draw_t(kind: str, g: torch.Generator, batch: int, n_train: int, sigma_data: float) -> torch.Tensor:
    if kind == "mixed":
        u, ln = (_draw_t(k, g, batch, n_train, sigma_data) for k in ("uniform", "lognormal"))
        return torch.where(torch.rand((batch,), generator=g) < 0.5, u, ln)
    if kind == "uniform":
        return torch.randint(0, n_train, (batch,), generator=g)
    # the training step whose sigma is nearest above a log-normal draw
    sig = (math.log(0.6 * sigma_data) + 1.2 * torch.randn((batch,), generator=g)).exp()
    return torch.searchsorted(NoiseSchedule.cosine().sigmas.float(), sig).clamp(0, n_train - 1)


def _draws(cfg: TrainConfig, step: int, batch: int, shape: tuple[int, int], n_train: int,
           sigma_data: float = 0.3) -> dict:
    g = torch.Generator().manual_seed(stable_hash(cfg.seed, "noise", step) % 2**63)
    return {
        "t": _draw_t(cfg.timesteps, g, batch, n_train, sigma_data),
        "noise": torch.randn((batch, *shape), generator=g),
        "drop_tags": torch.rand((batch, 4), generator=g) < cfg.tag_drop,
        "drop_all": torch.rand((batch,), generator=g) < cfg.all_drop,
    }


def cond_from_batch(b: dict, drop_tags: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Dataset batch -> model conditioning; dropped tags become -1 (their null embedding)."""
    cond = {"collection": b["collection"].clone(), "tempo": b["tempo"].clone(), "mode": b["mode"].clone(),
            "instruments": b["instruments"].clone(),
            "instruments_null": torch.zeros(len(b["collection"]), dtype=torch.bool)}
    if drop_tags is not None:
        for j, k in enumerate(("collection", "tempo", "mode")):
            cond[k][drop_tags[:, j]] = -1
        cond["instruments_null"] = drop_tags[:, 3]
    return cond


def diffusion_loss(net, x0, t, noise, cond, drop, sched: NoiseSchedule, prediction: str) -> torch.Tensor:
    a = sched.alphas_cumprod.to(x0.device, torch.float32)[t].view(-1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = a.sqrt() * noise - (1 - a).sqrt() * x0 if prediction == "v_prediction" else noise
    return F.mse_loss(net(xt, t.float(), cond, drop).float(), target)  # fp32 loss under bf16 autocast


def _to(d: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in d.items()}


def open_run(cfg) -> tuple[Dist, Path, MelDataset]:
    """Processes, run folder and training split for a config with data, out, batch_size, seed, device."""
    d = init_distributed(cfg.device)
    if cfg.batch_size % d.world:
        raise DittoError(f"--batch-size {cfg.batch_size} must be divisible by the {d.world} processes")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return d, out, MelDataset(cfg.data, "train", seed=cfg.seed)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    d, out, ds = open_run(cfg)
    try:
        val = MelDataset(cfg.data, "val", random_crop=False)
    except DittoError:
        log.warning("%s has no validation clips: training without validation loss", cfg.data)
        val = None
    if cfg.arch not in ARCHS:
        raise DittoError(f"unknown --arch {cfg.arch!r}; choose from: {', '.join(ARCHS)}")
    autocast(cfg.precision, d.device)  # validates before any work
    if cfg.timesteps not in TIMESTEPS:
        raise DittoError(f"unknown --timesteps {cfg.timesteps!r}; choose from: {', '.join(TIMESTEPS)}")
    ae = None
    n_rows, frames = ds[0]["mel"].shape[0], ds.clip_frames
    extra: dict = {}
    if cfg.autoencoder:
        from dittomusic.train.autoencoder import load_autoencoder

        ae, _ = load_autoencoder(cfg.autoencoder, d.device)
        if frames % ae.cfg.downsample:
            raise DittoError(f"clips of {frames} frames do not divide into the autoencoder's {ae.cfg.downsample}x latent")
        n_rows, frames = ae.cfg.latent_channels, frames // ae.cfg.downsample
        extra["sigma_data"] = 1.0  # latents are scaled to unit std
    cache = None
    if cfg.latent_cache:
        if ae is None:
            raise DittoError("--latent-cache needs --autoencoder (the autoencoder the cache was built with)")
        from dittomusic.train.latents import LatentCache

        cache = LatentCache(cfg.latent_cache, cfg.autoencoder, ds, cfg.seed)
    mcfg = ARCHS[cfg.arch][0].for_vocab(ds.vocab.to_dict(), n_mels=n_rows, clip_frames=frames,
                                          **{**extra, **cfg.model})
    sched = NoiseSchedule.cosine()
    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = build_denoiser(mcfg).to(d.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    modules = {"model": model, "ema": ema}
    if cfg.init and not (out / CKPT).exists():
        warm_start(cfg.init, mcfg.to_dict(), modules)
    counters, _ = resume(out / CKPT, cfg, TrainConfig.FIXED, modules, opt, d.device)
    net = ddp(model, d)

    def encode(mel: torch.Tensor) -> torch.Tensor:
        if ae is None:
            return mel
        with torch.no_grad():
            return ae.encode(mel)

    batches = _Batches(ds, cfg.seed)
    shape = (mcfg.n_mels, mcfg.clip_frames)
    val_batch = None
    if d.main and val is not None:
        vb = _Batches(val, cfg.seed).get(range(min(cfg.val_clips, len(val))))
        vd = _draws(cfg, -1, len(vb["mel"]), shape, sched.num_train_timesteps, mcfg.sigma_data)
        vb = _to(vb, d.device)
        vb["mel"] = encode(vb["mel"])
        val_batch = (vb, _to(vd, d.device))

    def checkpoint(cpu_seconds: float, wall_seconds: float):
        meta = {**asdict(counters), "cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds, "world": d.world,
                "train_config": asdict(cfg), "model_config": mcfg.to_dict(), "schedule": "cosine"}
        write_checkpoint(out / CKPT, state_tensors(modules, opt), meta,
                         f"{type(model).__name__} ({model.num_params() / 1e6:.1f} M), batch {cfg.batch_size}")

    @torch.no_grad()
    def val_loss() -> float:
        vb, vd = val_batch
        return float(diffusion_loss(ema, vb["mel"], vd["t"], vd["noise"], cond_from_batch(vb), None, sched,
                                    mcfg.prediction))

    def step_fn(step: int):
        b, dr = rank_slice(batches, _draws(cfg, step, cfg.batch_size, shape, sched.num_train_timesteps,
                                           mcfg.sigma_data), step, cfg.batch_size, d)
        lr = set_lr(opt, lr_at(step, cfg.lr, cfg.warmup, cfg.steps))
        x0 = cache.get(b["index"], b["epoch"]).to(d.device) if cache is not None else encode(b["mel"])
        with autocast(cfg.precision, d.device):
            loss = diffusion_loss(net, x0, dr["t"], dr["noise"], cond_from_batch(b, dr["drop_tags"]),
                                  dr["drop_all"], sched, mcfg.prediction)
        gnorm = optimizer_step(loss, model, opt, cfg.grad_clip)
        ema_update(ema, model, step, cfg.ema_decay)
        return loss, gnorm, lr

    model.train()
    run_steps(d, cfg, counters, step_fn, checkpoint, val_loss if val_batch is not None else None,
              progress=progress)
    return counters.summary()


def warm_start(path: str | Path, model_config: dict, modules: dict[str, torch.nn.Module]) -> None:
    """Load a release's weights into every module (model and EMA); its architecture must be the run's."""
    from dittomusic.models.loading import AE_PREFIX

    tensors, meta = load_tensors(path)
    if meta.get("kind") != "base" or "model_config" not in meta:
        raise DittoError(f"--init {path} is not a base-model release (kind {meta.get('kind')!r})")
    if meta["model_config"] != model_config:
        diff = sorted(k for k in set(model_config) | set(meta["model_config"])
                      if model_config.get(k) != meta["model_config"].get(k))
        raise DittoError(f"--init {path} has another architecture than this run (differs in: {', '.join(diff)})")
    weights = {k: v.float() for k, v in tensors.items() if not k.startswith(AE_PREFIX)}
    for m in modules.values():
        m.load_state_dict(weights)


def rank_slice(batches: _Batches, draws: dict, step: int, batch_size: int, d: Dist) -> tuple[dict, dict]:
    """This rank's share of step `step`'s global batch and of the draws made for the whole of it."""
    per = batch_size // d.world
    g0 = step * batch_size + d.rank * per
    b = _to(batches.get(range(g0, g0 + per)), d.device)
    sl = slice(d.rank * per, (d.rank + 1) * per)
    return b, {k: v[sl].to(d.device) for k, v in draws.items()}


def release_train_info(meta: dict) -> dict:
    """The "train" block of a release checkpoint, from a run checkpoint's metadata."""
    hist = meta["history"]
    return {"steps": meta["step"], "cpu_hours": round(meta["cpu_seconds"] / 3600, 3),
            "wall_hours": round(meta["wall_seconds"] / 3600, 3), "processes": meta["world"],
            "batch_size": meta["train_config"]["batch_size"], "final_loss": last_value(hist, "loss"),
            "final_val_loss": last_value(hist, "val_loss"), "final_val_step": last_value(hist, "val_loss", "step")}


def add_continued_cost(train: dict, before: dict) -> None:
    """A continued run's release: its compute includes what its starting point (a release's "train") cost."""
    train["continued_from"] = before
    train["total_cpu_hours"] = round(before.get("total_cpu_hours", before.get("cpu_hours", 0.0)) + train["cpu_hours"], 3)


def export_release(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                   autoencoder: str | Path | None = None) -> Path:
    """EMA weights of a run -> a release checkpoint (fp16 by default) that carries its config.

    A latent model embeds its run's autoencoder, or `autoencoder` if given: a decoder fine-tune of
    it, which must share the run's encoder weight for weight (the latents the model learned)."""
    tensors, meta = load_tensors(Path(run) / CKPT)
    ema = {k[4:]: v.to(dtype) for k, v in tensors.items() if k.startswith("ema.")}
    release = {"kind": "base", "model_config": meta["model_config"], "schedule": meta["schedule"],
               "train": release_train_info(meta), "train_config": meta["train_config"]}
    init = meta["train_config"].get("init")
    if init:
        add_continued_cost(release["train"], load_tensors(init)[1].get("train", {}))
    ae_path = meta["train_config"].get("autoencoder")
    if autoencoder is not None and not ae_path:
        raise DittoError(f"{run} is a mel-space model; --autoencoder applies to latent models only")
    if ae_path:  # one file carries the whole latent model: denoiser + its autoencoder
        from dittomusic.train.autoencoder import autoencoder_tensors, check_same_latents

        ae_tensors, ae_meta = autoencoder_tensors(ae_path)
        if autoencoder is not None:
            new_tensors, new_meta = autoencoder_tensors(autoencoder)
            check_same_latents((ae_tensors, ae_meta), (new_tensors, new_meta), f"the run's {ae_path}", autoencoder)
            ae_tensors, ae_meta = new_tensors, new_meta
        from dittomusic.models.loading import AE_PREFIX

        ema.update({f"{AE_PREFIX}{k}": v.to(dtype) for k, v in ae_tensors.items()})
        release["autoencoder"] = {"model_config": ae_meta["model_config"], "train": ae_meta.get("train", {})}
    return save_tensors(out, ema, release)

