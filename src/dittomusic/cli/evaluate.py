"""`dittomusic eval`: the yardstick classifier, model, student and control evaluations, cards."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dittomusic.errors import DittoError

from dittomusic.sampling.names import SAMPLER_NAMES

from .core import FINITE, cli, friendly, precision_option, vocoder_option


@cli.group("eval")
def eval_group() -> None:
    """Evaluation: the tag-classifier yardstick and model reports."""


@eval_group.command("classifier")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--device", default=None)
@friendly
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
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None,
              help="[default: the model's own, e.g. dpmpp_2m for the bundled v2; ddim for a file that names none]")
@click.option("--steps", type=int, default=20, show_default=True)
@click.option("--guidance", type=FINITE, default=None, help="[default: the model's own, e.g. 2.0; else 3.0]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--seeds", type=click.IntRange(min=1, max=10), default=1, show_default=True,
              help="Repeat the whole eval at seeds SEED .. SEED+N-1 (other test clips, tags and x_T each) and report "
                   "each headline's mean and sd: one draw of 120 clips can sit 0.07 of C2ST from another.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON (+ .md).")
@click.option("--device", default=None)
@click.option("--no-realism", is_flag=True, help="Skip the realism block (texture measures and the C2ST).")
@click.option("--no-as-heard", is_flag=True,
              help="Skip the C2ST on the vocoded clips (what a listener gets; two more critics and the vocoding).")
@click.option("--c2st-steps", type=click.IntRange(min=1), default=None,
              help="Training steps of the C2ST critic [default: ~40 passes over its training clips, 60-300].")
@click.option("--c2st-repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="C2ST splits to average: one split of a few dozen clips per side is a noisy estimate.")
@precision_option
@friendly
def eval_model(model_path, data, classifier, per_collection, sampler, steps, guidance, seed, seeds, out, device,
               no_realism, no_as_heard, c2st_steps, c2st_repeats, precision):
    """Classifier accuracy on generated vs real clips, FAD(generated|validation|unconditional, test), and realism
    (grain, spectral flatness, harmonic prominence, background, onsets, C2ST) of generated vs real test clips."""
    from dittomusic.eval.base_model import evaluate_model, report_markdown
    from dittomusic.utils import atomic_write_text

    from dittomusic.models.loading import bundled_path

    classifier = classifier or bundled_path("classifier")
    from dittomusic.eval.base_model import across_seeds

    reports = [evaluate_model(model_path, data, classifier, per_collection=per_collection, sampler=sampler,
                              steps=steps, guidance=guidance, seed=s, device=device, realism=not no_realism,
                              c2st_steps=c2st_steps, c2st_repeats=c2st_repeats, as_heard=not no_as_heard and s == seed,
                              precision=precision) for s in range(seed, seed + seeds)]
    r = reports[0]
    if seeds > 1:
        r = {**r, "across_seeds": across_seeds(reports)}
    md = report_markdown(r)
    click.echo(md)
    if out:
        atomic_write_text(out, json.dumps(r, indent=2))
        atomic_write_text(Path(out).with_suffix(".md"), md + "\n")


@eval_group.command("figure")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Model checkpoint [default: bundled].")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--per-collection", type=click.IntRange(min=1, max=8), default=1, show_default=True,
              help="Real test clips per collection, each beside a clip generated with its tags.")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None, help="[default: the model's own]")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--guidance", type=FINITE, default=None, help="[default: the model's own]")
@click.option("--seed", type=int, default=0, show_default=True, help="Picks the clips and the noise.")
@click.option("--device", default=None)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@precision_option
@friendly
def eval_figure(model_path, data, per_collection, sampler, steps, guidance, seed, device, out, precision):
    """Real test clips beside clips generated with their tags, on one colour scale: the look that no single
    number replaces."""
    from dittomusic.eval.card import realism_figure

    click.echo(str(realism_figure(model_path, data, out, seed=seed, steps=steps, guidance=guidance, device=device,
                                  sampler=sampler, per_collection=per_collection, precision=precision)))


@eval_group.command("student")
@click.option("--student", default=None,
              help="A student release file, a distillation run folder, or cd / ctd for a bundled one [default: ctd].")
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
@click.option("--realism/--no-realism", default=True, show_default=True,
              help="Score every row on the realism yardstick (C2ST, grain, flatness, blown-out share).")
@click.option("--c2st-repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="C2ST splits per row (their mean is the row's C2ST).")
@click.option("--fad-boot", type=click.IntRange(min=0), default=500, show_default=True,
              help="Paired-bootstrap resamples for each FAD / teacher's 95 % interval (0: none).")
@click.option("--device", default=None)
@friendly
def eval_student(student, data, classifier, per_collection, steps, teacher_steps, teacher, seed, loss_png, out, notes,
                 realism, c2st_repeats, fad_boot, device):
    """A student's 1/2/4/8-step samples vs the teacher's 20-step DDIM: accuracy, FAD, fidelity; its model card."""
    from dittomusic.eval.student import evaluate_student, report_markdown, write_student_card

    try:
        ks = tuple(int(x) for x in steps.split(","))
    except ValueError:
        raise DittoError(f"--steps takes comma-separated step counts such as 1,2,4,8; got {steps!r}") from None
    r = evaluate_student(student, data, classifier, teacher=teacher, per_collection=per_collection, steps=ks,
                         teacher_steps=teacher_steps, seed=seed, device=device, realism=realism,
                         c2st_repeats=c2st_repeats, samples_png=Path(out) / "samples.png", fad_boot=fad_boot)
    click.echo(report_markdown(r))
    from dittomusic.distill.student import DEFAULT_KIND, KINDS

    name = f"student_{student or DEFAULT_KIND}.safetensors" if student in (None, *KINDS) else student
    click.echo(f"model card: {write_student_card(name, r, out, loss_png, list(notes))}")


@eval_group.command("control")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Built dataset: test clips are the painting references and the FAD reference set.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for control_eval.json, README.md tables, png/ and audio/ (resumes).")
@click.option("--tasks", default=None,
              help="Comma-separated [default: every registered task but text and invert, which have their own evals].")
@click.option("--targets", type=click.IntRange(min=2), default=5, show_default=True,
              help="Targets per task (at least 2: FAD compares sets).")
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
@vocoder_option
@friendly
def eval_control(data, out, tasks, targets, methods, extra_methods, steps, guidance, iters, no_checkpoint, seed,
                 model_path, classifier, device, rescore_seams, vocoder):
    """Control adherence, FAD and wall time per method on fixed targets (DITTO Tables 1-3)."""
    from dittomusic.eval.control import ControlEvalConfig, evaluate_control

    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    cfg = ControlEvalConfig(data=data, out=out, **({"tasks": split(tasks)} if tasks else {}), targets=targets,
                            methods=split(methods) if methods else None, extra_methods=split(extra_methods),
                            steps=steps, guidance=guidance, iters=iters, checkpoint=not no_checkpoint, seed=seed,
                            model=model_path, classifier=classifier, device=device, rescore_seams=rescore_seams,
                            vocoder=vocoder)
    evaluate_control(cfg)
    click.echo((Path(out) / "README.md").read_text())


@eval_group.command("paper")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Built dataset: its test clips are the references, inversion targets and FAD reference set.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for README.md (the report), paper_eval.json and control/ (resumes after a kill).")
@click.option("--quick", is_flag=True,
              help="2 clips per table, 8-step DDIM, K = 4 (Table 5: 8 and 20 steps, K = 3), B = 3: "
                   "under 20 minutes on 2 CPU cores.")
@click.option("--tables", default=None,
              help="Comma-separated subset of control, table5, table6, table7, table8, table9, table10, appf "
                   "[default: all].")
@click.option("--targets", type=click.IntRange(min=2, max=6), default=None,
              help="Clips / targets per table [default: 5; 2 with --quick].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Sampling steps outside Table 5 [default: 20; 8 with --quick].")
@click.option("--iters", type=click.IntRange(min=0), default=None,
              help="Optimization steps [default: 70, 150 for melody/structure; 4 with --quick].")
@click.option("--guidance", type=FINITE, default=3.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Model checkpoint [default: bundled].")
@click.option("--classifier", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Tag classifier (FAD yardstick) [default: the bundled one].")
@click.option("--device", default=None)
@vocoder_option
@friendly
def eval_paper(data, out, quick, tables, targets, steps, iters, guidance, seed, model_path, classifier, device,
               vocoder):
    """Every DITTO table this project reproduces (Tables 1-3, 5-10, App. F and J) in one Markdown report,
    the paper's published value beside each of ours."""
    from dittomusic.eval.paper import TABLES, PaperEvalConfig, evaluate_paper

    chosen = tuple(t.strip() for t in tables.split(",") if t.strip()) if tables else TABLES
    cfg = PaperEvalConfig(data=data, out=out, quick=quick, tables=chosen, targets=targets, steps=steps, iters=iters,
                          guidance=guidance, seed=seed, model=model_path, classifier=classifier, device=device,
                          vocoder=vocoder, progress=True)
    evaluate_paper(cfg)
    click.echo((Path(out) / "README.md").read_text())


