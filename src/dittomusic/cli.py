"""The `dittomusic` command."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
from pathlib import Path

import click

from dittomusic import __version__
from dittomusic.errors import DittoError


def _friendly(fn):
    """Turn user-fixable errors into one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except DittoError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity, which click's FLOAT and FloatRange let
    through ("--guidance nan" used to run and write audio). Optional bounds as FloatRange."""

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False) -> None:
        super().__init__(min=min, max=max, min_open=min_open, max_open=max_open)
        self.name = "float" if min is None and max is None else "float range"

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            rng = self._describe_range()
            self.fail(f"{value!r} is not a finite number; give a real number"
                      + (f" in the range {rng}" if rng else "") + " (NaN and infinity are not accepted).", param, ctx)
        return super().convert(rv, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


FINITE = FiniteFloat()


def _int_list(value: str | None, option: str, example: str) -> list[int] | None:
    """A comma-separated list of positive integers, or a clear error."""
    if value is None:
        return None
    try:
        out = [int(c) for c in value.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise DittoError(f"{option} {value!r}: give comma-separated positive integers, e.g. {example}")
    return out


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dittomusic")
@click.option("-v", "--verbose", is_flag=True, help="More logging.")
def cli(verbose: bool) -> None:
    """dittomusic: controllable music generation by optimizing diffusion noise latents."""
    _setup_logging(verbose)


# --------------------------------------------------------------------------- dataset

@cli.group()
def dataset() -> None:
    """Build and inspect the rendered-score mel dataset."""


@dataset.command("build")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (resumes if it exists).")
@click.option("--source", type=click.Path(), default=None,
              help="Folder of your MIDI/MusicXML/ABC/Humdrum files (default: music21's bundled corpus).")
@click.option("--collection", default=None, help="Collection tag for --source files (default: their subfolder name).")
@click.option("--small", is_flag=True, help="A ~10-minute dataset for tests and demos (under a minute to build).")
@click.option("--hours", type=FiniteFloat(min=0.01), default=None,
              help="Total hours to render, split evenly across collections [default: 30, --small: 0.15].")
@click.option("--max-seconds", type=FiniteFloat(min=6.0), default=None,
              help="Longest render per piece and arrangement [default: 60, --small: 20].")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes (0 = one per CPU core; 1 = in-process).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for arrangements and splits.")
@click.option("--soundfont", type=click.Path(), default=None,
              help="General MIDI .sf2 file [default: Debian's FluidR3_GM.sf2].")
@_friendly
def dataset_build(out, source, collection, small, hours, max_seconds, workers, seed, soundfont):
    """Render scores with FluidSynth into log-mel shards with one metadata row per ~6 s clip."""
    from dittomusic.data.build import BuildConfig, build_dataset
    from dittomusic.utils import format_bytes

    kw = {k: v for k, v in dict(source=source, collection=collection, hours=hours, max_seconds=max_seconds,
                                workers=workers, seed=seed, soundfont=soundfont).items() if v is not None}
    cfg = BuildConfig.small(out, **kw) if small else BuildConfig(out=out, **kw)
    s = build_dataset(cfg)
    click.echo(f"{s['clips']} clips, {s['hours']:.2f} h from {s['pieces']} pieces ({s['skipped']} skipped) "
               f"in {s['last_run_seconds']:.0f} s; {format_bytes(s['disk_bytes'])} in {out}")
    for k, v in s["hours_per_collection"].items():
        click.echo(f"  {k:<26} {v:7.2f} h")
    click.echo("  splits: " + ", ".join(f"{k} {v:.2f} h" for k, v in s["hours_per_split"].items()))


@dataset.command("stats")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Where to write example spectrograms [default: ROOT/examples.png].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the stats as JSON.")
@_friendly
def dataset_stats_cmd(root, png, json_out):
    """Print hours per collection, instrument family, split, tempo and mode; plot examples."""
    from dittomusic.data.stats import dataset_stats, format_stats, plot_examples
    from dittomusic.utils import atomic_write_text

    st = dataset_stats(root)
    click.echo(format_stats(st))
    png = plot_examples(root, png or Path(root) / "examples.png")
    click.echo(f"\nexample spectrograms: {png}")
    if json_out:
        atomic_write_text(json_out, json.dumps(st, indent=2))


# --------------------------------------------------------------------------- training

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
@click.option("--timesteps", type=click.Choice(["uniform", "lognormal"]), default="uniform", show_default=True,
              help="Training noise levels: uniform over the 1000 steps, or EDM's log-normal in sigma.")
@click.option("--max-cpu-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) once the run has used this much CPU time, over all processes and resumes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@_friendly
def train(data, out, steps, batch_size, lr, warmup, max_minutes, ckpt_minutes, val_every, log_every, width, depth, heads,
          patch_frames, denoise_head, prediction, arch, channels, blocks, autoencoder, timesteps, max_cpu_hours, seed,
          device):
    """Train the base diffusion model. Multi-process: torchrun --nproc_per_node 2 -m dittomusic train ..."""
    from dittomusic.models import ARCHS
    from dittomusic.train.base import TrainConfig, train as run

    channels = _int_list(channels, "--channels", "192,256,384,512")
    model = {k: v for k, v in dict(width=width, depth=depth, heads=heads, patch_frames=patch_frames,
                                   denoise_head=denoise_head, prediction=prediction, channels=channels,
                                   blocks=blocks).items() if v is not None}
    wrong = [k for k in model if k not in ARCHS[arch][0].__dataclass_fields__]
    if wrong:
        raise DittoError(f"--{wrong[0].replace('_', '-')} does not apply to --arch {arch}")
    cfg = TrainConfig(data=data, out=out, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                      max_minutes=max_minutes, ckpt_minutes=ckpt_minutes, val_every=val_every, log_every=log_every, seed=seed,
                      device=device, model=model, arch=arch, autoencoder=autoencoder, timesteps=timesteps,
                      max_cpu_hours=max_cpu_hours)
    res = run(cfg)
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Release checkpoint to write.")
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@_friendly
def export(run, out, fp32):
    """Export a run's EMA weights as a release checkpoint (safetensors, carries its config)."""
    import torch

    from dittomusic.train.base import export_release

    p = export_release(run, out, torch.float32 if fp32 else torch.float16)
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
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--max-cpu-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop once the run has used this much CPU time, over all processes and resumes.")
@click.option("--ckpt-minutes", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@_friendly
def autoencoder_train(data, out, steps, batch_size, crop_frames, lr, latent_channels, channels, kl_weight, max_minutes,
                      max_cpu_hours, ckpt_minutes, val_every, seed, device):
    """Train the mel VAE. Multi-process: torchrun --nproc_per_node 2 -m dittomusic autoencoder train ..."""
    from dittomusic.train.autoencoder import AETrainConfig, train_autoencoder

    model = {}
    if latent_channels is not None:
        model["latent_channels"] = latent_channels
    if channels is not None:
        model["channels"] = _int_list(channels, "--channels", "128,192,256")
    cfg = AETrainConfig(data=data, out=out, steps=steps, batch_size=batch_size, crop_frames=crop_frames, lr=lr,
                        kl_weight=kl_weight, max_minutes=max_minutes, max_cpu_hours=max_cpu_hours,
                        ckpt_minutes=ckpt_minutes, val_every=val_every, seed=seed, device=device, model=model)
    res = train_autoencoder(cfg)
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@autoencoder.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Release file to write.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Dataset for the latent scale [default: the run's].")
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@_friendly
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
@click.option("--max-minutes", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--ckpt-minutes", type=FiniteFloat(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--val-clips", type=click.IntRange(min=0), default=16, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@click.pass_context
@_friendly
def distill(ctx, kind, data, out, teacher, steps, batch_size, lr, warmup, guidance, grid_steps, teacher_steps,
            target_decay, max_minutes, ckpt_minutes, val_every, val_clips, log_every, seed, device):
    """Distill the base model into a one-pass student (guidance baked in), or `distill export RUN OUT`.

    Multi-process: torchrun --nproc_per_node 2 -m dittomusic distill --kind cd ...
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [n for n, v in (("--kind", kind), ("--data", data), ("--out", out)) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use `distill export RUN OUT`)")
    import os

    from dittomusic.distill import DistillConfig, distill as run

    res = run(DistillConfig(kind=kind, data=data, out=out, teacher=teacher, steps=steps, batch_size=batch_size, lr=lr,
                            warmup=warmup, guidance=guidance, grid_steps=grid_steps, teacher_steps=teacher_steps,
                            target_decay=target_decay, max_minutes=max_minutes, ckpt_minutes=ckpt_minutes,
                            val_every=val_every, val_clips=val_clips, log_every=log_every, seed=seed, device=device))
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@distill.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Choice(["ema", "target", "model"]), default="ema", show_default=True,
              help="Which of the run's students: slow EMA, the target network theta^-, or the online weights.")
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@_friendly
def distill_export(run, out, weights, fp32):
    """Export a distillation run's student as a release checkpoint (config, kind, guidance in its metadata)."""
    import torch

    from dittomusic.distill import export_student

    click.echo(f"wrote {export_student(run, out, torch.float32 if fp32 else torch.float16, weights)}")


# --------------------------------------------------------------------------- vocoder

@cli.group("vocoder")
def vocoder_group() -> None:
    """The neural vocoder: paired audio, training, export, model card."""


@vocoder_group.command("pairs")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where the audio shards go (resumes if it exists) [default: DATA/audio].")
@click.option("--hours", type=click.FloatRange(min=0.001), default=4.0, show_default=True,
              help="Hours of train pieces to re-render (balanced over collections; more later extends them).")
@click.option("--val-minutes", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Minutes of val pieces, for the training's validation loss. Test pieces are never rendered.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes (0 = one per CPU core; 1 = in-process).")
@click.option("--seed", type=int, default=0, show_default=True, help="Order in which renders are picked.")
@click.option("--soundfont", type=click.Path(), default=None, help="The .sf2 the dataset was built with.")
@_friendly
def vocoder_pairs(data, out, hours, val_minutes, workers, seed, soundfont):
    """Re-render train audio aligned to a dataset's mels (each render checked against its stored mel)."""
    from dittomusic.data.pairs import PairsConfig, build_pairs

    s = build_pairs(PairsConfig(data=data, out=out, hours=hours, val_minutes=val_minutes, workers=workers, seed=seed,
                                soundfont=soundfont))
    click.echo(f"{s['renders']} renders (train {s['hours_per_split']['train']:.2f} h, val "
               f"{s['hours_per_split']['val']:.2f} h) in {s['out']}; largest mel error {s['max_mel_error']}; "
               f"{s['left_out']} left out; {s['seconds']:.0f} s")
    if s["left_out"]:
        click.echo(f"warning: {s['left_out']} renders did not match their stored mels; see {s['out']}/mismatched.json",
                   err=True)


@vocoder_group.command("train")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--audio", type=click.Path(exists=True, file_okay=False), default=None,
              help="Paired audio from `vocoder pairs` [default: DATA/audio].")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumes if it holds a checkpoint).")
@click.option("--steps", type=click.IntRange(min=1), default=20000, show_default=True, help="Length of the LR schedule.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Global batch size.")
@click.option("--segment-frames", type=click.IntRange(min=8), default=64, show_default=True,
              help="Mel frames per training segment.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-4, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--adversarial", is_flag=True,
              help="Add multi-period + multi-resolution discriminators (about 10x slower per step on a CPU).")
@click.option("--dim", type=click.IntRange(min=8), default=None, help="ConvNeXt width [default: 256].")
@click.option("--intermediate", type=click.IntRange(min=8), default=None, help="ConvNeXt MLP width [default: 768].")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="ConvNeXt blocks [default: 8].")
@click.option("--n-fft", type=click.IntRange(min=64), default=None, help="iSTFT head's FFT size [default: 1024].")
@click.option("--phase", type=click.Choice(["recurrent", "direct"]), default=None,
              help="Phase head: carried frame to frame, or per frame as Vocos [default: recurrent].")
@click.option("--magnitude-prior/--no-magnitude-prior", default=None,
              help="Predict log-magnitude as a correction to the mel's pseudo-inverse [default: on].")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--ckpt-minutes", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--val-clips", type=click.IntRange(min=1), default=32, show_default=True,
              help="Fixed validation segments.")
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@_friendly
def vocoder_train(data, audio, out, steps, batch_size, segment_frames, lr, warmup, adversarial, dim, intermediate,
                  layers, n_fft, phase, magnitude_prior, max_minutes, ckpt_minutes, val_every, val_clips, log_every,
                  seed, device):
    """Train the neural vocoder. Multi-process: torchrun --nproc_per_node 2 -m dittomusic vocoder train ..."""
    import os

    from dittomusic.train.vocoder import VocoderTrainConfig, train_vocoder

    model = {k: v for k, v in dict(dim=dim, intermediate=intermediate, layers=layers, n_fft=n_fft, phase=phase,
                                   magnitude_prior=magnitude_prior).items() if v is not None}
    cfg = VocoderTrainConfig(data=data, audio=audio, out=out, steps=steps, batch_size=batch_size,
                             segment_frames=segment_frames, lr=lr, warmup=warmup, adversarial=adversarial, model=model,
                             max_minutes=max_minutes, ckpt_minutes=ckpt_minutes, val_every=val_every,
                             val_clips=val_clips, log_every=log_every, seed=seed, device=device)
    res = train_vocoder(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@vocoder_group.command("export")
@click.argument("run", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Choice(["ema", "model"]), default="ema", show_default=True)
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@_friendly
def vocoder_export(run, out, weights, fp32):
    """Export a vocoder run as a release file (safetensors, carries its config), e.g. to assets/vocoder.safetensors."""
    import torch

    from dittomusic.train.vocoder import export_vocoder

    click.echo(f"wrote {export_vocoder(run, out, torch.float32 if fp32 else torch.float16, weights)}")


@vocoder_group.command("card")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="The dataset: its test clips are re-rendered as ground truth.")
@click.option("--weights", type=click.Path(exists=True), default=None,
              help="Vocoder release file or run folder [default: the bundled one].")
