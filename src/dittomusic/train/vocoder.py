"""`dittomusic vocoder train`: the ConvNeXt + iSTFT vocoder on re-rendered audio.

Each step draws random segments (default 64 frames, 0.74 s) of the paired audio
(`dittomusic vocoder pairs`) with their stored mels, and regresses the audio with a mel L1
loss plus a multi-resolution STFT loss (spectral convergence + log magnitude). Optionally
(`adversarial`) multi-period and multi-resolution discriminators add hinge and
feature-matching losses, as in HiFi-GAN and Vocos.

The shared loop (train/common.py) gives exact resume: segment draws are a pure function of
(seed, step) and weights, EMA and optimizer state are restored bit for bit; draws are made for
the global batch and sliced per rank, so torchrun DDP matches one process.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dittomusic.audio.losses import MelL1Loss, MultiResolutionSTFTLoss, SpectrumLoss
from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig
from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.data.pairs import PairedSegments
from dittomusic.errors import DittoError
from dittomusic.train.common import (LoopConfig, ddp, ema_update, init_distributed, lr_at, resume, run_steps,
                                     set_lr, state_tensors, write_checkpoint)
from dittomusic.utils import stable_hash

CKPT = "checkpoint.safetensors"
log = logging.getLogger("dittomusic.train")


@dataclass
class VocoderTrainConfig(LoopConfig):
    data: str
    out: str
    audio: str | None = None  # paired audio folder [default: DATA/audio]
    steps: int = 20000  # length of the LR schedule; --max-minutes may stop earlier
    batch_size: int = 16  # global, split across processes
    segment_frames: int = 64  # mel frames per training segment (63 hops of audio)
    lr: float = 5e-4
    warmup: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    # the default recipe (a "locked" head) regresses the head's magnitude only; session 28's run used
    # mel_weight = stft_weight = 1 and spectrum_weight = 0
    mel_weight: float = 0.0  # mel L1 on the vocoded audio
    stft_weight: float = 0.0  # on spectral convergence + log-magnitude, each averaged over resolutions
    spectrum_weight: float = 1.0  # SpectrumLoss on the head's own spectrum (or magnitude, for a locked head)
    phase_weight: float = 1.0  # its instantaneous-frequency and group-delay terms, relative to its magnitude terms
    consistency_weight: float = 1.0  # its mel-consistency term (energy per mel band of the head's magnitude)
    adversarial: bool = False
    adv_weight: float = 0.1  # adversarial and feature-matching weights, relative to the spectral losses
    fm_weight: float = 0.2
    disc_width: int = 16
    model: dict = field(default_factory=dict)  # VocoderConfig overrides (dim, intermediate, layers, n_fft)

    FIXED = ("data", "audio", "batch_size", "segment_frames", "lr", "warmup", "weight_decay", "grad_clip",
             "ema_decay", "mel_weight", "stft_weight", "spectrum_weight", "phase_weight", "consistency_weight", "adversarial", "adv_weight", "fm_weight", "disc_width",
             "seed", "model", "steps")


class SpectralLoss(torch.nn.Module):
    """mel_weight * mel L1 + stft_weight * (spectral convergence + log-magnitude L1) on the waveform,
    + spectrum_weight * SpectrumLoss on the head's spectrum or magnitude (when one is given)."""

    def __init__(self, mel_cfg, mel_weight: float = 1.0, stft_weight: float = 1.0, spectrum_weight: float = 0.0,
                 vocoder: VocoderConfig | None = None, phase_weight: float = 1.0, consistency_weight: float = 0.0):
        super().__init__()
        self.mel, self.stft = MelL1Loss(mel_cfg), MultiResolutionSTFTLoss()
        self.mel_weight, self.stft_weight, self.spectrum_weight = mel_weight, stft_weight, spectrum_weight
        self.spectrum = (SpectrumLoss(vocoder.n_fft, vocoder.hop_length, phase_weight=phase_weight, mel=mel_cfg,
                                      mel_weight=consistency_weight) if vocoder is not None else None)

    @property
    def needs_audio(self) -> bool:
        return bool(self.mel_weight or self.stft_weight)

    def parts(self, est: torch.Tensor | None, ref: torch.Tensor, spec: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = {}
        if est is not None:
            sc, mag = self.stft(est, ref)
            out = {"mel_l1": self.mel(est, ref), "sc": sc, "logmag": mag}
        if self.spectrum is not None and spec is not None:
            out.update(self.spectrum.parts(spec, ref))
        return out

    def total(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = 0.0
        if "mel_l1" in p and self.needs_audio:
            loss = self.mel_weight * p["mel_l1"] + self.stft_weight * (p["sc"] + p["logmag"])
        if "spec_sc" in p and self.spectrum_weight:
            loss = loss + self.spectrum_weight * self.spectrum.total(p)
        return loss

    def forward(self, est: torch.Tensor | None, ref: torch.Tensor, spec: torch.Tensor | None = None) -> torch.Tensor:
        return self.total(self.parts(est, ref, spec))


def segment_positions(seed: int, step: int, batch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(stable_hash(seed, "vocoder-segments", step) % 2**63)
    return torch.randint(0, n, (batch,), generator=g)


def _grads_none(params) -> None:
    for p in params:
        p.grad = None


def train_vocoder(cfg: VocoderTrainConfig, progress: bool = True) -> dict:
    d = init_distributed(cfg.device)
    if cfg.batch_size % d.world:
        raise DittoError(f"--batch-size {cfg.batch_size} must be divisible by the {d.world} processes")
    if cfg.segment_frames < 8:
        raise DittoError(f"--segment-frames {cfg.segment_frames} is too short; give at least 8")
    if not (cfg.mel_weight or cfg.stft_weight or cfg.spectrum_weight):
        raise DittoError("every loss weight is 0 (--mel-weight, --stft-weight, --spectrum-weight): nothing to train")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = PairedSegments(cfg.data, cfg.audio, "train", cfg.segment_frames)
    try:
        val_ds = PairedSegments(cfg.data, cfg.audio, "val", cfg.segment_frames)
    except DittoError:
        log.warning("%s has no val renders: training without validation loss", ds.audio)
        val_ds = None
    vcfg = VocoderConfig.for_mel(ds.mel_cfg, **cfg.model)
    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = ConvNeXtVocoder(vcfg).to(d.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    modules = {"model": model, "ema": ema}
    groups = [{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    disc = None
    if cfg.adversarial:
        from dittomusic.audio.discriminators import Discriminators

        disc = Discriminators(width=cfg.disc_width).to(d.device)
        modules["disc"] = disc
        # one AdamW for both nets: each half-step leaves the other net's grads None, which AdamW skips
        groups.append({"params": list(disc.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.8, 0.99) if cfg.adversarial else (0.9, 0.99))
    counters, meta = resume(out / CKPT, cfg, VocoderTrainConfig.FIXED, modules, opt, d.device)
    if meta and meta.get("segments") != len(ds):
        raise DittoError(f"the paired audio in {ds.audio} changed since this run started "
                         f"({meta.get('segments')} -> {len(ds)} segment starts); use a new --out")
    net = ddp(model, d)
    dnet = ddp(disc, d) if disc is not None else None
    loss_fn = SpectralLoss(ds.mel_cfg, cfg.mel_weight, cfg.stft_weight, cfg.spectrum_weight, vcfg,
                           cfg.phase_weight, cfg.consistency_weight).to(d.device)
    locked = vcfg.phase == "locked"

    val_batch = None
    if d.main and val_ds is not None:
        n = min(cfg.val_clips, len(val_ds))
        pos = torch.linspace(0, len(val_ds) - 1, n).long()  # spread over the val renders, fixed
        val_batch = tuple(t.to(d.device) for t in val_ds.batch(pos))

    def checkpoint(cpu_seconds: float, wall_seconds: float):
        meta = {**asdict(counters), "cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds, "world": d.world,
                "train_config": asdict(cfg), "vocoder_config": vcfg.to_dict(), "segments": len(ds),
                "train_hours": round(ds.hours, 3)}
        write_checkpoint(out / CKPT, state_tensors(modules, opt), meta,
                         f"vocoder {vcfg.dim}x{vcfg.layers}, batch {cfg.batch_size} x {cfg.segment_frames} frames",
                         ylabel="mel L1 + MR-STFT (SC + log-mag)")

    @torch.no_grad()
    def val_loss() -> float:
        mel, audio = val_batch
        wav, spec = ema(mel, return_spectrum=True)
        parts = loss_fn.parts(wav, audio, spec.abs() if locked else spec)
        counters.history.append({"step": counters.step, **{f"val_{k}": float(v) for k, v in parts.items()}})
        return float(loss_fn.total(parts))

    per = cfg.batch_size // d.world

    def step_fn(step: int):
        pos = segment_positions(cfg.seed, step, cfg.batch_size, len(ds))[d.rank * per:(d.rank + 1) * per]
        mel, audio = (t.to(d.device) for t in ds.batch(pos))
        lr = set_lr(opt, lr_at(step, cfg.lr, cfg.warmup, cfg.steps))
        if loss_fn.needs_audio or disc is not None:
            fake, spec = net(mel, return_spectrum=True)
            spec = spec.abs() if locked else spec  # a locked head's phase is not learned
        elif locked:  # magnitude losses only: no phase, no inverse STFT
            fake, spec = None, net(mel, magnitude_only=True)
        else:
            fake, spec = None, net(mel, return_spectrum=True)[1]
        loss = loss_fn(fake, audio, spec)
        if disc is not None:
            from dittomusic.audio.discriminators import discriminator_loss, generator_losses

            opt.zero_grad(set_to_none=True)
            discriminator_loss(dnet(audio), dnet(fake.detach())).backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
            opt.step()  # the generator has no grads yet: only the discriminators move
            disc.requires_grad_(False)
            with torch.no_grad():
                real_feats = disc(audio)
            adv, fm = generator_losses(real_feats, disc(fake))
            disc.requires_grad_(True)
            loss = loss + cfg.adv_weight * adv + cfg.fm_weight * fm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if disc is not None:
            _grads_none(disc.parameters())
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, model, step, cfg.ema_decay)
        return loss, gnorm, lr

    model.train()
    run_steps(d, cfg, counters, step_fn, checkpoint, val_loss if val_batch is not None else None,
              progress=progress, desc="vocoder")
    return {**counters.summary(), "train_hours": round(ds.hours, 3)}


def export_vocoder(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                   weights: str = "ema", synthesis: dict | None = None) -> Path:
    """A run's generator (EMA by default) -> a release file (fp16 by default) that carries its config;
    `synthesis`: other values of the settings training never used (neural.INFERENCE_KEYS), chosen by measurement."""
    from dittomusic.audio.neural import with_synthesis
    from dittomusic.train.base import release_train_info

    run = Path(run)
    tensors, meta = load_tensors(run / CKPT if run.is_dir() else run)
    if "vocoder_config" not in meta:
        raise DittoError(f"{run} is not a vocoder training run")
    if weights not in ("ema", "model"):
        raise DittoError(f"weights must be ema or model, not {weights!r}")
    gen = {k[len(weights) + 1:]: v.to(dtype) for k, v in tensors.items() if k.startswith(weights + ".")}
    tc = meta["train_config"]
    vcfg = with_synthesis(meta["vocoder_config"], synthesis)
    release = {"kind": "vocoder", "vocoder_config": vcfg.to_dict(), "weights": weights,
               "train": {**release_train_info(meta), "segment_frames": tc["segment_frames"],
                         "train_hours": meta.get("train_hours"), "adversarial": tc["adversarial"],
                         "final_val_parts": next(({k: v for k, v in h.items() if k.startswith("val_") and k != "val_loss"}
                                                  for h in reversed(meta["history"]) if "val_mel_l1" in h), None)},
               "train_config": tc}
    return save_tensors(out, gen, release)