@eval_group.command("text")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Built dataset: prompts come from its test clips' metadata, which are also the realism reference.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for text_eval.json, README.md and each row's mels (resumes finished rows).")
@click.option("--prompts", type=click.IntRange(min=1), default=30, show_default=True,
              help="Held-out prompts (the first cover every collection and instrument family).")
@click.option("--clap", default=None, help="The CLAP that steers [default: the bundled CLAP].")
@click.option("--judge-clap", default=None, help="The second-opinion CLAP [default: the bundled second CLAP].")
@click.option("--classifier", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Tag classifier [default: the bundled one].")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False))
@click.option("--method", type=click.Choice(["ditto2", "ditto"]), default="ditto2", show_default=True,
              help="Steering method of rows c and d (ditto2 falls back to ditto without a student of the model).")
@click.option("--student", default=None, help="ditto2's student [default: the bundled CTD student].")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="DDIM steps of the tagged rows (b, and d's render).")
@click.option("--uncond-steps", type=click.IntRange(min=1), default=None,
              help="DDIM steps of the unconditional rows (a, and c's render) [default: 50, see "
                   "benchmarks/uncond_steps.py].")
@click.option("--guidance", type=FINITE, default=3.0, show_default=True)
@click.option("--render", type=click.Choice(["decode", "teacher"]), default=None,
              help="ditto2's --render in rows c and d [default: the text task's, teacher].")