@click.option("--report", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON from benchmarks/vocoder.py (default: measure now).")
@click.option("--clips", type=click.IntRange(min=1), default=24, show_default=True, help="Test clips, when measuring.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads, when measuring.")
@click.option("--loss-png", type=click.Path(exists=True, dir_okay=False), default=None, help="The run's loss.png.")
@click.option("--note", "notes", multiple=True, help="A line for the card's Notes (repeatable).")
@click.option("--out", default="docs/vocoder", show_default=True, type=click.Path(file_okay=False))
@_friendly
def vocoder_card(data, weights, report, clips, threads, loss_png, notes, out):
    """Write the vocoder card: data, compute, losses, numbers and spectrograms against Griffin-Lim, speed."""
    import torch

    from dittomusic.audio.vocoder import bundled_vocoder_path
    from dittomusic.eval.vocoder import evaluate_vocoders, example_audio, report_markdown, write_vocoder_card

    weights = weights or bundled_vocoder_path()
    if report:
        rep = json.loads(Path(report).read_text())
        if "vocoders" not in rep:
            raise DittoError(f"{report} is not a report of benchmarks/vocoder.py")
        example = example_audio(data, rep["clip_ids"][0], weights)
        rep.setdefault("example_clip", rep["clip_ids"][0])
    else:
        torch.set_num_threads(threads)
        rep, example = evaluate_vocoders(data, weights, clips)
    click.echo(report_markdown(rep))
    click.echo(f"card: {write_vocoder_card(weights, rep, example, out, loss_png, list(notes))}")


# --------------------------------------------------------------------------- generation

def _tags(vocab, caption, collection, instruments, tempo, mode, unconditional):
    """Caption keywords first, explicit tag options override them."""
    from dittomusic.generate import caption_to_tags, make_tags

    if unconditional:
        return None
    tags = caption_to_tags(caption, vocab) if caption else make_tags(vocab)
    explicit = make_tags(vocab, collection, instruments.split(",") if instruments else None, tempo, mode)
    tags.collection = explicit.collection or tags.collection
    tags.instruments = explicit.instruments or tags.instruments
    tags.tempo = explicit.tempo or tags.tempo
    tags.mode = explicit.mode or tags.mode
    return tags


def _vocoder_option(fn):
    return click.option(
        "--vocoder", default=None,
        help="neural, griffinlim, or a neural vocoder .safetensors file (or training run folder) "
             "[default: the bundled neural vocoder if installed, else griffinlim].")(fn)


TAG_OPTIONS = ("caption", "collection", "instruments", "tempo", "mode", "unconditional")
DITTO2_OPTIONS = ("student", "decode", "decode_steps", "decode_sampler", "teacher_steps", "refresh")


def _tag_options(fn):
    for opt in reversed([
        click.option("--caption", default=None,
                     help='Free text mapped to tags, e.g. "a lively Irish reel on fiddle in D major".'),
        click.option("--collection", default=None, help="Style: chorale, Irish folk tune, folk song, ... (see --list-tags)."),
        click.option("--instruments", default=None,
                     help="Comma-separated, e.g. violin,cello (families like strings work too)."),
        click.option("--tempo", default=None, help="BPM (e.g. 120) or a bucket: slow, moderate, fast, very fast."),
        click.option("--mode", default=None, help="major or minor."),
        click.option("--unconditional", is_flag=True, help="Ignore all tags."),
    ]):
        fn = opt(fn)
    return fn


@cli.command()
@_tag_options
@click.option("--list-tags", is_flag=True, help="Print the model's tag vocabulary and exit.")
@click.option("--seconds", type=FINITE, default=None, help="Length [default: the model's 5.94 s clip].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm", "dpmpp_2m", "euler", "heun"]), default="ddim",
              show_default=True)
