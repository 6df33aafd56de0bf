"""`dittomusic clap ...`: captions, train, export, eval, card and score for the domain CLAP.

Only click is imported at module level: `dittomusic --help` must stay fast."""

from __future__ import annotations

import json

import click

from dittomusic.errors import DittoError

from .core import FiniteFloat, cli, friendly


@cli.group("clap")
def clap() -> None:
    """The domain CLAP (text-audio contrastive model) behind text control."""


@clap.command("captions")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for captions.json and text_embeddings.safetensors.")
@click.option("--per-clip", type=click.IntRange(min=1), default=5, show_default=True,
              help="Training phrasings per train clip.")
@click.option("--seed", type=int, default=0, show_default=True)
@friendly
def captions_cmd(data, out, per_clip, seed):
    """Generate captions from clip metadata and cache their sentence embeddings (runs MiniLM once)."""
    from dittomusic.clap.captions import CaptionConfig, make_caption_cache

    res = make_caption_cache(data, out, CaptionConfig(per_clip=per_clip, seed=seed))
    click.echo(json.dumps(res, indent=1))


@clap.command("train")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--captions", required=True, type=click.Path(exists=True, file_okay=False),
              help="The folder written by `dittomusic clap captions`.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder (resumes if it holds a checkpoint).")
@click.option("--steps", type=click.IntRange(min=1), default=4200, show_default=True, help="Length of the LR schedule.")
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True, help="Global batch size.")
@click.option("--crop-frames", type=click.IntRange(min=16), default=448, show_default=True,
              help="Random crop of each clip's mel.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--pairs-only", is_flag=True, help="Plain InfoNCE: only a clip's own caption is a positive.")
@click.option("--channels", type=click.IntRange(min=8), default=None, help="Audio conv width [default: 128].")
@click.option("--layers", type=click.IntRange(min=0), default=None, help="Audio transformer layers [default: 2].")
@click.option("--heads", type=click.IntRange(min=1), default=None, help="Attention heads [default: 4].")
@click.option("--embed-dim", type=click.IntRange(min=2), default=None, help="Joint embedding width [default: 256].")
@click.option("--text-hidden", type=click.IntRange(min=2), default=None, help="Text MLP width [default: 512].")
@click.option("--audio-tower", type=click.Choice(["conv1d", "conv2d"]), default=None,
              help="Audio tower: conv1d (mel bins as channels) or conv2d (convs over bins x frames; the "
                   "second-opinion CLAP) [default: conv1d].")
@click.option("--max-minutes", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Stop (with a checkpoint) after this many minutes; rerun to continue.")
@click.option("--max-cpu-hours", type=FiniteFloat(min=0, min_open=True), default=None,
              help="CPU-time budget of the whole run, all processes and resumes.")
@click.option("--ckpt-minutes", type=FiniteFloat(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--val-clips", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def train_cmd(data, captions, out, steps, batch_size, crop_frames, lr, warmup, pairs_only, channels, layers, heads,
              embed_dim, text_hidden, audio_tower, max_minutes, max_cpu_hours, ckpt_minutes, val_every, val_clips, log_every, seed,
              device):
    """Contrastive training of the CLAP (resumable; torchrun for several processes)."""
    from dittomusic.clap.train import ClapTrainConfig, train_clap

    model = {k: v for k, v in dict(channels=channels, layers=layers, heads=heads, embed_dim=embed_dim,
                                   text_hidden=text_hidden, audio_tower=audio_tower).items() if v is not None}
    cfg = ClapTrainConfig(data=data, captions=captions, out=out, steps=steps, batch_size=batch_size,
                          crop_frames=crop_frames, lr=lr, warmup=warmup, multi_positive=not pairs_only, model=model,
                          max_minutes=max_minutes, max_cpu_hours=max_cpu_hours, ckpt_minutes=ckpt_minutes,
                          val_every=val_every, val_clips=val_clips, log_every=log_every, seed=seed, device=device)
    res = train_clap(cfg)
    import os

    if os.environ.get("RANK", "0") == "0":
        click.echo(json.dumps(res, indent=1))


@clap.command("export")
@click.argument("run", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@friendly
def export_cmd(run, out, fp32):
    """A training run's EMA weights -> a release .safetensors carrying its config."""
    import torch

    from dittomusic.clap.train import export_clap

    click.echo(str(export_clap(run, out, torch.float32 if fp32 else torch.float16)))


@clap.command("eval")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="A built dataset folder.")
@click.option("--captions", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--weights", required=True, type=click.Path(exists=True), help="An exported CLAP or a run folder.")
@click.option("--classifier", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Tag classifier to compare zero-shot accuracy with [default: the bundled one].")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Report JSON to write.")
@friendly
def eval_cmd(data, captions, weights, classifier, split, out):
    """Retrieval R@1/R@10 against chance and zero-shot accuracy against the tag classifier."""
    from dittomusic.clap.eval import evaluate_clap, report_markdown
    from dittomusic.utils import atomic_write_text

    rep = evaluate_clap(weights, data, captions, classifier, split=split)
    atomic_write_text(out, json.dumps(rep, indent=1))
    click.echo("\n".join(report_markdown(rep)))


@clap.command("card")
@click.option("--report", required=True, type=click.Path(exists=True, dir_okay=False), help="From `clap eval`.")
@click.option("--loss-png", type=click.Path(dir_okay=False), default=None, help="The run's loss.png.")
@click.option("--out", default="docs/clap", show_default=True, type=click.Path(file_okay=False))
@friendly
def card_cmd(report, loss_png, out):
    """Write the CLAP card (README.md, report.json, loss.png)."""
    from dittomusic.clap.eval import write_clap_card

    try:
        rep = json.loads(open(report).read())
        rep["retrieval"], rep["zero_shot"], rep["model"]
    except (ValueError, KeyError, TypeError):
        raise DittoError(f"{report} is not a report of `dittomusic clap eval`") from None
    click.echo(str(write_clap_card(rep, out, loss_png)))


@clap.command("score")
@click.option("--clap", "clap_path", required=True, type=click.Path(),
              help="A dittomusic CLAP .safetensors, or a folder with a transformers CLAP model (LAION weights).")
@click.option("--prompt", "prompts", multiple=True, required=True, help="Text to score against (repeatable).")
@click.argument("audio", type=click.Path(exists=True, dir_okay=False))
@friendly
def score_cmd(clap_path, prompts, audio):
    """Cosine similarity between an audio file (WAV/FLAC) and each prompt."""
    import torch

    from dittomusic.audio.io import load_audio
    from dittomusic.audio.mel import MelConfig, mel_spectrogram
    from dittomusic.clap.scorer import load_scorer

    cfg = MelConfig()
    wav = load_audio(audio, cfg.sample_rate)
    mel = torch.from_numpy(mel_spectrogram(wav, cfg))
    with torch.no_grad():
        s = load_scorer(clap_path).score(mel[None], list(prompts))[0]
    for p, v in zip(prompts, s.tolist()):
        click.echo(f"{v:+.4f}  {p}")
