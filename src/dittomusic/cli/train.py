"""`dittomusic train`, `export`, `autoencoder` and `distill`: training the models."""

from __future__ import annotations

import json
import os

import click

from dittomusic.errors import DittoError

from .core import FINITE, FiniteFloat, cli, friendly, int_list


@cli.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumes if it holds a checkpoint).")
@click.option("--steps", type=click.IntRange(min=1), default=12000, show_default=True, help="Length of the LR schedule.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Global batch size.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--max-minutes", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--ckpt-minutes", type=FiniteFloat(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--width", type=click.IntRange(min=8), default=None, help="Model width [default: 256].")
@click.option("--depth", type=click.IntRange(min=1), default=None, help="Transformer blocks [default: 8].")
@click.option("--heads", type=click.IntRange(min=1), default=None, help="Attention heads [default: 4].")
@click.option("--patch-frames", type=click.IntRange(min=1), default=None, help="Frames per token [default: 4].")
@click.option("--denoise-head", type=click.IntRange(min=0), default=None,
              help="Hidden size of the per-token denoising head, 0 = none [default: 1024].")
@click.option("--prediction", type=click.Choice(["v_prediction", "epsilon"]), default=None,
              help="Network target [default: v_prediction].")
@click.option("--arch", type=click.Choice(["dit", "unet1d"]), default="dit", show_default=True,
              help="dit: MelDiT (patch transformer); unet1d: MelUNet (1-D conv UNet, mel bins as channels).")
@click.option("--channels", default=None, help="unet1d: channels per level, e.g. 192,256,384,512.")
@click.option("--blocks", type=click.IntRange(min=1), default=None, help="unet1d: residual blocks per level [default: 2].")
@click.option("--autoencoder", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An exported MelAutoencoder: train a latent diffusion model in its latent.")
@click.option("--timesteps", type=click.Choice(["uniform", "lognormal", "mixed"]), default="uniform", show_default=True,
              help="Training noise levels: uniform over the 1000 steps, EDM's log-normal in sigma, or mixed "
                   "(each sample from either, even odds).")
@click.option("--max-cpu-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) once the run has used this much CPU time, over all processes and resumes.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from a release's weights (e.g. the bundled model) with a fresh optimizer and LR schedule. "
                   "The architecture options must match it; a latent release also serves as --autoencoder.")
@click.option("--latent-cache", type=click.Path(exists=True, file_okay=False), default=None,
              help="Latent models: the crops' latents from `dittomusic autoencoder cache` (skips the encoder each step).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: forward pass under bfloat16 autocast (2.2x faster on CPUs with AVX512-BF16).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def train(data, out, steps, batch_size, lr, warmup, max_minutes, ckpt_minutes, val_every, log_every, width, depth, heads,
          patch_frames, denoise_head, prediction, arch, channels, blocks, autoencoder, timesteps, max_cpu_hours, init,
          latent_cache, precision, seed, device):
    """Train the base diffusion model. Multi-process: torchrun --nproc_per_node 2 -m dittomusic train ..."""
    from dittomusic.models import ARCHS
    from dittomusic.train.base import TrainConfig, train as run

    channels = int_list(channels, "--channels", "192,256,384,512")
    model = {k: v for k, v in dict(width=width, depth=depth, heads=heads, patch_frames=patch_frames,
                                   denoise_head=denoise_head, prediction=prediction, channels=channels,
                                   blocks=blocks).items() if v is not None}
    wrong = [k for k in model if k not in ARCHS[arch][0].__dataclass_fields__]
    if wrong:
        raise DittoError(f"--{wrong[0].replace('_', '-')} does not apply to --arch {arch}")
    cfg = TrainConfig(data=data, out=out, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                      max_minutes=max_minutes, ckpt_minutes=ckpt_minutes, val_every=val_every, log_every=log_every, seed=seed,
                      device=device, model=model, arch=arch, autoencoder=autoencoder, timesteps=timesteps,
                      max_cpu_hours=max_cpu_hours, init=init,
                      latent_cache=latent_cache, precision=precision)
    res = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Release checkpoint to write.")
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@click.option("--autoencoder", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Latent models: embed this autoencoder instead of the run's, e.g. one whose decoder was "
                   "fine-tuned with --freeze-encoder (its encoder must be the run's, weight for weight).")
@friendly
def export(run, out, fp32, autoencoder):
    """Export a run's EMA weights as a release checkpoint (safetensors, carries its config)."""
    import torch

    from dittomusic.train.base import export_release

    p = export_release(run, out, torch.float32 if fp32 else torch.float16, autoencoder)
    click.echo(f"wrote {p}")


@cli.group()
def autoencoder() -> None:
    """The mel autoencoder that latent diffusion models work in."""


@autoencoder.command("train")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumes if it holds a checkpoint).")
@click.option("--steps", type=click.IntRange(min=1), default=6000, show_default=True, help="Length of the LR schedule.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Global batch size.")
@click.option("--crop-frames", type=click.IntRange(min=4), default=128, show_default=True,
              help="Training window in mel frames (the network is fully convolutional).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--latent-channels", type=click.IntRange(min=1), default=None, help="Latent channels [default: 64].")