@click.option("--steps", type=int, default=20, show_default=True)
@click.option("--guidance", type=FINITE, default=3.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--batch", type=int, default=1, show_default=True, help="Clips to generate (seeds share one batch).")
@click.option("--out", default="out.wav", show_default=True, type=click.Path(dir_okay=False),
              help="Output wav; with --batch N: OUT_0.wav ... A spectrogram PNG is written beside it.")
@click.option("--no-png", is_flag=True, help="Do not write the spectrogram PNG.")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Model checkpoint (.safetensors) [default: the bundled base model].")
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda if available].")
@_vocoder_option
@_friendly
def generate(caption, collection, instruments, tempo, mode, unconditional, list_tags, seconds, seed, sampler, steps,
             guidance, batch, out, no_png, model_path, device, vocoder):
    """Generate music from tags or a caption with the base diffusion model."""
    from dittomusic.audio.io import save_wav
    from dittomusic.generate import Pipeline

    pipe = Pipeline(model_path, device, vocoder)
    v = pipe.vocab
    if list_tags:
        for k in ("collections", "instruments", "tempo_buckets", "modes"):
            click.echo(f"{k}: {', '.join(v[k])}")
        return
    tags = _tags(v, caption, collection, instruments, tempo, mode, unconditional)
    click.echo(f"tags: {tags.describe() if tags else 'unconditional'}", err=True)
    mel, audio = pipe.generate(tags, n=batch, seconds=seconds, seed=seed, sampler=sampler, steps=steps,
                               guidance=guidance, progress=True)
    out = Path(out)
    paths = [out] if batch == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(batch)]
    for p, a in zip(paths, audio):
        save_wav(p, a.cpu(), pipe.mel_cfg.sample_rate)
    if not no_png:
        from dittomusic.spectrogram import plot_mels

        title = tags.describe() if tags else "unconditional"
        paths.append(plot_mels([m.cpu().numpy() for m in mel],
                               [f"{title}  (seed {seed}, clip {i})" for i in range(batch)],
                               out.with_suffix(".png"), pipe.mel_cfg))
    for p in paths:
        click.echo(str(p))
    _fast_exit_ok()


