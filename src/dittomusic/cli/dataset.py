"""`dittomusic dataset`: build a dataset and its statistics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .core import FiniteFloat, cli, friendly


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
@friendly
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
    click.echo(f"  content fingerprint {s['fingerprint'][:12]} (the same for any build of the same clips)")


@dataset.command("stats")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Where to write example spectrograms [default: ROOT/examples.png].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the stats as JSON.")
@friendly
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
