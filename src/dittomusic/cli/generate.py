"""`dittomusic generate` and `demo`."""

from __future__ import annotations

from pathlib import Path

import click

from dittomusic.sampling.names import SAMPLER_NAMES

from .core import FINITE, cli, fast_exit_ok, friendly, precision_option, tag_options, vocoder_option


@cli.command()
@tag_options
@click.option("--list-tags", is_flag=True, help="Print the model's tag vocabulary and exit.")
@click.option("--seconds", type=FINITE, default=None, help="Length [default: the model's 5.94 s clip].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None,
              help="[default: the model's own: dpmpp_2m for the bundled v2, ddim for a file that names none]")
@click.option("--steps", type=int, default=20, show_default=True)
@click.option("--guidance", type=FINITE, default=None,
              help="Classifier-free guidance scale [default: the model's own: 2.0 for the bundled v2, else 3.0].")
@click.option("--batch", type=int, default=1, show_default=True, help="Clips to generate (seeds share one batch).")
@click.option("--out", default="out.wav", show_default=True, type=click.Path(dir_okay=False),
              help="Output wav; with --batch N: OUT_0.wav ... A spectrogram PNG is written beside it.")
@click.option("--no-png", is_flag=True, help="Do not write the spectrogram PNG.")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Model checkpoint (.safetensors) [default: the bundled base model].")
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda if available].")
@vocoder_option
@precision_option
@friendly
def generate(caption, collection, instruments, tempo, mode, unconditional, list_tags, seconds, seed, sampler, steps,
             guidance, batch, out, no_png, model_path, device, vocoder, precision):
    """Generate music from tags or a caption with the base diffusion model."""
    from dittomusic.audio.io import save_wav
    from dittomusic.generate import Pipeline, tags_from_options

    pipe = Pipeline(model_path, device, vocoder, precision)
    v = pipe.vocab
    if list_tags:
        for k in ("collections", "instruments", "tempo_buckets", "modes"):
            click.echo(f"{k}: {', '.join(v[k])}")
        return
    tags = tags_from_options(v, caption, collection, instruments, tempo, mode, unconditional)
    click.echo(f"tags: {tags.describe() if tags else 'unconditional'}; precision {pipe.precision}", err=True)
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
    fast_exit_ok()


@cli.command()
@click.option("--out", default="dittomusic-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@vocoder_option
@friendly
def demo(out, seed, vocoder):
    """Build a small dataset and write an audio + spectrogram preview of it."""
    from dittomusic.demo import run_demo

    res = run_demo(out, seed=seed, vocoder=vocoder)
    click.echo(f"dataset:     {res['dataset']}  ({res['clips']} clips, {res['hours']:.2f} h)")
    click.echo(f"audio:       {res['wav']}")
    click.echo(f"spectrogram: {res['png']}")
    for c in res["captions"]:
        click.echo(f"  - {c}")
