"""`dittomusic train-autoencoder`: the mel VAE that latent diffusion works in.

Trained on random `crop_frames` windows of the training clips (the network is fully
convolutional, so short windows cost less and it still encodes whole clips). Same loop,
exact resume and checkpoints as the diffusion model (train/common.py): every draw is a pure
function of (seed, step).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.data.dataset import MelDataset
from dittomusic.errors import DittoError
from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder, reconstruction_loss
from dittomusic.train.base import _Batches, open_run
from dittomusic.train.common import (LoopConfig, adamw, ddp, ema_update, last_value, lr_at, optimizer_step, resume,
                                     run_steps, set_lr, state_tensors, write_checkpoint)
from dittomusic.utils import stable_hash

CKPT = "checkpoint.safetensors"
log = logging.getLogger("dittomusic.train")


@dataclass
class AETrainConfig(LoopConfig):
    data: str
    out: str
    steps: int = 6000
    batch_size: int = 32
    crop_frames: int = 128
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    kl_weight: float = 1e-4
    dt_weight: float = 1.0
    df_weight: float = 1.0
    model: dict = field(default_factory=dict)  # AutoencoderConfig overrides
    # Decoder fine-tuning: start from an exported autoencoder and freeze its encoder, so the latent
    # space (and every diffusion model trained in it) stays valid while the decoder gets sharper.
    init: str | None = None
    freeze_encoder: bool = False
    # Train only a new 2-D post-net (model.post_channels > 0) on top of the frozen init: the
    # cheapest way to add detail across mel bins to a finished autoencoder.
    freeze_decoder: bool = False
    # A mel PatchGAN (hinge + feature matching) against the blur that L1 losses leave behind.
    adversarial: bool = False
    adv_weight: float = 0.5  # relative to the reconstruction gradient (adaptive lambda), as in SD's VAE
    fm_weight: float = 0.0
    disc_width: int = 16
    # "critic": the realism C2ST's input (floored at -60 dB, plus the frame-to-frame change). Measured to fail:
    # what sinks below the floor escapes the discriminator, so the decoder sinks the background there.
    disc_view: str = "mel"
    # Decoded mels reach the discriminator with the init's texture noise, as generation renders them.
    adv_texture: bool = False
    # Latents the diffusion model generated (`dittomusic autoencoder samples`): their decodes are fakes
    # too, so the decoder learns to render the model's latents, not only encoded real ones, as real mels.
    gen_latents: str | None = None
    gen_batch: int = 8  # generated crops per step (global)
    # Train only a new texture network (model.texture_channels > 0) against the discriminators, encoder
    # and decoder frozen: no reconstruction term (the texture is random; its 5 x 5 local mean is zero).
    texture_gan: bool = False

    FIXED = ("data", "batch_size", "crop_frames", "lr", "warmup", "weight_decay", "grad_clip", "ema_decay",
             "kl_weight", "dt_weight", "df_weight", "seed", "model", "steps", "init", "freeze_encoder",
             "freeze_decoder", "adversarial", "adv_weight", "fm_weight", "disc_width", "disc_view", "adv_texture",
             "gen_latents", "gen_batch", "texture_gan")


def _crops(cfg: AETrainConfig, step: int, mel: torch.Tensor, ds_factor: int,
           latent_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (starts on the latent grid) and the posterior noise, drawn for the global batch."""
    g = torch.Generator().manual_seed(stable_hash(cfg.seed, "ae", step) % 2**63)
    n, m, f = mel.shape
    starts = torch.randint(0, (f - cfg.crop_frames) // ds_factor + 1, (n,), generator=g) * ds_factor
    noise = torch.randn((n, latent_channels, cfg.crop_frames // ds_factor), generator=g)
    idx = starts[:, None] + torch.arange(cfg.crop_frames)[None]
    return torch.gather(mel, 2, idx[:, None].expand(n, m, -1).to(mel.device)), noise


def ae_loss(model, mel: torch.Tensor, noise: torch.Tensor | None, cfg: AETrainConfig) -> tuple[torch.Tensor, dict]:
    rec, kl = model(mel, noise)
    parts = reconstruction_loss(rec, mel)
    loss = parts["l1"] + cfg.dt_weight * parts["dt"] + cfg.df_weight * parts["df"] + cfg.kl_weight * kl
    return loss, {**{k: float(v.detach()) for k, v in parts.items()}, "kl": float(kl.detach())}


def train_autoencoder(cfg: AETrainConfig, progress: bool = True) -> dict:
    d, out, ds = open_run(cfg)
    if cfg.crop_frames > ds.clip_frames:
        raise DittoError(f"--crop-frames {cfg.crop_frames} is longer than the dataset's {ds.clip_frames}-frame clips")
    init = None
    if cfg.init:
        init, init_meta = load_autoencoder(cfg.init)
        mcfg = AutoencoderConfig.from_dict({**init_meta["model_config"], **cfg.model})
        if mcfg.n_mels != ds[0]["mel"].shape[0]:
            raise DittoError(f"--init {cfg.init} takes {mcfg.n_mels} mel bins; {cfg.data} has {ds[0]['mel'].shape[0]}")
    else:
        mcfg = AutoencoderConfig(n_mels=ds[0]["mel"].shape[0], **cfg.model)
    if cfg.freeze_encoder and not cfg.init:
        raise DittoError("--freeze-encoder needs --init: an exported autoencoder whose encoder to keep")
    if cfg.freeze_decoder and not (cfg.freeze_encoder and mcfg.post_channels > 0):
        raise DittoError("--freeze-decoder trains only a 2-D post-net: it needs --freeze-encoder, --init and "
                         "--post-channels > 0")
    if cfg.crop_frames % mcfg.downsample:
        raise DittoError(f"--crop-frames must be a multiple of the autoencoder's downsampling ({mcfg.downsample})")
    if (cfg.gen_latents or cfg.adv_texture or cfg.disc_view != "mel") and not cfg.adversarial:
        raise DittoError("--gen-latents, --adv-texture and --disc-view shape the adversarial loss: add --adversarial")
    if cfg.texture_gan and not (cfg.init and cfg.freeze_encoder and cfg.adversarial and mcfg.texture_channels > 0):
        raise DittoError("--texture-gan trains a new texture network on a finished autoencoder: it needs --init, "
                         "--freeze-encoder, --adversarial and --texture-channels > 0")
    if mcfg.texture_channels > 0 and not cfg.texture_gan and not (init is not None and init.texture_net is not None):
        raise DittoError("--texture-channels adds a texture network, which only --texture-gan trains")
    if cfg.texture_gan and cfg.adv_texture:
        raise DittoError("--texture-gan trains the texture itself: drop --adv-texture")
    if cfg.adv_texture and not mcfg.texture_edges:
        raise DittoError("--adv-texture needs an --init whose decoder has calibrated texture noise "
                         "(`dittomusic autoencoder texture`)")
    gen_pool = _load_gen_latents(cfg, mcfg) if cfg.gen_latents else None
    try:
        val = MelDataset(cfg.data, "val", random_crop=False)
    except DittoError:
        val = None
    torch.manual_seed(cfg.seed)
    model = MelAutoencoder(mcfg).to(d.device)
    if init is not None:
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("post.", "texture_net.")) for k in missing):
            raise DittoError(f"--init {cfg.init} does not fit this autoencoder config (missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]}): --channels/--latent-channels must match")
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    if cfg.freeze_decoder or cfg.texture_gan:
        model.decoder.requires_grad_(False)
    if cfg.texture_gan and model.post is not None:
        model.post.requires_grad_(False)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    modules = {"model": model, "ema": ema}
    disc = None
    if cfg.adversarial:
        from dittomusic.audio.discriminators import MelDiscriminators

        disc = MelDiscriminators(cfg.disc_width, cfg.disc_view).to(d.device)
        modules["disc"] = disc
    if cfg.texture_gan:
        gen = model.texture_net
    elif cfg.freeze_decoder:
        gen = model.post
    elif cfg.freeze_encoder:
        gen = nn.ModuleList([model.decoder, *([model.post] if model.post else [])])
    else:
        gen = model
    trainable = nn.ModuleList([gen, *([disc] if disc else [])])
    opt = adamw(trainable, cfg.lr, cfg.weight_decay)
    counters, _ = resume(out / CKPT, cfg, AETrainConfig.FIXED, modules, opt, d.device)
    net = ddp(model.texture_net if cfg.texture_gan else model, d)
    dnet = ddp(disc, d) if disc is not None else None
    batches = _Batches(ds, cfg.seed)
    per = cfg.batch_size // d.world
    val_mel = None
    if d.main and val is not None:
        val_mel = _Batches(val, cfg.seed).get(range(min(cfg.val_clips, len(val))))["mel"].to(d.device)

    loss_label = ("texture network's hinge loss" if cfg.texture_gan else
                  "L1 + Δt + Δf (+ KL, + adversarial)" if cfg.adversarial else "L1 + Δt + Δf + KL")

    def checkpoint(cpu_seconds: float, wall_seconds: float):
        meta = {**asdict(counters), "cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds, "world": d.world,
                "train_config": asdict(cfg), "model_config": mcfg.to_dict()}
        write_checkpoint(out / CKPT, state_tensors(modules, opt), meta, f"MelAutoencoder, batch {cfg.batch_size}",
                         ylabel=loss_label)

    @torch.no_grad()
    def val_loss() -> float:
        return ae_loss(ema, val_mel, None, cfg)[0].item()

    def step_fn(step: int):
        g0 = step * cfg.batch_size
        mel = batches.get(range(g0, g0 + cfg.batch_size))["mel"]
        crops, noise = _crops(cfg, step, mel, mcfg.downsample, mcfg.latent_channels)
        sl = slice(d.rank * per, (d.rank + 1) * per)
        crops, noise = crops[sl].to(d.device), noise[sl].to(d.device)
        lr = set_lr(opt, lr_at(step, cfg.lr, cfg.warmup, cfg.steps))
        if disc is None:
            loss, _ = ae_loss(net, crops, noise, cfg)
        else:
            gen = None
            if gen_pool is not None:
                per_gen = max(1, cfg.gen_batch // d.world)
                gen = _gen_crops(cfg, step, gen_pool, mcfg.downsample)[d.rank * per_gen:(d.rank + 1) * per_gen]
                gen = gen.to(d.device) / mcfg.latent_scale
            tex = torch.Generator().manual_seed(stable_hash(cfg.seed, "ae_texture", step, d.rank) % 2**63)
            step_of = _texture_step if cfg.texture_gan else _adversarial_step
            loss = step_of(net, dnet, disc, opt, crops, noise, cfg, model, gen, tex)
        gnorm = optimizer_step(loss, trainable, opt, cfg.grad_clip)
        ema_update(ema, model, step, cfg.ema_decay)
        return loss, gnorm, lr

    model.train()
    run_steps(d, cfg, counters, step_fn, checkpoint, val_loss if val_mel is not None else None,
              progress=progress, desc="autoencoder")
    return counters.summary()


def _load_gen_latents(cfg: AETrainConfig, mcfg: AutoencoderConfig) -> torch.Tensor:
    tensors, meta = load_tensors(cfg.gen_latents)
    if meta.get("kind") != "latent_samples" or "latents" not in tensors:
        raise DittoError(f"--gen-latents {cfg.gen_latents} is not a file of `dittomusic autoencoder samples`")
    z = tensors["latents"].float()
    if z.shape[1] != mcfg.latent_channels or meta.get("latent_scale") != mcfg.latent_scale:
        raise DittoError(f"--gen-latents {cfg.gen_latents} holds {z.shape[1]}-channel latents at scale "
                         f"{meta.get('latent_scale')}; this autoencoder's are {mcfg.latent_channels} at "
                         f"{mcfg.latent_scale}: sample them from a model that works in this --init's latent")
    if z.shape[-1] < cfg.crop_frames // mcfg.downsample:
        raise DittoError(f"--gen-latents {cfg.gen_latents}: {z.shape[-1]} latent frames, shorter than a crop")
    return z


def _gen_crops(cfg: AETrainConfig, step: int, pool: torch.Tensor, ds_factor: int) -> torch.Tensor:
    """The step's crops of generated latents (global batch; scaled, as sampled)."""
    g = torch.Generator().manual_seed(stable_hash(cfg.seed, "ae_gen", step) % 2**63)
    n, w = cfg.gen_batch, cfg.crop_frames // ds_factor
    idx = torch.randint(len(pool), (n,), generator=g)
    starts = torch.randint(pool.shape[-1] - w + 1, (n,), generator=g)
    return torch.stack([pool[i, :, s:s + w] for i, s in zip(idx.tolist(), starts.tolist())])


def _adversarial_step(net, dnet, disc, opt, mel, noise, cfg: AETrainConfig, model: MelAutoencoder | None = None,
                      gen: torch.Tensor | None = None, tex: torch.Generator | None = None) -> torch.Tensor:
    """Update the discriminators on real mels against decoded ones, then return the generator's loss
    for the caller's optimizer step: reconstruction + lambda * adv_weight * hinge (+ feature matching).
    The decoded fakes are the reconstructions, plus decodes of generated latents `gen` (unscaled) if
    given, with the texture noise added if cfg.adv_texture (drawn from `tex`).

    lambda balances the two gradients at the decoder's last layer (taming-transformers' VQGAN and
    Stable Diffusion's VAE), so one adv_weight holds across loss scales and training stages."""
    from dittomusic.audio.discriminators import adversarial_loss, discriminator_loss, generator_losses

    rec, kl = net(mel, noise)
    fake = rec
    if gen is not None:
        fake = torch.cat([rec, model._decode(gen)])
    if cfg.adv_texture:
        fake = model.add_texture(fake, tex)
    opt.zero_grad(set_to_none=True)
    discriminator_loss(dnet(mel), dnet(fake.detach())).backward()
    torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
    opt.step()  # only the discriminators have grads here
    opt.zero_grad(set_to_none=True)
    disc.requires_grad_(False)
    fake_feats = disc(fake)
    adv, fm = adversarial_loss(fake_feats), 0.0
    if cfg.fm_weight:  # paired: the reconstructions' features against their originals'
        with torch.no_grad():
            real = disc(mel)
        fm = generator_losses(real, [[f[:len(rec)] for f in feats] for feats in fake_feats])[1]
    disc.requires_grad_(True)
    parts = reconstruction_loss(rec, mel)
    rec_loss = parts["l1"] + cfg.dt_weight * parts["dt"] + cfg.df_weight * parts["df"] + cfg.kl_weight * kl
    last = getattr(net, "module", net).last_layer()
    g_rec = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
    lam = (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()
    return rec_loss + lam * cfg.adv_weight * adv + cfg.fm_weight * fm


def _texture_step(tnet, dnet, disc, opt, mel, noise, cfg: AETrainConfig, model: MelAutoencoder,
                  gen: torch.Tensor | None = None, tex: torch.Generator | None = None) -> torch.Tensor:
    """The texture network's adversarial step: fakes are the frozen decoder's mean decodes of the real
    crops' posterior means (and of generated latents `gen`, unscaled) plus the network's texture, clamped
    to the mel range as generation clamps it; real crops are the reals. Updates the discriminators and
    returns the texture network's hinge loss. (`noise`, the posterior sample, is unused: generation
    decodes latents as sampled, the texture supplies the randomness.)"""
    from dittomusic.audio.discriminators import adversarial_loss, discriminator_loss

    with torch.no_grad():
        mean = model._decode(model.posterior(mel)[0])
        if gen is not None:
            mean = torch.cat([mean, model._decode(gen)])
        mean = mean.clamp(-1, 1)
    b, f, t = mean.shape
    eps = torch.randn((b, model.texture_net.noise_channels, f, t), generator=tex).to(mean)
    fake = (mean + tnet(mean, eps)).clamp(-1, 1)
    opt.zero_grad(set_to_none=True)
    discriminator_loss(dnet(mel), dnet(fake.detach())).backward()
    torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    disc.requires_grad_(False)
    adv = adversarial_loss(disc(fake))
    disc.requires_grad_(True)
    return adv


@torch.no_grad()
def latent_scale(ae: MelAutoencoder, data: str | Path, clips: int = 256, seed: int = 0, batch: int = 32) -> float:
    """1 / std of the (unscaled) latent means of `clips` training clips."""
    ds = MelDataset(data, "train", random_crop=False)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:clips].tolist()
    dev = next(ae.parameters()).device
    zs = [ae.posterior(torch.stack([ds[i]["mel"] for i in idx[s:s + batch]]).to(dev))[0].cpu()
          for s in range(0, len(idx), batch)]
    return float(1.0 / torch.cat(zs).std())


TEXTURE_EDGES = [-0.75, -0.5, -0.25]  # decoded levels (scaled units: -1 = -120 dB .. 1 = +40 dB), 20 dB apart
TEXTURE_CLIP_DB = 6.0  # frame-to-frame steps beyond this are onsets and releases, not jitter


@torch.no_grad()
def calibrate_texture(ae: MelAutoencoder, mels: torch.Tensor, edges=TEXTURE_EDGES, clip_db: float = TEXTURE_CLIP_DB,
                      db_per_unit: float = 80.0, batch: int = 16) -> torch.Tensor:
    """The texture noise's std [n_mels, len(edges) + 1] (scaled units) that restores the frame-to-frame
    variance the mean decoder loses: per bin and decoded-level bucket, sqrt(max(0, E[dt_real^2] -
    E[dt_decoded^2]) / 2), since i.i.d. noise of std s adds 2 s^2 to the variance of a frame
    difference. Steps are clipped at +-clip_db so that onsets do not count as jitter."""
    if not len(mels):
        raise DittoError("texture calibration needs at least one clip")
    dev = next(ae.parameters()).device
    lim = clip_db / db_per_unit
    e = torch.tensor(list(edges), dtype=torch.float32)
    n_lv = len(e) + 1
    sums = torch.zeros(3, mels.shape[1], n_lv, dtype=torch.float64)  # count, real, decoded
    for s in range(0, len(mels), batch):
        real = mels[s:s + batch].float()
        rec = ae.decode(ae.encode(real.to(dev)), texture=False).clamp(-1, 1).cpu()
        dr, dc = (x.diff(dim=-1).clamp(-lim, lim).square() for x in (real, rec))
        lv = torch.bucketize(0.5 * (rec[..., 1:] + rec[..., :-1]), e)
        for k in range(n_lv):
            w = (lv == k).double()
            sums[0, :, k] += w.sum((0, 2))
            sums[1, :, k] += (dr * w).sum((0, 2))
            sums[2, :, k] += (dc * w).sum((0, 2))
    n = sums[0].clamp_min(1)
    return ((sums[1] - sums[2]) / n / 2).clamp_min(0).sqrt().float()


def add_texture(path: str | Path, data: str | Path, out: str | Path, clips: int = 480, seed: int = 0,
                device=None) -> tuple[Path, dict]:
    """Calibrate the texture noise of an autoencoder (an exported one, or a latent model's release
    that carries one) on `clips` random training clips and write a copy of the file with it."""
    from dittomusic.models.loading import AE_PREFIX

    tensors, meta = load_tensors(path)
    if meta.get("kind") not in ("base", "autoencoder") or (meta["kind"] == "base" and "autoencoder" not in meta):
        raise DittoError(f"{path} is neither an exported autoencoder nor a latent model's release")
    ae, _ = load_autoencoder(path, device)  # calibrate_texture reads its mean decoder, whatever texture it has
    ds = MelDataset(data, "train", random_crop=False)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:clips].tolist()
    std = calibrate_texture(ae, torch.stack([ds[i]["mel"] for i in idx]))
    info = {"clips": len(idx), "seed": seed, "data": str(data), "clip_db": TEXTURE_CLIP_DB,
            "std_db_per_level": [round(float(v) * 80.0, 3) for v in std.mean(0)]}
    dtype = next(iter(tensors.values())).dtype
    ae_meta, prefix = (meta["autoencoder"], AE_PREFIX) if meta["kind"] == "base" else (meta, "")
    ae_meta["model_config"]["texture_edges"] = list(TEXTURE_EDGES)
    ae_meta["texture"] = info
    tensors[prefix + "texture_std"] = std.to(dtype)
    return save_tensors(out, tensors, meta), info


@torch.no_grad()
def sample_latents(model: str | Path | None, data: str | Path, out: str | Path, clips: int = 512, seed: int = 0,
                   steps: int = 20, batch: int = 16, device=None, progress: bool = True) -> Path:
    """Latents a latent diffusion model generates at its default sampler and guidance, conditioned on the
    tags of random training clips: the fakes of a decoder fine-tune (AETrainConfig.gen_latents) that
    teaches the decoder to render the model's own latents as real mels. Written to `out` with the
    model's latent scale, so training can refuse a pool from another latent space."""
    from tqdm.auto import tqdm

    from dittomusic.generate import Pipeline, Tags
    from dittomusic.sampling.samplers import get_sampler

    pipe = Pipeline(model, device=device, vocoder="griffinlim")
    ae = getattr(pipe.model, "ae", None)
    if ae is None:
        raise DittoError(f"{model or 'the bundled model'} is not a latent model: it has no latents to sample")
    b, sm = pipe.backend, pipe.sampling
    ds = MelDataset(data, "train", random_crop=False)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:clips].tolist()
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"])
            for r in (ds.rows[i] for i in idx)]
    out_z = []
    for s in tqdm(range(0, len(tags), batch), desc="sampling latents", unit="batch", disable=not progress):
        k = min(batch, len(tags) - s)
        fn = b.model_fn(b.make_cond(tags[s:s + k], k), sm["guidance"])
        out_z.append(get_sampler(sm["sampler"])(fn, b.noise(k, b.clip_frames, seed * 1_000_003 + s), b.schedule,
                                                steps, prediction=b.prediction).float().cpu())
    meta = {"kind": "latent_samples", "model": str(pipe.model_file), "model_digest": pipe.model_digest,
            "latent_scale": ae.cfg.latent_scale, "sampler": sm["sampler"], "guidance": sm["guidance"],
            "steps": steps, "seed": seed, "clips": len(idx), "data": str(data)}
    return save_tensors(out, {"latents": torch.cat(out_z)}, meta)