@click.option("--channels", default=None, help="Channels per level, e.g. 128,192,256 (time halves per level).")
@click.option("--kl-weight", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from this exported autoencoder (its config; --channels/--latent-channels must match).")
@click.option("--freeze-encoder", is_flag=True,
              help="Train the decoder only (needs --init): the latent space, and diffusion models trained in it, "
                   "stay valid.")
@click.option("--post-channels", type=click.IntRange(min=1), default=None,
              help="Add a 2-D post-net of this width over (mel bin, frame) after the decoder [default: none].")
@click.option("--freeze-decoder", is_flag=True,
              help="Train the new post-net only (needs --freeze-encoder, --init and --post-channels).")
@click.option("--adversarial", is_flag=True, help="Add a mel PatchGAN (hinge loss) to the losses.")
@click.option("--adv-weight", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Adversarial weight, relative to the reconstruction gradient at the decoder's last layer.")
@click.option("--disc-view", type=click.Choice(["mel", "critic"]), default="mel", show_default=True,
              help="What the discriminators read: the log-mel, or the realism C2ST's input (floored at -60 dB "
                   "of the peak, plus the frame-to-frame change; the decoder learns to sink the background "
                   "below that floor, see docs/base_model/v2).")
@click.option("--adv-texture", is_flag=True,
              help="Decoded mels reach the discriminators with the --init's calibrated texture noise.")
@click.option("--gen-latents", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Latents the diffusion model generated (`dittomusic autoencoder samples`): their decodes "
                   "are fakes too, so the decoder learns to render the model's latents as real mels.")
@click.option("--gen-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Generated-latent crops per step (with --gen-latents).")
@click.option("--texture-channels", type=click.IntRange(min=1), default=None,
              help="Add a texture network of this width: stochastic fine detail (5 x 5 high-passed) that replaces "
                   "the Gaussian texture [default: none].")
@click.option("--texture-gan", is_flag=True,
              help="Train the new texture network only, adversarially (needs --init, --freeze-encoder, "
                   "--adversarial and --texture-channels).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--max-cpu-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop once the run has used this much CPU time, over all processes and resumes.")
@click.option("--ckpt-minutes", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def autoencoder_train(data, out, steps, batch_size, crop_frames, lr, latent_channels, channels, kl_weight, init,
                      freeze_encoder, post_channels, freeze_decoder, adversarial, adv_weight, disc_view, adv_texture,
                      gen_latents, gen_batch, texture_channels, texture_gan, max_minutes, max_cpu_hours, ckpt_minutes,
                      val_every, seed, device):
    """Train the mel VAE. Multi-process: torchrun --nproc_per_node 2 -m dittomusic autoencoder train ..."""
    from dittomusic.train.autoencoder import AETrainConfig, train_autoencoder

    model = {}
    if latent_channels is not None:
        model["latent_channels"] = latent_channels
    if channels is not None:
        model["channels"] = int_list(channels, "--channels", "128,192,256")
    if post_channels is not None:
        model["post_channels"] = post_channels
    if texture_channels is not None:
        model["texture_channels"] = texture_channels
    cfg = AETrainConfig(data=data, out=out, steps=steps, batch_size=batch_size, crop_frames=crop_frames, lr=lr,
                        kl_weight=kl_weight, init=init, freeze_encoder=freeze_encoder, freeze_decoder=freeze_decoder,
                        adversarial=adversarial, adv_weight=adv_weight, disc_view=disc_view,
                        adv_texture=adv_texture, gen_latents=gen_latents, gen_batch=gen_batch, texture_gan=texture_gan,
                        max_minutes=max_minutes,
                        max_cpu_hours=max_cpu_hours,
                        ckpt_minutes=ckpt_minutes, val_every=val_every, seed=seed, device=device, model=model)
    res = train_autoencoder(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@autoencoder.command("cache")
@click.option("--ae", "ae_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The autoencoder (or latent release) the diffusion model trains in.")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Cache folder (resumes if partial).")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Crops per clip: those of training epochs 0..N-1 (later epochs reuse them cyclically).")
@click.option("--seed", type=int, default=0, show_default=True, help="The training run's seed (it sets the crops).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def autoencoder_cache(ae_path, data, out, epochs, seed, device):
    """Encode the training crops once, for `dittomusic train --latent-cache` (the encoder's forward
    pass is then no longer part of every training step)."""
    from dittomusic.train.latents import build_latent_cache

    click.echo(f"wrote {build_latent_cache(ae_path, data, out, epochs, seed, device=device)}")


@autoencoder.command("samples")
@click.argument("model", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="A built dataset folder: the tags come from its random training clips.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .safetensors file to write.")
@click.option("--clips", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def autoencoder_samples(model, data, out, clips, steps, seed, device):
    """Latents that a latent MODEL (default: the bundled one) generates at its default sampler and guidance,
    for `autoencoder train --gen-latents` (a decoder fine-tune that renders them as real mels)."""
    from dittomusic.train.autoencoder import sample_latents

    click.echo(f"wrote {sample_latents(model, data, out, clips, seed, steps, device=device)}")


@autoencoder.command("texture")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write (a copy of MODEL).")
@click.option("--clips", type=click.IntRange(min=8), default=480, show_default=True, help="Training clips to calibrate on.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def autoencoder_texture(model, data, out, clips, seed, device):
    """Calibrate the decoder's texture noise (the frame-to-frame jitter a mean decoder loses) on
    training clips and write a copy of MODEL (an exported autoencoder or a latent model) with it."""
    from dittomusic.train.autoencoder import add_texture

    p, info = add_texture(model, data, out, clips, seed, device)
    click.echo(f"wrote {p}: texture std per decoded level (dB) {info['std_db_per_level']}")


@autoencoder.command("swap")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("autoencoder_file", metavar="AUTOENCODER", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write (a copy of MODEL).")
@friendly
def autoencoder_swap(model, autoencoder_file, out):
    """Write a copy of a latent MODEL whose autoencoder is AUTOENCODER: a decoder fine-tune with the same
    encoder (e.g. a post-net run), when the denoiser's run folder is gone. Recalibrate its texture after."""
    from dittomusic.train.autoencoder import swap_autoencoder

    click.echo(f"wrote {swap_autoencoder(model, autoencoder_file, out)}")


@autoencoder.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Release file to write.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Dataset for the latent scale [default: the run's].")
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@friendly
def autoencoder_export(run, out, data, fp32):
    """Export a run's EMA weights, with the latent scale measured on training clips."""
    import torch

    from dittomusic.train.autoencoder import export_autoencoder

    p = export_autoencoder(run, out, torch.float32 if fp32 else torch.float16, data)
    click.echo(f"wrote {p}")


# --------------------------------------------------------------------------- distillation

@cli.group(invoke_without_command=True, subcommand_metavar="[export RUN OUT]")
@click.option("--kind", type=click.Choice(["cd", "ctd"]), default=None,
              help="cd: consistency distillation; ctd: consistency trajectory distillation (CTM).")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="The dataset the teacher was trained on.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder (resumes if it holds a checkpoint).")
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Teacher checkpoint [default: the bundled base model].")
@click.option("--init", type=click.Path(exists=True), default=None,
              help="Continue from a student of the same teacher and kind (a release or a run folder's EMA) with a "
                   "fresh optimizer and LR schedule.")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True, help="Length of the LR schedule.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Global batch size.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--guidance", type=FINITE, default=3.0, show_default=True, help="CFG scale baked into the student.")
@click.option("--grid-steps", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="DDIM (trailing) steps of the teacher's grid.")
@click.option("--teacher-steps", type=click.IntRange(min=1), default=4, show_default=True,
              help="CTD: most teacher steps from t to u.")
@click.option("--target-decay", type=FiniteFloat(min=0, max=1), default=0.95, show_default=True,
              help="EMA decay of the target network theta^-.")
@click.option("--ema-decay", type=FiniteFloat(min=0, max=1), default=0.999, show_default=True,
              help="Largest EMA decay of the exported student. The warm-up decay (1+n)/(10+n) is used while it is "
                   "smaller (it reaches 0.999 at step 8990), so in a shorter run this setting changes nothing.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: every pass under bfloat16 autocast (2.4x faster on a CPU with native bf16; "
                   "benchmarks/distill_step_time.py).")
@click.option("--max-minutes", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--ckpt-minutes", type=FiniteFloat(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--val-clips", type=click.IntRange(min=0), default=16, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@click.pass_context
@friendly
def distill(ctx, kind, data, out, teacher, init, steps, batch_size, lr, warmup, guidance, grid_steps, teacher_steps,
            target_decay, ema_decay, precision, max_minutes, ckpt_minutes, val_every, val_clips, log_every, seed, device):
    """Distill the base model into a one-pass student (guidance baked in), or `distill export RUN OUT`.

    Multi-process: torchrun --nproc_per_node 2 -m dittomusic distill --kind cd ...
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [n for n, v in (("--kind", kind), ("--data", data), ("--out", out)) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use `distill export RUN OUT`)")
    from dittomusic.distill import DistillConfig, distill as run

    res = run(DistillConfig(kind=kind, data=data, out=out, teacher=teacher, init=init, steps=steps, batch_size=batch_size, lr=lr,
                            warmup=warmup, guidance=guidance, grid_steps=grid_steps, teacher_steps=teacher_steps,
                            target_decay=target_decay, ema_decay=ema_decay, precision=precision,
                            max_minutes=max_minutes, ckpt_minutes=ckpt_minutes,
                            val_every=val_every, val_clips=val_clips, log_every=log_every, seed=seed, device=device))
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@distill.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Choice(["ema", "target", "model"]), default="ema", show_default=True,
              help="Which of the run's students: slow EMA, the target network theta^-, or the online weights.")
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@friendly
def distill_export(run, out, weights, fp32):
    """Export a distillation run's student as a release checkpoint (config, kind, guidance in its metadata)."""
    import torch

    from dittomusic.distill import export_student

    click.echo(f"wrote {export_student(run, out, torch.float32 if fp32 else torch.float16, weights)}")
