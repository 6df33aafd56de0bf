"""`dittomusic control`: steer generation toward a task's target."""

from __future__ import annotations

import click

from dittomusic.errors import DittoError

from dittomusic.sampling.names import SAMPLER_NAMES

from .core import FINITE, TAG_OPTIONS, FiniteFloat, cli, fast_exit_ok, friendly, tag_options, vocoder_option


class RegistryCommand(click.Command):
    """A command that also takes the options the registries declare (the methods' and the tasks'),
    added when click first asks for its parameters: the registries import torch, which
    `dittomusic --help` must not. --method's help lists the registered methods then too."""

    def get_params(self, ctx):
        if not getattr(self, "_registries_added", False):
            self._registries_added = True
            from dittomusic.backends import backend_kinds
            from dittomusic.control.methods import all_methods
            from dittomusic.control.spec import all_tasks

            self.help = (self.help or "").replace("TASKS", ", ".join(t.name for t in all_tasks()))
            method = next(p for p in self.params if p.name == "method")
            method.help = ("One of: " + "; ".join(f"{m.name} ({m.help})" for m in all_methods())
                           + " [default: by task, ditto_draft for painting, ditto otherwise].")
            backend = next(p for p in self.params if p.name == "backend")
            backend.help = "The model: " + "; ".join(backend_kinds().values()) + " [default: dittomusic]."
            at = next(i for i, p in enumerate(self.params) if p.name == "out")
            self.params[at:at] = (click_options(o for t in all_tasks() for o in t.options)
                                   + click_options(o for m in all_methods() for o in m.options))
        return super().get_params(ctx)


def click_options(options) -> list[click.Option]:
    """click options for dittomusic.options.Option declarations, each dest once."""
    out, seen = [], set()
    for o in options:
        if o.dest in seen:
            continue
        seen.add(o.dest)
        kind = {"str": str, "float": FINITE, "path": click.Path(dir_okay=False), "choice": click.Choice(o.choices),
                "int": click.IntRange(min=o.lo, max=o.hi)}[o.kind]
        out.append(click.Option([o.flag, o.dest], type=kind, default=o.default, show_default=o.default is not None,
                                help=o.help))
    return out


@cli.command("control", cls=RegistryCommand)
@click.argument("task")
@click.option("--method", default=None, help="A control method (listed in `dittomusic control --help`).")
@tag_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds optimized together (one batched forward/backward).")
@click.option("--seconds", type=FINITE, default=None, help="Clip length [default: the model's 5.94 s].")
@click.option("--steps", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="DDIM steps (ditto, the baselines, and ditto2's teacher decode except for structure).")
@click.option("--guidance", type=FINITE, default=3.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="ddim", show_default=True,
              help="ditto optimizes through it (a deterministic one: DITTO App. G); default and freedom also take "
                   "ddpm, seeded by --seed (with --init-latent: variations of an optimized latent, App. I).")
@click.option("--iters", type=click.IntRange(min=0), default=None,
              help="Optimization steps K [default: by task, 150 for melody/structure, 70 otherwise].")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Adam step size [default: by method, 5e-3, 1e-2 for ditto2].")
@click.option("--tol", type=FINITE, default=None, help="A clip whose loss is at or below this keeps that iterate (DITTO-2: read on "
              "its real decodes); the run stops once every clip is [default: by task, 0.556 for text (benchmarks/text_tol.py), else none].")
@click.option("--no-checkpoint", is_flag=True, help="Keep every sampler step's activations (much more memory).")
@click.option("--out", default="control.wav", show_default=True, type=click.Path(dir_okay=False),
              help="Output wav (with --batch N: OUT_0.wav ...); a target-vs-achieved PNG is written beside it.")
@click.option("--no-png", is_flag=True, help="Do not write the target-vs-achieved PNG.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the run report as JSON.")
@click.option("--save-latent", type=click.Path(dir_okay=False), default=None,
              help="Save the optimized x_T (and optimizer state) to continue later.")
