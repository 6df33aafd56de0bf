"""`dittomusic vocoder`: the neural vocoder's data, training, export and card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from dittomusic.errors import DittoError

from .core import cli, friendly


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
@friendly
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
@click.option("--mel-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the mel L1 loss on the vocoded audio.")
@click.option("--stft-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the multi-resolution STFT loss on the vocoded audio.")
@click.option("--spectrum-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the loss on the head's own spectrum (magnitude, instantaneous frequency, group delay) "
                   "against the true STFT; 0 trains through the waveform only.")
@click.option("--consistency-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="The spectrum loss's mel-consistency term (the head magnitude's energy per mel band).")
@click.option("--phase-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="The spectrum loss's phase terms, relative to its magnitude terms.")
@click.option("--dim", type=click.IntRange(min=8), default=None, help="ConvNeXt width [default: 256].")
@click.option("--intermediate", type=click.IntRange(min=8), default=None, help="ConvNeXt MLP width [default: 768].")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="ConvNeXt blocks [default: 8].")
@click.option("--n-fft", type=click.IntRange(min=64), default=None, help="iSTFT head's FFT size [default: 2048].")
@click.option("--phase", type=click.Choice(["locked", "recurrent", "direct"]), default=None,
              help="Phase: locked to the predicted magnitude's partials (not learned), or a learned head carried "
                   "frame to frame, or per frame as Vocos [default: locked].")
@click.option("--gl-iters", type=click.IntRange(min=0), default=None,
              help="Locked phase: Griffin-Lim projections after phase locking [default: 16].")
@click.option("--magnitude-prior/--no-magnitude-prior", default=None,
              help="Predict log-magnitude as a correction to a magnitude estimated from the mel [default: on].")
@click.option("--prior", type=click.Choice(["spread", "pinv"]), default=None,
              help="That estimate: each band's power spread over its bins, or the mel basis's pseudo-inverse "
                   "[default: spread].")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (after a checkpoint) when this much wall time has passed; rerun to resume.")
@click.option("--max-cpu-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop once the run has used this much CPU time, over all processes and resumes.")
@click.option("--ckpt-minutes", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--val-clips", type=click.IntRange(min=1), default=32, show_default=True,
              help="Fixed validation segments.")
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@friendly
def vocoder_train(data, audio, out, steps, batch_size, segment_frames, lr, warmup, adversarial, mel_weight,
                  stft_weight, spectrum_weight,
                  consistency_weight, phase_weight, dim, intermediate,
                  layers, n_fft, phase, gl_iters, magnitude_prior, prior, max_minutes, max_cpu_hours, ckpt_minutes, val_every, val_clips, log_every,
                  seed, device):
    """Train the neural vocoder. Multi-process: torchrun --nproc_per_node 2 -m dittomusic vocoder train ..."""
    import os

    from dittomusic.train.vocoder import VocoderTrainConfig, train_vocoder

    model = {k: v for k, v in dict(dim=dim, intermediate=intermediate, layers=layers, n_fft=n_fft, phase=phase,
                                   gl_iters=gl_iters, magnitude_prior=magnitude_prior, prior=prior).items() if v is not None}
    cfg = VocoderTrainConfig(data=data, audio=audio, out=out, steps=steps, batch_size=batch_size,
                             segment_frames=segment_frames, lr=lr, warmup=warmup, adversarial=adversarial, model=model,
                             mel_weight=mel_weight, stft_weight=stft_weight, spectrum_weight=spectrum_weight,
                             phase_weight=phase_weight, consistency_weight=consistency_weight,
                             max_minutes=max_minutes, max_cpu_hours=max_cpu_hours, ckpt_minutes=ckpt_minutes, val_every=val_every,
                             val_clips=val_clips, log_every=log_every, seed=seed, device=device)
    res = train_vocoder(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(res, indent=2))


@vocoder_group.command("export")
@click.argument("run", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Choice(["ema", "model"]), default="ema", show_default=True)
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16).")
@click.option("--gl-iters", type=click.IntRange(min=0), default=None,
              help="Synthesis: Griffin-Lim projections the release runs with [default: the run's].")
@click.option("--mel-match", type=click.FloatRange(0, 1), default=None,
              help="Synthesis: mel-matching step of each projection, 0 for none [default: the run's].")
@click.option("--gl-momentum", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Synthesis: fast Griffin-Lim momentum of the projections, 0 for plain [default: the run's].")
@friendly
def vocoder_export(run, out, weights, fp32, gl_iters, mel_match, gl_momentum):
    """Export a vocoder run as a release file (safetensors, carries its config), e.g. to assets/vocoder.safetensors."""
    import torch

    from dittomusic.train.vocoder import export_vocoder

    synthesis = {k: v for k, v in dict(gl_iters=gl_iters, mel_match=mel_match, gl_momentum=gl_momentum).items()
                 if v is not None}
    click.echo(f"wrote {export_vocoder(run, out, torch.float32 if fp32 else torch.float16, weights, synthesis)}")


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
@friendly
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