# --------------------------------------------------------------------------- control

class TaskOptionsCommand(click.Command):
    """A command that also takes every registered task's options (TaskSpec.options), added when
    click first asks for its parameters: the registry imports torch, which `dittomusic --help`
    must not."""

    def get_params(self, ctx):
        if not getattr(self, "_tasks_added", False):
            self._tasks_added = True
            at = next(i for i, p in enumerate(self.params) if p.name == "out")
            self.params[at:at] = task_click_options()
        return super().get_params(ctx)


def task_click_options() -> list[click.Option]:
    """click options for every task option of the registry, each dest once."""
    from dittomusic.control.spec import all_tasks

    kinds = {"str": str, "float": FINITE, "path": click.Path(dir_okay=False)}
    out, seen = [], set()
    for spec in all_tasks():
        for o in spec.options:
            if o.dest in seen:
                continue
            seen.add(o.dest)
            out.append(click.Option([o.flag, o.dest], type=kinds[o.kind], default=o.default,
                                    show_default=o.default is not None, help=o.help))
    return out


@cli.command("control", cls=TaskOptionsCommand)
@click.argument("task")
@click.option("--method", default=None,
              help="ditto, ditto_draft (DITTO with the matched frames' noise from the DDIM-inverted naive-masking "
                   "draft), ditto2, freedom, naive, multidiffusion, multidiffusion50 or default (no steering) "
                   "[default: ditto_draft for outpaint/inpaint/loop, ditto otherwise].")