@click.option("--init-latent", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from a latent saved with --save-latent: an optimizing method continues its optimization; "
                   "default / freedom sample its best x_T (one latent is repeated --batch times).")
@click.option("--backend", default=None,
              help="The model's kind: dittomusic (--model, or the bundled model) or another registered backend, "
                   "as NAME or NAME:PATH [default: dittomusic].")
@click.option("--negative-prompt", default=None,
              help="Text-conditioned backends (e.g. diffusers:DIR): what classifier-free guidance steers away from.")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Base model safetensors [default: the bundled model].")
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda if available].")
@vocoder_option
@friendly
def control_cmd(task, **kw):
    """Steer generation toward a TASK target, or several joined with '+' (e.g. intensity+melody).

    TASK is one of: TASKS.

    \b
    Examples:
      dittomusic control intensity --preset tanh-rise --low-db -40 --high-db -15
      dittomusic control melody --target-notes "E5:0.5 D5:0.5 C5:1 D5:1" --collection "folk song"
      dittomusic control structure --target-pattern ABBA --method freedom
      dittomusic control outpaint --reference clip.wav --overlap 2
      dittomusic control text --prompt "a slow, sad chorale on church organ" --unconditional
    """
    from dittomusic.backends import open_backend
    from dittomusic.control.methods import all_methods, run_control
    from dittomusic.control.runs import model_for, run_settings, runnable_method, start_latent, write_outputs
    from dittomusic.control.tasks import TaskOptions, build_control, task_options, task_reports

    opts = TaskOptions(**{k: kw.pop(k) for k in task_options()})
    method_opts = {o.dest: kw.pop(o.dest) for m in all_methods() for o in m.options}

    def settings_for(method):
        return run_settings(task, method, kw["iters"], kw["lr"], kw["tol"], steps=kw["steps"], guidance=kw["guidance"],
                            checkpoint=not kw["no_checkpoint"], progress=True, sampler=kw["sampler"],
                            noise_seed=kw["seed"], **method_opts)

    method, settings = settings_for(kw["method"])
    seed = kw["seed"]
    model_path = model_for(method, kw["model_path"], kw["backend"], method_opts.get("student"))
    backend = open_backend(kw["backend"], model=model_path, device=kw["device"], vocoder=kw["vocoder"])
    if runnable_method(task, method, kw["method"], backend, method_opts.get("student")) != method:
        method, settings = settings_for("ditto")
    prompt_opts = {k: kw[k] for k in TAG_OPTIONS}
    if kw["negative_prompt"] is not None:
        if not getattr(backend, "takes_text", False):
            raise DittoError("--negative-prompt is for text-conditioned backends (--backend diffusers:DIR); "
                             "dittomusic's own models are conditioned on tags")
        prompt_opts["negative_prompt"] = kw["negative_prompt"]
    prompt = backend.parse_prompt(**prompt_opts)
    ctrl = build_control(task, backend.frames_for(kw["seconds"]), opts, backend.mel_cfg,
                         multiple=backend.frame_multiple)
    x_T, resume = start_latent(kw["init_latent"], method, backend, kw["batch"])
    click.echo(f"{task} with {method}; {backend.describe_prompt(prompt)}", err=True)
    res = run_control(backend, method, ctrl, prompt, seed=seed, batch=kw["batch"], x_T=x_T, settings=settings, task=task,
                      resume=resume)
    res.report.update(task_reports(task, backend, ctrl, res, prompt, settings, opts, x_T))
    written = write_outputs(res, ctrl, kw["out"], task=task, seed=seed, png=not kw["no_png"], report=kw["report"],
                            latent=kw["save_latent"])
    for k, val in res.report["metrics"].items():
        click.echo(f"  {k}: {val:.4g}", err=True)
    click.echo(f"  wall {res.report['wall_s']:.1f} s, {res.report['model_calls']} model calls, "
               f"{res.report['iterations']} iterations", err=True)
    for p in [*written.audio, *([written.plot] if written.plot else [])]:
        click.echo(str(p))
    fast_exit_ok()
