"""The page: shared music and sampler settings, a Generate tab, one tab per control task
(app/tabs.py), and on every control tab the method, a second control, run / cancel / continue,
and the result (audio, target vs achieved, spectrogram, downloads).

Jobs share one queue slot on the model (concurrency_id "model", limit 1): gradio serves them
first come first served and shows each waiting page its position. The page is built from the
catalog (app/catalog.py) and the model loads in the background once a page is open (app/model.py):
a job or a target preview that comes first waits for it. Every handler turns a DittoError into a
message in the page (gr.Error, shown until closed); anything else is logged on the server and
shown as one line, never a traceback."""

from __future__ import annotations

import functools
import itertools
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from dittomusic.errors import DittoError

from . import inputs as inp
from .catalog import Catalog, read_catalog
from .jobs import JobBoard, JobCancelled
from .model import ModelLoader
from .tabs import Ctx, Tab, task_tabs

log = logging.getLogger(__name__)

METHOD_LABELS = {"ditto2": "DITTO-2 (fast)", "ditto": "DITTO (the paper's method)",
                 "ditto_draft": "DITTO from a draft (painting)", "default": "no steering (baseline)",
                 "freedom": "FreeDoM (baseline)", "naive": "naive masking (painting baseline)",
                 "multidiffusion": "MultiDiffusion (painting baseline)",
                 "multidiffusion50": "MultiDiffusion-50 (painting baseline)"}
METHOD_ORDER = ("ditto2", "ditto", "ditto_draft")
JOB = dict(concurrency_id="model", concurrency_limit=1)  # every job shares the model's one slot
# Loading the model (torch's import most of all) holds the GIL the server needs to serve the page:
# started at launch, it made the page interactive 2.5-4.7 s later on 2 cores busy with training
# (17-25 s, not 13-21 s), so it starts when a page is open (its load event), a job comes, or this
# long after launch
MODEL_START_S = 10.0
# gradio's error toast goes after 10 s by default, leaving only a red "Error" on the outputs: a job's
# failure can come minutes after its click, so the message stays until it is closed
ERROR_DURATION_S = None


