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
@click.option("--denoise-head", type=click.IntRange(min=0), default=None,
              help="Hidden size of the per-token denoising head, 0 = none [default: 1024].")
@click.option("--prediction", type=click.Choice(["v_prediction", "epsilon"]), default=None,
              help="Network target [default: v_prediction].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@_friendly
def train(data, out, steps, batch_size, lr, warmup, max_minutes, ckpt_minutes, val_every, log_every, width, depth, heads,
          patch_frames, denoise_head, prediction, seed, device):
    """Train the base diffusion model. Multi-process: torchrun --nproc_per_node 2 -m dittomusic train ..."""
    from dittomusic.train.base import TrainConfig, train as run

    model = {k: v for k, v in dict(width=width, depth=depth, heads=heads, patch_frames=patch_frames,
                                   denoise_head=denoise_head, prediction=prediction).items() if v is not None}
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


# --------------------------------------------------------------------------- generation

@cli.command()
@click.option("--caption", default=None, help='Free text mapped to tags, e.g. "a lively Irish reel on fiddle in D major".')
@click.option("--collection", default=None, help="Style: chorale, Irish folk tune, folk song, ... (see --list-tags).")
@click.option("--instruments", default=None, help="Comma-separated, e.g. violin,cello (families like strings work too).")
@click.option("--tempo", default=None, help="BPM (e.g. 120) or a bucket: slow, moderate, fast, very fast.")
@click.option("--mode", default=None, help="major or minor.")
@click.option("--unconditional", is_flag=True, help="Ignore all tags.")
@click.option("--list-tags", is_flag=True, help="Print the model's tag vocabulary and exit.")
@click.option("--seconds", type=float, default=None, help="Length [default: the model's 5.94 s clip].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm", "dpmpp_2m", "euler", "heun"]), default="ddim",
              show_default=True)
@click.option("--steps", type=int, default=20, show_default=True)
@click.option("--guidance", type=float, default=3.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--batch", type=int, default=1, show_default=True, help="Clips to generate (seeds share one batch).")
@click.option("--out", default="out.wav", show_default=True, type=click.Path(dir_okay=False),
              help="Output wav; with --batch N: OUT_0.wav ... A spectrogram PNG is written beside it.")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Model checkpoint (.safetensors) [default: the bundled base model].")
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda if available].")
@_friendly
def generate(caption, collection, instruments, tempo, mode, unconditional, list_tags, seconds, seed, sampler, steps,
             guidance, batch, out, model_path, device):
    """Generate music from tags or a caption with the base diffusion model."""
    from dittomusic.audio import save_wav
    from dittomusic.data.stats import plot_mels
    from dittomusic.generate import Pipeline, caption_to_tags, make_tags

    pipe = Pipeline(model_path, device)
    v = pipe.vocab
    if list_tags:
        for k in ("collections", "instruments", "tempo_buckets", "modes"):
            click.echo(f"{k}: {', '.join(v[k])}")
        return
    if unconditional:
        tags = None
    else:
        tags = caption_to_tags(caption, v) if caption else make_tags(v)
        explicit = make_tags(v, collection, instruments.split(",") if instruments else None, tempo, mode)
        tags.collection = explicit.collection or tags.collection
        tags.instruments = explicit.instruments or tags.instruments
        tags.tempo = explicit.tempo or tags.tempo
        tags.mode = explicit.mode or tags.mode
    click.echo(f"tags: {tags.describe() if tags else 'unconditional'}", err=True)
    mel, audio = pipe.generate(tags, n=batch, seconds=seconds, seed=seed, sampler=sampler, steps=steps,
                               guidance=guidance, progress=True)
    out = Path(out)
    paths = [out] if batch == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(batch)]
    for p, a in zip(paths, audio):
        save_wav(p, a.cpu(), pipe.mel_cfg.sample_rate)
    title = tags.describe() if tags else "unconditional"
    png = plot_mels([m.cpu().numpy() for m in mel], [f"{title}  (seed {seed}, clip {i})" for i in range(batch)],
                    out.with_suffix(".png"), pipe.mel_cfg)
    for p in paths:
        click.echo(str(p))
    click.echo(str(png))


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
@click.option("--guidance", type=float, default=3.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON (+ .md).")
@click.option("--device", default=None)
@_friendly
def eval_model(model_path, data, classifier, per_collection, sampler, steps, guidance, seed, out, device):
    """Classifier accuracy on generated vs real clips, and FAD(generated|validation|unconditional, test)."""
    from dittomusic.eval.base_model import evaluate_model, report_markdown
    from dittomusic.utils import atomic_write_text

    from dittomusic.models.loading import bundled_path

    classifier = classifier or bundled_path("classifier")
    r = evaluate_model(model_path, data, classifier, per_collection=per_collection, sampler=sampler, steps=steps,
                       guidance=guidance, seed=seed, device=device)
    md = report_markdown(r)
    click.echo(md)
    if out:
        atomic_write_text(out, json.dumps(r, indent=2))
        atomic_write_text(Path(out).with_suffix(".md"), md + "\n")


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
        points.append({"snapshot": s, "step": r["model_train"]["steps"], "cpu_hours": r["model_train"]["cpu_hours"],
                       **{k: r[k] for k in ("fad", "real", "generated", "settings")}})
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
    """Write the model card from measured files (report, curve, loss curve) plus example spectrograms."""
    from dittomusic.eval.card import example_grid, write_model_card

    ex = example_grid(model_path, Path(out) / "examples.png")
    p = write_model_card(model_path, json.loads(Path(report).read_text()),
                         json.loads((Path(data) / "build.json").read_text()), out, loss_png,
                         json.loads(Path(curve).read_text()) if curve else None, ex,
                         [x.strip() for x in Path(limitations).read_text().splitlines() if x.strip()]
                         if limitations else None)
    click.echo(str(p))


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