@click.option("--iters", type=click.IntRange(min=0), default=None,
              help="Optimization steps [default: the text task's, 20 for ditto2, 70 for ditto].")
@click.option("--lr", type=FINITE, default=None, help="Adam step size [default: the method's].")
@click.option("--search", type=click.IntRange(min=1), default=None,
              help="ditto2: noise draws per clip, the best decode starts the optimization [default: the text task's].")
@click.option("--tol", type=click.FloatRange(min=0), default=None,
              help="Each clip stops steering at its first decode with a loss within this (0: never) "
                   "[default: the text task's, see benchmarks/text_tol.py].")
@click.option("--refresh", type=click.IntRange(min=0), default=None,
              help="ditto2: decode for real every N iterations [default: the text task's, 5].")
@click.option("--steer", type=click.Choice(["noise", "mix"]), default=None,
              help="ditto2: what the optimizer moves, x_T or a mix of the search's draws [default: noise].")
@click.option("--views", type=click.IntRange(min=1, max=64), default=None,
              help="Crops of the clip the steering gradient averages (1: the whole clip) [default: the text task's].")
@click.option("--prompt-terms", type=click.Choice(["collection", "none"]), default="collection", show_default=True,
              help="Phrases scored beside each prompt while steering (see `control text --help`).")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Prompts steered together.")