def export_autoencoder(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                       data: str | Path | None = None) -> Path:
    """EMA weights of an autoencoder run -> a release file; sets latent_scale from the run's data."""
    tensors, meta = load_tensors(Path(run) / CKPT)
    mcfg = AutoencoderConfig.from_dict(meta["model_config"])
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    ae = MelAutoencoder(mcfg)
    ae.load_state_dict({k: v.float() for k, v in ema.items()})
    if not meta["train_config"].get("freeze_encoder"):  # a decoder fine-tune keeps its init's latents exactly
        mcfg.latent_scale = latent_scale(ae.eval(), data or meta["train_config"]["data"])
    hist = meta["history"]
    release = {"kind": "autoencoder", "model_config": mcfg.to_dict(), "train_config": meta["train_config"],
               "train": {"steps": meta["step"], "cpu_hours": round(meta["cpu_seconds"] / 3600, 3),
                         "wall_hours": round(meta["wall_seconds"] / 3600, 3),
                         "final_loss": last_value(hist, "loss"), "final_val_loss": last_value(hist, "val_loss")}}
    return save_tensors(out, {k: v.to(dtype) for k, v in ema.items()}, release)


def autoencoder_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """An autoencoder's weights and metadata (kind "autoencoder") from an exported autoencoder, a
    training checkpoint of one, or a latent model's release (which carries its autoencoder)."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") == "base" and isinstance(meta.get("autoencoder"), dict):
        from dittomusic.models.loading import AE_PREFIX

        tensors = {k[len(AE_PREFIX):]: v for k, v in tensors.items() if k.startswith(AE_PREFIX)}
        return tensors, {**meta["autoencoder"], "kind": "autoencoder"}
    if meta.get("kind") == "autoencoder":
        return tensors, meta
    if "ema.encoder.0.weight" in tensors:  # a training checkpoint
        return {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, {**meta, "kind": "autoencoder"}
    raise DittoError(f"{path} is not a dittomusic autoencoder (kind {meta.get('kind')!r})")


def check_same_latents(old: tuple[dict, dict], new: tuple[dict, dict], old_name, new_name) -> None:
    """Refuse an autoencoder whose encoder or latent scale differs from the one a model learned its latents in."""
    (ot, om), (nt, nm) = old, new
    enc = sorted(k for k in ot if k.startswith("encoder."))
    same = enc == sorted(k for k in nt if k.startswith("encoder.")) and all(
        torch.equal(ot[k].float(), nt[k].float()) for k in enc)
    if not same or nm["model_config"].get("latent_scale") != om["model_config"].get("latent_scale"):
        raise DittoError(f"{new_name} has a different encoder or latent scale than {old_name}: "
                         "the model's latents would decode wrongly (fine-tune with --freeze-encoder)")


def swap_autoencoder(model: str | Path, autoencoder: str | Path, out: str | Path) -> Path:
    """A copy of a latent model's release with another autoencoder (a decoder fine-tune of its own: same encoder
    and latent scale), for when the denoiser's run folder is gone. Everything else (denoiser, sampling
    defaults, compute record) is kept; texture noise comes from the new autoencoder (none unless calibrated)."""
    from dittomusic.models.loading import AE_PREFIX

    tensors, meta = load_tensors(model)
    if meta.get("kind") != "base" or not isinstance(meta.get("autoencoder"), dict):
        raise DittoError(f"{model} is not a latent model's release: only those carry an autoencoder to swap")
    old = autoencoder_tensors(model)
    new = autoencoder_tensors(autoencoder)
    check_same_latents(old, new, f"the autoencoder in {model}", autoencoder)
    dtype = next(iter(old[0].values())).dtype
    tensors = {k: v for k, v in tensors.items() if not k.startswith(AE_PREFIX)}
    tensors.update({f"{AE_PREFIX}{k}": v.to(dtype) for k, v in new[0].items()})
    meta = {**meta, "autoencoder": {"model_config": new[1]["model_config"], "train": new[1].get("train", {}),
                                    "swapped_from": str(autoencoder)}}
    return save_tensors(out, tensors, meta)


def load_autoencoder(path: str | Path, device=None) -> tuple[MelAutoencoder, dict]:
    from dittomusic.utils import resolve_device

    tensors, meta = autoencoder_tensors(path)
    ae = MelAutoencoder(AutoencoderConfig.from_dict(meta["model_config"]))
    try:
        ae.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as e:
        raise DittoError(f"{path} does not match its own autoencoder config: {str(e)[:300]}") from None
    return ae.to(resolve_device(device)).eval().requires_grad_(False), meta