def shown(fn):
    """Errors as messages in the page: a DittoError as it is, anything else as one line."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except gr.Error:
            raise
        except DittoError as e:
            raise gr.Error(str(e), duration=ERROR_DURATION_S, print_exception=False) from None
        except Exception as e:  # a bug: the details go to the server's log only
            log.exception("app handler failed")
            raise gr.Error(f"something went wrong on the server ({type(e).__name__}); the details are in its log",
                           duration=ERROR_DURATION_S, print_exception=False) from None

    return wrapper


@dataclass
class Common:
    """The shared settings, in the order of App.common."""

    collection: str | None
    instruments: list[str]
    tempo: str | None
    mode: str | None
    caption: str | None
    seed: float
    steps: float
    guidance: float
    seconds: float
    iters: float | None


class App:
    """The model (loaded once) and the page around it."""

    def __init__(self, model, *, catalog: Catalog | None = None, student: str | None = None,
                 out_dir: str | Path | None = None, defaults: dict | None = None, default_model: bool = False,
                 vocoder: str | None = None):
        """model: a ModelLoader (loading or not), or a loaded generate.Pipeline; catalog: what the page
        shows of the registries and the model [default: read here, which imports torch]."""
        self.model = model if isinstance(model, ModelLoader) else ModelLoader.loaded(model)
        if catalog is None:
            catalog = (read_catalog(pipe=self.model.get()) if self.model.ready
                       else read_catalog(self.model.model_path, self.model.vocoder))
        self.catalog = catalog
        # started on the bundled model: ditto2 runs on its student's own teacher when that differs
        self.default_model, self.vocoder, self._teachers = default_model, vocoder, {}
        self._model_files: dict = {}  # method -> model_for's answer
        self.student = student
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="dittomusic-ui-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.board = JobBoard()
        self.history: list[tuple[str, int]] = []  # (job id, seed) of each job, in the order they started
        self._previews = itertools.count(1)
        self.defaults = {"seed": 0, "steps": 20, "guidance": catalog.sampling["guidance"], "iters": None,
                         "seconds": round(catalog.clip_seconds, 2), **(defaults or {})}
        self.tabs: list[Tab] = task_tabs(catalog)

    # the model's parts wait for it to be loaded (a DittoError if that failed)
    @property
    def pipe(self):
        return self.model.get()

    @property
    def backend(self):
        return self.pipe.backend

    @property
    def cfg(self):
        return self.backend.mel_cfg

    # ------------------------------------------------------------------ helpers

    def common(self, values) -> Common:
        c = Common(*values)
        if c.seconds is None or not 1 <= c.seconds <= inp.MAX_AUDIO_S:
            raise DittoError(f"the clip length must be 1-{inp.MAX_AUDIO_S:g} s")
        return c

    def backend_for(self, method: str):
        """The backend a method runs on (control/runs.py model_for), each loaded once."""
        from dittomusic.control.runs import model_for

        # model_for reads the student's checkpoint and hashes the bundled models (ditto2): once per
        # method, not on every job (benchmarks/app_latency.py counts the loads)
        if method not in self._model_files:
            self._model_files[method] = model_for(method, None, None, self.student) if self.default_model else None
        path = self._model_files[method]
        if path is None:
            return self.backend
        if path not in self._teachers:
            from dittomusic.generate import Pipeline

            self._teachers[path] = Pipeline(path, self.backend.device, self.vocoder).backend
        return self._teachers[path]

    def prompt(self, c: Common):
        return self.backend.parse_prompt(caption=(c.caption or "").strip() or None, collection=c.collection or None,
                                         instruments=",".join(c.instruments or []) or None,
                                         tempo=c.tempo or None, mode=c.mode or None)

    def start(self, job_id: str | None, kind: str, c: Common, progress=None):
        """The job (an API call that skipped the page's submit step gets its id here), once the model
        is loaded; cancelling it while it waits for the model stops it there."""
        job_id = job_id or self.board.submit(kind)
        try:
            self.model.wait(progress, cancelled=lambda: self.board.cancelled(job_id))
        except BaseException:
            self.board.finish(job_id)
            raise
        job = self.board.start(job_id)
        self.history.append((job.id, int(c.seed)))
        log.info("job %s started", job.id)
        return job

    def job_dir(self, job_id: str) -> Path:
        d = self.out_dir / job_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _split(self, values):
        """All tabs' input values -> {tab id: its values}."""
        out, i = {}, 0
        for t in self.tabs:
            out[t.id] = list(values[i:i + len(t.inputs)])
            i += len(t.inputs)
        return out

    def control(self, tab: Tab, tab_values: dict, c: Common, scratch: Path, second: str | None = None,
                weight: float = 1.0):
        """(task name, Control) of a tab's inputs, plus a second tab's control with `weight`."""
        from dittomusic.control.tasks import TaskOptions, build_control, combine, get_task

        ctx = Ctx(c.seconds, self.cfg, scratch)
        frames = self.backend.frames_for(c.seconds)
        parts = [tab.options(tab_values[tab.id], ctx)]
        if second:
            other = next((t for t in self.tabs if t.id == second), None)
            if other is None or other is tab:
                raise DittoError(f"choose a second control other than {tab.label}")
            (scratch / "second").mkdir(exist_ok=True)
            parts.append(other.options(tab_values[other.id], Ctx(c.seconds, self.cfg, scratch / "second")))
        # a painting task sets the clip (inpaint's window): build it first, the others to its length
        order = sorted(range(len(parts)), key=lambda i: not get_task(parts[i][0]).painting)
        built = {}
        for i in order:
            task, opts = parts[i]
            ctrl = build_control(task, frames, TaskOptions(**opts), self.cfg, multiple=self.backend.frame_multiple)
            frames = ctrl.frames or frames
            built[i] = (task, ctrl)
        named = [built[i] for i in range(len(parts))]
        task = "+".join(t for t, _ in named)
        return task, combine(named, [1.0, float(weight)][:len(named)]), parts

    def preview_png(self) -> Path:
        d = self.out_dir / "previews"
        d.mkdir(exist_ok=True)
        return d / f"target_{next(self._previews):05d}.png"

    # ------------------------------------------------------------------ handlers

    def preview(self, tab: Tab, *values, live: bool = False):
        """The target plot of a tab's inputs, and a line about it. live: refreshed as an input changes,
        where inputs still being edited (a stroke just begun) are a note, not an error."""
        from dittomusic.control.plots import plot_target

        n = len(self.common_inputs)
        c = self.common(values[:n])
        tab_values = self._split(values[n:])
        if live and (why := tab.unready(tab_values[tab.id])):
            return None, why
        with tempfile.TemporaryDirectory(prefix="preview-", dir=self.out_dir) as scratch:
            task, ctrl, parts = self.control(tab, tab_values, c, Path(scratch))
            png = plot_target(ctrl, self.preview_png(), title=f"{task}: the target ({c.seconds:g} s clip)")
            return str(png), tab.note(tab_values[tab.id], Ctx(c.seconds, self.cfg, Path(scratch)), *parts[0])

    def hear_melody(self, tab: Tab, *values):
        from dittomusic.audio.io import save_wav

        n = len(self.common_inputs)
        c = self.common(values[:n])
        scratch = Path(tempfile.mkdtemp(prefix="melody-", dir=self.out_dir))
        _, ctrl, _ = self.control(tab, self._split(values[n:]), c, scratch)
        return str(save_wav(scratch / "target_melody.wav", inp.render_melody(ctrl.target, self.cfg), self.cfg.sample_rate))

    def generate(self, job_id, *values, progress=gr.Progress()):
        from dittomusic.audio.io import save_wav
        from dittomusic.spectrogram import plot_mels

        c = self.common(values)
        job = self.start(job_id, "generate", c, progress)
        try:
            tags = self.prompt(c)
            steps = int(c.steps)
            mel, audio = self.pipe.generate(
                tags, seconds=c.seconds, seed=int(c.seed), steps=steps, guidance=float(c.guidance),
                callback=job.sampler_callback(steps, lambda k, n: progress((k, n), desc=f"sampling step {k}/{n}")))
        except JobCancelled as e:
            return f"Cancelled ({e}).", *[gr.skip()] * 4
        finally:
            self.board.finish(job.id)
        d = self.job_dir(job.id)
        wav = save_wav(d / "generated.wav", audio[0].cpu(), self.cfg.sample_rate)
        title = tags.describe() if tags else "unconditional"
        png = plot_mels([mel[0].cpu().numpy()], [f"{title}  (seed {int(c.seed)})"], d / "spectrogram.png", self.cfg)
        status = f"**Generated** {c.seconds:g} s · {title} · seed {int(c.seed)}"
        return status, str(wav), str(png), [str(wav)], str(wav)

    def run(self, tab: Tab, job_id, latent, method, second, weight, *values, progress=gr.Progress()):
        """A control job: the tab's target (and a second control), the chosen method, the results."""
        from dittomusic.control.methods import run_control
        from dittomusic.control.runs import run_settings, start_latent, write_outputs
        from dittomusic.spectrogram import plot_mels

        n = len(self.common_inputs)
        c = self.common(values[:n])
        job = self.start(job_id, tab.id, c, progress)
        try:
            d = self.job_dir(job.id)
            task, ctrl, _ = self.control(tab, self._split(values[n:]), c, d, second or None, weight)
            iters = int(c.iters) if c.iters else None  # 0: the task's default
            method, settings = run_settings(task, method or None, iters, steps=int(c.steps),
                                            guidance=float(c.guidance), student=self.student)
            total = settings.optim.iters
            settings.callback = job.optimizer_callback(total, lambda k, n, loss: progress(
                (k, n), desc=f"iteration {k}/{n} · loss {loss:.4g}"))
            backend = self.backend_for(method)
            x_T, resume = start_latent(latent, method, backend) if latent else (None, None)
            job.check()
            progress(0, desc=f"{task} with {method}")
            res = run_control(backend, method, ctrl, self.prompt(c), seed=int(c.seed), x_T=x_T,
                              settings=settings, task=task, resume=resume)
        except JobCancelled as e:
            return f"Cancelled ({e}).", *[gr.skip()] * 6
        finally:
            self.board.finish(job.id)
        out = write_outputs(res, ctrl, d / f"{tab.id}.wav", task=task, seed=int(c.seed), report=d / "report.json",
                            latent=d / "latent.safetensors")
        spec = plot_mels([res.mel[0].cpu().numpy()], [f"{task} — {method} (seed {int(c.seed)})"],
                         d / "spectrogram.png", self.cfg)
        return (self.status(res, job), str(out.audio[0]), str(out.plot), str(spec), [str(p) for p in out.paths],
                str(out.latent) if out.latent else None, str(out.audio[0]))

    @staticmethod
    def status(res, job) -> str:
        r = res.report
        metrics = " · ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items())
        line = f"**{r['task']} with {r['method']}** · {metrics} · {r['iterations']} iterations · {r['wall_s']:.1f} s"
        if r.get("stopped") == "callback":
            line += f"\n\nCancelled at iteration {job.iteration}: the best result so far is shown."
        return line

    # ------------------------------------------------------------------ the page

    def build(self) -> gr.Blocks:
        v = self.catalog.vocab
        d = self.defaults
        with gr.Blocks(title="dittomusic", analytics_enabled=False) as demo:
            gr.Markdown("# dittomusic\nSteer music generation: draw, type or upload a control, hear the result.")
            with gr.Accordion("Music and sampler (all tabs)", open=True):
                with gr.Row():
                    collection = gr.Dropdown([""] + v["collections"], value="", label="Style")
                    instruments = gr.Dropdown(v["instruments"], value=[], multiselect=True, label="Instruments")
                    tempo = gr.Dropdown([""] + v["tempo_buckets"], value="", label="Tempo")
                    mode = gr.Dropdown([""] + v["modes"], value="", label="Mode")
                caption = gr.Textbox("", label="…or a caption (its keywords become tags; the tags above win)",
                                     placeholder="a lively Irish reel on fiddle in D major")
                with gr.Row():
                    seed = gr.Number(d["seed"], precision=0, label="Seed")
                    steps = gr.Slider(1, 100, value=d["steps"], step=1, label="Sampler steps")
                    guidance = gr.Slider(0, 10, value=d["guidance"], step=0.1, label="Guidance")
                    seconds = gr.Slider(1, 30, value=d["seconds"], step=0.01, label="Clip length (s)",
                                        elem_id="seconds")
                    iters = gr.Number(d["iters"] or 0, precision=0, minimum=0,
                                      label="Optimization steps (0: the task's default)")
            self.common_inputs = [collection, instruments, tempo, mode, caption, seed, steps, guidance, seconds, iters]
            panels = {}
            with gr.Tabs() as tabs:
                with gr.Tab("Generate", id="generate"):
                    gen = self._generate_tab()
                for t in self.tabs:
                    with gr.Tab(t.label, id=t.id):
                        t.build()
                        panels[t.id] = self._control_panel(t)
            all_inputs = [c for t in self.tabs for c in t.inputs]
            for t in self.tabs:
                self._wire_control(t, panels[t.id], all_inputs)
            self._wire_generate(gen)
            paint = next((t for t in self.tabs if t.id == "painting"), None)
            if paint is not None:  # "use as reference": a result becomes the next piece's start
                for p in [gen, *panels.values()]:
                    p["use"].click(lambda w: (w, gr.Tabs(selected="painting")) if w else (gr.skip(), gr.skip()),
                                   p["wav"], [paint.reference, tabs], queue=False)
            else:
                for p in [gen, *panels.values()]:
                    p["use"].visible = False
            # the model loads once a page is open (model.py); a job that comes before waits for it
            demo.load(self.model.start, None, None, queue=False, show_progress="hidden", api_visibility="private")
        return demo

    def _results(self, tab_id: str, control: bool) -> dict:
        p = {"status": gr.Markdown(elem_id=f"{tab_id}-status")}
        p["audio"] = gr.Audio(label="Result", type="filepath", interactive=False, elem_id=f"{tab_id}-result")
        with gr.Row():
            if control:
                p["plot"] = gr.Image(label="Target vs achieved", type="filepath", interactive=False,
                                     elem_id=f"{tab_id}-plot")
            p["spec"] = gr.Image(label="Spectrogram", type="filepath", interactive=False, elem_id=f"{tab_id}-spec")
        p["files"] = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id=f"{tab_id}-files")
        with gr.Row():
            if control:
                p["continue"] = gr.Button("Continue optimizing", elem_id=f"{tab_id}-continue")
            p["use"] = gr.Button("Use as reference (Painting)", elem_id=f"{tab_id}-use")
        p["wav"] = gr.State(None)  # the result's wav, for "use as reference"
        p["job"] = gr.State(None)  # the job id, for "cancel"
        if control:
            p["latent"] = gr.State(None)  # the saved latent, for "continue optimizing"
        return p

    def _buttons(self, tab_id: str, label: str) -> dict:
        with gr.Row():
            run = gr.Button(label, variant="primary", elem_id=f"{tab_id}-run")
            cancel = gr.Button("Cancel", variant="stop", elem_id=f"{tab_id}-cancel")
        return {"run": run, "cancel": cancel}

    def _generate_tab(self) -> dict:
        gr.Markdown("Generate a clip from the tags or caption above, unsteered.")
        p = self._buttons("generate", "Generate")
        p.update(self._results("generate", control=False))
        return p

    def _control_panel(self, t: Tab) -> dict:
        with gr.Row():
            p = {"target": gr.Image(label="Target", type="filepath", interactive=False, elem_id=f"{t.id}-target",
                                    scale=2)}
            p["note"] = gr.Textbox(label="The target", lines=4, max_lines=8, interactive=False,
                                   elem_id=f"{t.id}-note", scale=1)
        p["show"] = gr.Button("Show the target", size="sm", elem_id=f"{t.id}-show")
        names = list(self.catalog.methods)
        names = [m for m in METHOD_ORDER if m in names] + [m for m in names if m not in METHOD_ORDER]
        with gr.Row():
            p["method"] = gr.Dropdown([(METHOD_LABELS.get(m, m), m) for m in names],
                                      value=t.method if t.method in names else names[0], label="Method",
                                      elem_id=f"{t.id}-method")
            others = [(o.label, o.id) for o in self.tabs if o is not t]
            p["second"] = gr.Dropdown([("none", "")] + others, value="", label="Add a second control (its own tab's "
                                      "target)", elem_id=f"{t.id}-second")
            p["weight"] = gr.Slider(0, 4, value=1.0, step=0.05, label="Its weight (1 = the paper's balance)")
        p.update(self._buttons(t.id, "Steer"))
        p.update(self._results(t.id, control=True))
        return p

    def _wire_control(self, t: Tab, p: dict, all_inputs: list) -> None:
        preview_outs = [p["target"], p["note"]]
        preview_fn = shown(functools.partial(self.preview, t))
        inputs = self.common_inputs + all_inputs

        # as an input changes (live: a stroke just begun is a note, not an error); the button asks outright
        preview = dict(fn=shown(functools.partial(self.preview, t, live=True)), inputs=inputs, outputs=preview_outs,
                       concurrency_id="preview", concurrency_limit=1, trigger_mode="always_last",
                       show_progress="minimal")
        for comp, event, source in t.triggers():
            if source is None:
                getattr(comp, event)(**preview)
            else:  # the radio first, so the preview reads the new source
                getattr(comp, event)(_constant(source), None, t.source, queue=False).then(**preview)
        p["show"].click(preview_fn, inputs, preview_outs, concurrency_id="preview", concurrency_limit=1)
        if hasattr(t, "hear"):
            t.hear.click(shown(functools.partial(self.hear_melody, t)), inputs, t.target_audio,
                         concurrency_id="preview", concurrency_limit=1)
        outs = [p["status"], p["audio"], p["plot"], p["spec"], p["files"], p["latent"], p["wav"]]
        run = shown(functools.partial(self.run, t))
        none = gr.State(None)
        args = [p["job"], None, p["method"], p["second"], p["weight"], *inputs]
        for button, latent in ((p["run"], none), (p["continue"], p["latent"])):
            button.click(self._submit(t.id), None, p["job"], queue=False).then(
                run, [a if a is not None else latent for a in args], outs,
                api_name=f"{t.id}_continue" if latent is p["latent"] else t.id, **JOB)
        p["cancel"].click(lambda j: self.board.cancel(j), p["job"], p["status"], queue=False)

    def _wire_generate(self, p: dict) -> None:
        outs = [p["status"], p["audio"], p["spec"], p["files"], p["wav"]]
        p["run"].click(self._submit("generate"), None, p["job"], queue=False).then(
            shown(self.generate), [p["job"], *self.common_inputs], outs, api_name="generate", **JOB)
        p["cancel"].click(lambda j: self.board.cancel(j), p["job"], p["status"], queue=False)

    def _submit(self, kind: str):
        return lambda: self.board.submit(kind)


