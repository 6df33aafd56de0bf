"""The `dittomusic` command."""

from __future__ import annotations

import functools
import json
import logging
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
@click.option("--hours", type=click.FloatRange(min=0.01), default=None,
              help="Total hours to render, split evenly across collections [default: 30, --small: 0.15].")
@click.option("--max-seconds", type=click.FloatRange(min=6.0), default=None,
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
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--ckpt-minutes", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--width", type=click.IntRange(min=8), default=None, help="Model width [default: 256].")
@click.option("--depth", type=click.IntRange(min=1), default=None, help="Transformer blocks [default: 8].")
@click.option("--heads", type=click.IntRange(min=1), default=None, help="Attention heads [default: 4].")
@click.option("--patch-frames", type=click.IntRange(min=1), default=None, help="Frames per token [default: 4].")
@click.option("--prediction", type=click.Choice(["v_prediction", "epsilon"]), default=None,
              help="Network target [default: v_prediction].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@_friendly
def train(data, out, steps, batch_size, lr, warmup, max_minutes, ckpt_minutes, val_every, log_every, width, depth, heads,
          patch_frames, prediction, seed, device):
    """Train the base diffusion model. Multi-process: torchrun --nproc_per_node 2 -m dittomusic train ..."""
    from dittomusic.train.base import TrainConfig, train as run

    model = {k: v for k, v in dict(width=width, depth=depth, heads=heads, patch_frames=patch_frames,
                                   prediction=prediction).items() if v is not None}
    cfg = TrainConfig(data=data, out=out, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                      max_minutes=max_minutes, ckpt_minutes=ckpt_minutes, val_every=val_every, log_every=log_every, seed=seed,
                      device=device, model=model)
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


# --------------------------------------------------------------------------- demo

@cli.command()
@click.option("--out", default="dittomusic-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@_friendly
def demo(out, seed):
    """Build a small dataset and write an audio + spectrogram preview of it."""
    from dittomusic.demo import run_demo

    res = run_demo(out, seed=seed)
    click.echo(f"dataset:     {res['dataset']}  ({res['clips']} clips, {res['hours']:.2f} h)")
    click.echo(f"audio:       {res['wav']}")
    click.echo(f"spectrogram: {res['png']}")
    for c in res["captions"]:
        click.echo(f"  - {c}")


def main() -> None:
    cli(prog_name="dittomusic")


if __name__ == "__main__":
    main()