@_tag_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds optimized together (one batched forward/backward).")
@click.option("--seconds", type=FINITE, default=None, help="Clip length [default: the model's 5.94 s].")
@click.option("--steps", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="DDIM steps (ditto, the baselines, and ditto2's teacher decode except for structure).")
@click.option("--guidance", type=FINITE, default=3.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--iters", type=click.IntRange(min=0), default=None,
              help="Optimization steps K [default: 150 for melody/structure, 70 otherwise].")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Adam step size [default: 5e-3, 1e-2 for ditto2].")
@click.option("--tol", type=FINITE, default=None, help="Stop once every clip's loss is at or below this.")
@click.option("--no-checkpoint", is_flag=True, help="Keep every sampler step's activations (much more memory).")
@click.option("--out", default="control.wav", show_default=True, type=click.Path(dir_okay=False),
              help="Output wav (with --batch N: OUT_0.wav ...); a target-vs-achieved PNG is written beside it.")
@click.option("--no-png", is_flag=True, help="Do not write the target-vs-achieved PNG.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the run report as JSON.")
@click.option("--save-latent", type=click.Path(dir_okay=False), default=None,
              help="Save the optimized x_T (and optimizer state) to continue later.")
@click.option("--init-latent", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from a latent saved with --save-latent (continues its optimization).")
@click.option("--student", default=None,
              help="ditto2: distilled student: a release file, a distill run folder, or cd / ctd for a bundled one "
                   "[default: the bundled CD student].")
@click.option("--decode", type=click.Choice(["teacher", "student"]), default=None,
              help="ditto2: decode the optimized x_T with the teacher's sampler or the student's multistep sampler "
                   "[default: by measurement, teacher for melody and structure, student otherwise].")
@click.option("--decode-steps", type=click.IntRange(min=1, max=20), default=4, show_default=True,
              help="ditto2 with --decode student: student sampling steps.")
@click.option("--decode-sampler", type=click.Choice(["ddim", "dpmpp_2m"]), default=None,
              help="ditto2 with the teacher decode: its sampler [default: dpmpp_2m for structure, ddim otherwise].")
@click.option("--teacher-steps", type=click.IntRange(min=1, max=1000), default=None,
              help="ditto2 with the teacher decode: its steps [default: 8 for structure, --steps otherwise].")
@click.option("--refresh", type=click.IntRange(min=0), default=None,
              help="ditto2: decode for real and re-correct the one-step surrogate every N iterations "
                   "(0: never) [default: 10 with the student decode or for structure, 20 otherwise].")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Base model safetensors [default: the bundled model].")
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda if available].")
@_vocoder_option
@_friendly
def control_cmd(task, **kw):
    """Steer generation toward a TASK target: intensity, melody, structure, outpaint, inpaint, loop,
    or several joined with '+' (e.g. intensity+melody).

    \b
    Examples:
      dittomusic control intensity --preset tanh-rise --low-db -40 --high-db -15
      dittomusic control melody --target-notes "E5:0.5 D5:0.5 C5:1 D5:1" --collection "folk song"
      dittomusic control structure --target-pattern ABBA --method freedom
      dittomusic control outpaint --reference clip.wav --overlap 2
    """
    from dittomusic.audio.io import save_wav
    from dittomusic.control.methods import Settings, get_method, run_control
    from dittomusic.control.optimize import OptimConfig, load_latent, save_latent as write_latent
    from dittomusic.control.tasks import (TaskOptions, build_control, default_iters, default_lr, default_method,
                                          task_options)
    from dittomusic.generate import Pipeline
    from dittomusic.utils import atomic_write_text

    opts = TaskOptions(**{k: kw.pop(k) for k in task_options()})
    method = kw["method"] or default_method(task)
    get_method(method)
    seed, out, no_png, report, save_latent, init_latent = (
        kw[k] for k in ("seed", "out", "no_png", "report", "save_latent", "init_latent"))
    pipe = Pipeline(kw["model_path"], kw["device"], kw["vocoder"])
    tags = _tags(pipe.vocab, *(kw[k] for k in TAG_OPTIONS))
    ctrl = build_control(task, pipe.backend.frames_for(kw["seconds"]), opts, pipe.mel_cfg)
    optim = OptimConfig(iters=default_iters(task) if kw["iters"] is None else kw["iters"],
                        lr=default_lr(method) if kw["lr"] is None else kw["lr"], tol=kw["tol"])
    settings = Settings(steps=kw["steps"], guidance=kw["guidance"], optim=optim, checkpoint=not kw["no_checkpoint"],
                        progress=True, **{k: kw[k] for k in DITTO2_OPTIONS})
    x_T, resume = None, None
    if init_latent:
        if method not in ("ditto", "ditto_draft", "ditto2"):
            raise DittoError("--init-latent continues an optimization: use it with --method ditto, ditto_draft or ditto2")
        x_T, resume, _ = load_latent(init_latent, pipe.device)
        x_T = resume["x_T"]
    click.echo(f"{task} with {method}; tags: {tags.describe() if tags else 'unconditional'}", err=True)
    res = run_control(pipe, method, ctrl, tags, seed=seed, batch=kw["batch"], x_T=x_T, settings=settings, task=task,
                      resume=resume)
    out = Path(out)
    paths = [out] if len(res.audio) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}")
                                               for i in range(len(res.audio))]
    for p, a in zip(paths, res.audio):
        save_wav(p, a, res.sr)
    if not no_png:
        from dittomusic.control.plots import plot_control

        paths.append(plot_control(
            ctrl, {method: (res.clip_audio[0], res.audio[0] if "stitch_boundaries_s" in res.report else None)},
            res.sr, out.with_suffix(".png"), title=f"{task} — {method} (seed {seed})",
            boundaries=res.report.get("stitch_boundaries_s"),
            loss_history={method: [h[0] for h in res.report["loss_history"]]} if "loss_history" in res.report else None))
    if save_latent and res.result.optim is not None:
        write_latent(save_latent, res.result.optim, {"task": task, "method": method, "seed": seed})
    if report:
        atomic_write_text(report, json.dumps(res.report, indent=1))
    for k, val in res.report["metrics"].items():
        click.echo(f"  {k}: {val:.4g}", err=True)
    click.echo(f"  wall {res.report['wall_s']:.1f} s, {res.report['model_calls']} model calls, "
               f"{res.report['iterations']} iterations", err=True)
    for p in paths:
        click.echo(str(p))
    _fast_exit_ok()