def _constant(value):
    return lambda: value


def build_app(model, **kw) -> tuple[App, gr.Blocks]:
    """The app around a ModelLoader or a loaded generate.Pipeline (App's arguments), and its page
    (queue: one job at a time)."""
    app = App(model, **kw)
    demo = app.build()
    demo.queue(default_concurrency_limit=1)
    return app, demo


def launch(demo: gr.Blocks, app: App, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **kw):
    """Serve the page (uploads capped at MAX_UPLOAD_MB); the model loads in the background once a
    page is open or a job comes, or MODEL_START_S after launch without either. block=False returns
    once the page is up."""
    # local fonts: the default theme's come from a web font service, which a local app must not need
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    # _frontend=False skips gradio's start-up probe of its own page (5 HEAD requests of 3 s each), which
    # fails the launch on a machine busy enough to answer slower; the page is served all the same
    out = demo.launch(server_name=host, server_port=port, max_file_size=inp.MAX_UPLOAD_BYTES,
                      allowed_paths=[str(app.out_dir)], prevent_thread_lock=True, quiet=not block,
                      footer_links=[], theme=theme, _frontend=False, **kw)
    timer = threading.Timer(MODEL_START_S, app.model.start)  # no page opened: load it all the same
    timer.daemon = True
    timer.start()
    if block:
        demo.block_thread()
    return out