@click.option("--seconds", type=FINITE, default=None, help="Clip length [default: the model's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-c2st", is_flag=True, help="Skip the realism C2ST (its critic trains once per row).")
@click.option("--c2st-steps", type=click.IntRange(min=1), default=None)
@click.option("--device", default=None)
@vocoder_option
@friendly
def eval_text(data, out, prompts, clap, judge_clap, classifier, model_path, method, student, steps, uncond_steps,
              guidance, render, iters, lr, search, tol, refresh, steer, prompt_terms, views, batch, seconds, seed, no_c2st, c2st_steps, device, vocoder):
    """Text control on held-out prompts: (a) unconditional, (b) tags parsed from the prompt, (c) unconditional +
    CLAP-steered, (d) tags + CLAP-steered, judged by the tag classifier, a second CLAP and realism."""
    from dittomusic.eval.text import TextEvalConfig, evaluate_text

    cfg = TextEvalConfig(data=data, out=out, prompts=prompts, clap=clap, judge_clap=judge_clap, classifier=classifier,
                         model=model_path, method=method, student=student, steps=steps, uncond_steps=uncond_steps,
                         guidance=guidance, render=render, iters=iters,
                         lr=lr, search=search, tol=tol, refresh=refresh, steer=steer, prompt_terms=prompt_terms, views=views, batch=batch, seconds=seconds, seed=seed, c2st=not no_c2st, c2st_steps=c2st_steps,
                         device=device, vocoder=vocoder)
    evaluate_text(cfg)
    click.echo((Path(out) / "README.md").read_text())


@eval_group.command("curve")
@click.argument("snapshots", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--classifier", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--per-collection", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON list of reports (+ .png plot).")
@click.option("--append", is_flag=True, help="Add to the points already in --out.")
@friendly
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
@click.option("--bakeoff", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="`eval model` reports of the bake-off routes (repeatable; the route is the file name without "
                   "eval_ and .json), tabled in the card.")
@click.option("--reproduce", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file, the commands that rebuild the model, one per line [default: the v1 recipe].")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for README.md and images.")
@friendly
def eval_card(model_path, report, data, loss_png, curve, limitations, bakeoff, reproduce, out):
    """Write the model card from measured files (report, curve, loss curve) plus example spectrograms and a
    real | generated spectrogram figure per collection."""
    from dittomusic.eval.card import example_grid, realism_figure, write_model_card

    ex = example_grid(model_path, Path(out) / "examples.png")
    rf = realism_figure(model_path, data, Path(out) / "realism.png")
    p = write_model_card(model_path, json.loads(Path(report).read_text()),
                         json.loads((Path(data) / "build.json").read_text()), out, loss_png,
                         json.loads(Path(curve).read_text()) if curve else None, ex,
                         [x.strip() for x in Path(limitations).read_text().splitlines() if x.strip()]
                         if limitations else None, realism_png=rf, bakeoff=_bakeoff_reports(bakeoff),
                         reproduce=[x for x in Path(reproduce).read_text().splitlines() if x.strip()]
                         if reproduce else None)
    click.echo(str(p))


def _bakeoff_reports(paths) -> list[tuple[str, dict]]:
    out = []
    for p in paths:
        try:
            rep = json.loads(Path(p).read_text())
        except ValueError as e:
            raise DittoError(f"--bakeoff {p} is not JSON: {e}") from None
        if not isinstance(rep, dict) or "accuracy_ratio" not in rep:
            raise DittoError(f"--bakeoff {p} is not a report of `dittomusic eval model --out`")
        out.append((Path(p).stem.removeprefix("eval_"), rep))
    return out