# --------------------------------------------------------------------------- evaluation

@cli.group("eval")
def eval_group() -> None:
    """Evaluation: the tag-classifier yardstick and model reports."""


@eval_group.command("classifier")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--device", default=None)
@_friendly
def eval_classifier(data, out, epochs, device):
    """Train the tag classifier (collection + instrument family) on real clips."""
    from dittomusic.eval.classifier import train_classifier

    meta = train_classifier(data, out, epochs=epochs, device=device)
    click.echo(json.dumps(meta["test"], indent=2))


@eval_group.command("model")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Model checkpoint [default: bundled].")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--classifier", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Tag classifier [default: the bundled one].")
@click.option("--per-collection", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--sampler", default="ddim", show_default=True)
@click.option("--steps", type=int, default=20, show_default=True)
@click.option("--guidance", type=FINITE, default=3.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON (+ .md).")
@click.option("--device", default=None)
@click.option("--no-realism", is_flag=True, help="Skip the realism block (texture measures and the C2ST).")
@click.option("--c2st-steps", type=click.IntRange(min=1), default=None,
              help="Training steps of the C2ST critic [default: ~40 passes over its training clips, 60-300].")
@_friendly
def eval_model(model_path, data, classifier, per_collection, sampler, steps, guidance, seed, out, device, no_realism,
               c2st_steps):
    """Classifier accuracy on generated vs real clips, FAD(generated|validation|unconditional, test), and realism
    (grain, spectral flatness, harmonic prominence, background, onsets, C2ST) of generated vs real test clips."""
    from dittomusic.eval.base_model import evaluate_model, report_markdown
    from dittomusic.utils import atomic_write_text

    from dittomusic.models.loading import bundled_path

    classifier = classifier or bundled_path("classifier")
    r = evaluate_model(model_path, data, classifier, per_collection=per_collection, sampler=sampler, steps=steps,
                       guidance=guidance, seed=seed, device=device, realism=not no_realism, c2st_steps=c2st_steps)
    md = report_markdown(r)
    click.echo(md)
    if out:
        atomic_write_text(out, json.dumps(r, indent=2))
        atomic_write_text(Path(out).with_suffix(".md"), md + "\n")


@eval_group.command("student")
@click.option("--student", default=None,
              help="A student release file, a distillation run folder, or cd / ctd for a bundled one [default: cd].")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--classifier", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Tag classifier [default: the bundled one].")
@click.option("--per-collection", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--steps", default="1,2,4,8", show_default=True, help="Student step counts, comma-separated.")
@click.option("--teacher-steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--teacher", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The model the student was distilled from [default: bundled].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--loss-png", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The run's loss.png, for the card.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the model card (README.md), report.json and loss.png.")
@click.option("--note", "notes", multiple=True, help="A line for the card's Notes (repeatable), e.g. how it was trained.")
@click.option("--device", default=None)
@_friendly
def eval_student(student, data, classifier, per_collection, steps, teacher_steps, teacher, seed, loss_png, out, notes,
                 device):
    """A student's 1/2/4/8-step samples vs the teacher's 20-step DDIM: accuracy, FAD, fidelity; its model card."""
    from dittomusic.eval.student import evaluate_student, report_markdown, write_student_card

    try:
        ks = tuple(int(x) for x in steps.split(","))
    except ValueError:
        raise DittoError(f"--steps takes comma-separated step counts such as 1,2,4,8; got {steps!r}") from None
    r = evaluate_student(student, data, classifier, teacher=teacher, per_collection=per_collection, steps=ks,
                         teacher_steps=teacher_steps, seed=seed, device=device)
    click.echo(report_markdown(r))
    from dittomusic.distill.student import DEFAULT_KIND, KINDS

    name = f"student_{student or DEFAULT_KIND}.safetensors" if student in (None, *KINDS) else student
    click.echo(f"model card: {write_student_card(name, r, out, loss_png, list(notes))}")


@eval_group.command("control")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Built dataset: test clips are the painting references and the FAD reference set.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for control_eval.json, README.md tables, png/ and audio/ (resumes).")
@click.option("--tasks", default="intensity,melody,structure,outpaint,loop,inpaint", show_default=True)
@click.option("--targets", type=click.IntRange(min=1), default=5, show_default=True, help="Targets per task.")
@click.option("--methods", default=None,
              help="Comma-separated [default: default,freedom,ditto; painting adds naive and MultiDiffusion].")
@click.option("--extra-methods", default="", help="Added to every task's methods, e.g. ditto2.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--guidance", type=FINITE, default=3.0, show_default=True)
@click.option("--iters", type=click.IntRange(min=0), default=None, help="[default: 70; 150 for melody/structure]")
@click.option("--no-checkpoint", is_flag=True, help="Store all sampler activations (same result, more memory).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False))
@click.option("--classifier", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--device", default=None)
@click.option("--rescore-seams", is_flag=True,
              help="Re-stitch finished painting runs from their saved mels (after a stitching change).")
@_vocoder_option
@_friendly
def eval_control(data, out, tasks, targets, methods, extra_methods, steps, guidance, iters, no_checkpoint, seed,
                 model_path, classifier, device, rescore_seams, vocoder):
    """Control adherence, FAD and wall time per method on fixed targets (DITTO Tables 1-3)."""
    from dittomusic.eval.control import ControlEvalConfig, evaluate_control

    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    cfg = ControlEvalConfig(data=data, out=out, tasks=split(tasks), targets=targets,
                            methods=split(methods) if methods else None, extra_methods=split(extra_methods),
                            steps=steps, guidance=guidance, iters=iters, checkpoint=not no_checkpoint, seed=seed,
                            model=model_path, classifier=classifier, device=device, rescore_seams=rescore_seams,
                            vocoder=vocoder)
    evaluate_control(cfg)
    click.echo((Path(out) / "README.md").read_text())


@eval_group.command("curve")
@click.argument("snapshots", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--classifier", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--per-collection", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON list of reports (+ .png plot).")
@click.option("--append", is_flag=True, help="Add to the points already in --out.")
@_friendly
def eval_curve(snapshots, data, classifier, per_collection, out, append):
    """Evaluate training snapshots and plot FAD / accuracy against training CPU-hours."""
    from dittomusic.eval.base_model import evaluate_model
    from dittomusic.eval.card import plot_curve
    from dittomusic.utils import atomic_write_text

    points = json.loads(Path(out).read_text()) if append and Path(out).exists() else []
    for s in snapshots:
        r = evaluate_model(s, data, classifier, per_collection=per_collection)
        rr = r.get("realism") or {}
        points.append({"snapshot": s, "step": r["model_train"]["steps"], "cpu_hours": r["model_train"]["cpu_hours"],
                       **{k: r[k] for k in ("fad", "real", "generated", "settings")},
                       # the texture yardstick against compute: what the tag classifier cannot see
                       "realism": {"c2st": rr.get("c2st", {}).get("accuracy"), **rr.get("ratio", {}),
                                   "texture_fad": rr.get("texture_fad")} if rr else None})
        click.echo(f"{s}: step {points[-1]['step']}, {points[-1]['cpu_hours']:.2f} CPU-h, "
                   f"FAD {r['fad']['generated']:.3f} (val {r['fad']['validation']:.3f}), "
                   f"acc {r['generated']['collection_accuracy']:.3f} (real {r['real']['collection_accuracy']:.3f})")
        atomic_write_text(out, json.dumps(points, indent=2))
    click.echo(str(plot_curve(points, Path(out).with_suffix(".png"))))


@eval_group.command("card")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--report", required=True, type=click.Path(exists=True, dir_okay=False), help="JSON from `eval model`.")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="The training dataset.")
@click.option("--loss-png", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--curve", type=click.Path(exists=True, dir_okay=False), default=None, help="JSON from `eval curve`.")
@click.option("--limitations", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file, one known limitation per line, listed in the card.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for README.md and images.")
@_friendly
def eval_card(model_path, report, data, loss_png, curve, limitations, out):
    """Write the model card from measured files (report, curve, loss curve) plus example spectrograms and a
    real | generated spectrogram figure per collection."""
    from dittomusic.eval.card import example_grid, realism_figure, write_model_card

    ex = example_grid(model_path, Path(out) / "examples.png")
    rf = realism_figure(model_path, data, Path(out) / "realism.png")
    p = write_model_card(model_path, json.loads(Path(report).read_text()),
                         json.loads((Path(data) / "build.json").read_text()), out, loss_png,
                         json.loads(Path(curve).read_text()) if curve else None, ex,
                         [x.strip() for x in Path(limitations).read_text().splitlines() if x.strip()]
                         if limitations else None, realism_png=rf)
    click.echo(str(p))


# --------------------------------------------------------------------------- demo

@cli.command()
@click.option("--out", default="dittomusic-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@_vocoder_option
@_friendly
def demo(out, seed, vocoder):
    """Build a small dataset and write an audio + spectrogram preview of it."""
    from dittomusic.demo import run_demo

    res = run_demo(out, seed=seed, vocoder=vocoder)
    click.echo(f"dataset:     {res['dataset']}  ({res['clips']} clips, {res['hours']:.2f} h)")
    click.echo(f"audio:       {res['wav']}")
    click.echo(f"spectrogram: {res['png']}")
    for c in res["captions"]:
        click.echo(f"  - {c}")


_FAST_EXIT = False


def _fast_exit_ok() -> None:
    """Called by a command whose outputs are all written and closed: main() may then skip the
    interpreter's teardown."""
    global _FAST_EXIT
    _FAST_EXIT = True


def main() -> None:
    global _FAST_EXIT
    _FAST_EXIT = False
    try:
        cli(prog_name="dittomusic")
    except SystemExit as e:
        if not _FAST_EXIT:
            raise
        code = e.code
    else:  # pragma: no cover - standalone click always exits through SystemExit
        code = 0
    # Unloading torch and its extension modules at exit took 0.15-0.3 s of a cold
    # `dittomusic generate`; the outputs are already closed (atomic renames), so flush and go.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
