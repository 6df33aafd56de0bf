"""One tab per control task: the inputs that suit it, and how their values become the task's
TaskOptions. A registered task without a tab of its own here gets a form built from its
TaskSpec.options, so a new task (e.g. text control) appears in the app once it is registered.

The tabs are built from the registries' catalog (app/catalog.py), not the registries themselves,
which import torch. A tab's `options(values, ctx)` checks the uploads (app/inputs.py) and returns
(task name, TaskOptions fields); the control itself is built by control.tasks.build_control."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from dittomusic.errors import DittoError

from . import inputs as inp
from .catalog import Catalog, TaskEntry

if TYPE_CHECKING:
    from dittomusic.audio.mel import MelConfig

log = logging.getLogger("dittomusic.app")


@dataclass
class Ctx:
    """What options() may need besides the inputs: the clip length and a folder of its own."""

    seconds: float
    cfg: MelConfig
    scratch: Path


class Tab:
    id = ""
    label = ""
    tasks: tuple[str, ...] = ()  # registered tasks it needs (any one, for painting)
    method = "ditto2"

    def __init__(self):
        self.inputs: list = []

    def build(self) -> None:
        raise NotImplementedError

    def options(self, values: list, ctx: Ctx) -> tuple[str, dict]:
        raise NotImplementedError

    def note(self, values: list, ctx: Ctx, task: str, opts: dict) -> str:
        """A line under the target plot: what the target is."""
        return ""

    def unready(self, values: list) -> str | None:
        """Why the inputs, as they are being edited, make no target yet (said beside the plot, not as
        an error: the run and "Show the target" still refuse them), or None."""
        return None

    def triggers(self) -> list[tuple]:
        """(component, event, source) that refresh the target plot; source: the value the tab's
        "Target from" radio takes first (the source last touched becomes the target), or None."""
        return [(c, "change", None) for c in self.inputs]


def _recording(label: str, elem_id: str) -> gr.Audio:
    return gr.Audio(sources=["upload", "microphone"], type="filepath", label=label, elem_id=elem_id)


class IntensityTab(Tab):
    id, label, tasks = "intensity", "Intensity", ("intensity",)
    SOURCES = ("preset", "drawing", "CSV file", "recording")

    def __init__(self, presets: tuple[str, ...]):
        super().__init__()
        self.presets = presets  # control.targets.INTENSITY_PRESETS

    def build(self) -> None:
        gr.Markdown("Loudness over time. Draw the curve (left to right is the clip, the top edge the loud end, the "
                    "bottom edge the quiet end), pick a preset, or upload a `time_s,db` CSV or a recording.")
        with gr.Row():
            with gr.Column(scale=1):
                self.source = gr.Radio(list(self.SOURCES), value="preset", label="Target from",
                                       elem_id="intensity-source")
                self.preset = gr.Dropdown(list(self.presets), value="tanh-rise", label="Preset")
                self.low = gr.Slider(-60, 0, value=-38, step=0.5, label="Quiet end (dB)")
                self.high = gr.Slider(-60, 0, value=-18, step=0.5, label="Loud end (dB)")
            with gr.Column(scale=2):
                self.sketch = gr.Sketchpad(
                    value={"background": inp.sketch_background(), "layers": [], "composite": None},
                    canvas_size=inp.CANVAS, fixed_canvas=True, type="numpy", image_mode="RGBA", layers=False,
                    transforms=(), brush=gr.Brush(default_size=6, colors=["#1f3b8a"], color_mode="fixed"),
                    label="Draw the loudness curve", elem_id="intensity-canvas")
        with gr.Row():
            self.csv = gr.File(file_types=[".csv", ".txt"], label="Curve CSV (time_s,db)", elem_id="intensity-csv")
            self.audio = _recording("Reference recording (its loudness)", "intensity-audio")
        self.inputs = [self.source, self.preset, self.low, self.high, self.sketch, self.csv, self.audio]

    def triggers(self):
        return [(self.source, "input", None), (self.preset, "input", "preset"), (self.low, "release", None),
                (self.high, "release", None), (self.sketch, "input", "drawing"), (self.csv, "upload", "CSV file"),
                (self.audio, "input", "recording")]

    def options(self, values, ctx):
        source, preset, low, high, sketch, csv, audio = values
        if source == "drawing":
            pts = inp.curve_from_sketch(sketch, ctx.seconds, low, high)
            return "intensity", {"target_curve": str(inp.write_curve(pts, ctx.scratch / "curve.csv"))}
        if source == "CSV file":
            return "intensity", {"target_curve": str(inp.check_file(csv, "curve CSV"))}
        if source == "recording":
            return "intensity", {"target_audio": str(inp.check_audio(audio, "recording", ctx.cfg))}
        return "intensity", {"preset": preset, "low_db": float(low), "high_db": float(high)}

    def unready(self, values):
        # the canvas's input event comes as a stroke begins, its line not yet in the value
        if values[0] == "drawing" and not inp.has_strokes(values[4]):
            return "nothing is drawn yet: draw a line from left to right (high = loud, low = quiet)"
        return None

    def note(self, values, ctx, task, opts):
        if opts.get("target_curve"):
            return Path(opts["target_curve"]).read_text(encoding="utf-8-sig")
        if opts.get("target_audio"):
            return "the recording's own loudness"
        return f"{opts['preset']} from {opts['low_db']:g} to {opts['high_db']:g} dB"


class MelodyTab(Tab):
    id, label, tasks = "melody", "Melody", ("melody",)
    SOURCES = ("notes", "MIDI file", "recording")

    def build(self) -> None:
        gr.Markdown("The top line's pitch over time. Type notes as `NOTE:SECONDS` (`r` rests), upload a MIDI file "
                    "(its top line) or a recording; hear the target before steering.")
        self.source = gr.Radio(list(self.SOURCES), value="notes", label="Target from", elem_id="melody-source")
        self.notes = gr.Textbox("E5:0.5 D5:0.5 C5:0.5 D5:0.5 E5:0.5 E5:0.5 E5:1", label="Notes",
                                elem_id="melody-notes")
        with gr.Row():
            self.midi = gr.File(file_types=[".mid", ".midi"], label="MIDI file", elem_id="melody-midi")
            self.audio = _recording("Recording (its melody)", "melody-audio")
        with gr.Row():
            self.hear = gr.Button("Hear the target", elem_id="melody-hear")
            self.target_audio = gr.Audio(label="The target melody", interactive=False, elem_id="melody-target-audio")
        self.inputs = [self.source, self.notes, self.midi, self.audio]

    def triggers(self):
        return [(self.source, "input", None), (self.notes, "submit", "notes"), (self.notes, "blur", "notes"),
                (self.midi, "upload", "MIDI file"), (self.audio, "input", "recording")]

    def options(self, values, ctx):
        source, notes, midi, audio = values
        if source == "MIDI file":
            return "melody", {"target_midi": str(inp.check_midi(midi, ctx.cfg))}
        if source == "recording":
            return "melody", {"target_audio": str(inp.check_audio(audio, "recording", ctx.cfg))}
        if not (notes or "").strip():
            raise DittoError('type the melody as notes, e.g. "E5:0.5 D5:0.5 C5:1" (r:0.5 is a rest)')
        return "melody", {"target_notes": notes}

    def note(self, values, ctx, task, opts):
        if opts.get("target_notes"):
            return f"{len(opts['target_notes'].replace(',', ' ').split())} notes and rests, pitch classes only"
        return "the top line of the MIDI file" if opts.get("target_midi") else "the recording's melody (chroma)"


class StructureTab(Tab):
    id, label, tasks = "structure", "Structure", ("structure",)
    SOURCES = ("pattern", "recording")

    def build(self) -> None:
        gr.Markdown("Repetition and contrast between phrases: a pattern of equal-length sections such as AABA "
                    "(same letter, same material), drawn as its self-similarity matrix; or a recording's own.")
        self.source = gr.Radio(list(self.SOURCES), value="pattern", label="Target from", elem_id="structure-source")
        self.pattern = gr.Textbox("AABA", label="Pattern", elem_id="structure-pattern")
        self.audio = _recording("Recording (its structure)", "structure-audio")
        self.inputs = [self.source, self.pattern, self.audio]

    def triggers(self):
        return [(self.source, "input", None), (self.pattern, "submit", "pattern"), (self.pattern, "blur", "pattern"),
                (self.audio, "input", "recording")]

    def options(self, values, ctx):
        source, pattern, audio = values
        if source == "recording":
            return "structure", {"target_audio": str(inp.check_audio(audio, "recording", ctx.cfg))}
        return "structure", {"target_pattern": pattern}

    def note(self, values, ctx, task, opts):
        if opts.get("target_audio"):
            return "the recording's own self-similarity"
        n = len("".join(ch for ch in opts["target_pattern"] if ch.isalpha()))
        return f"{opts['target_pattern'].upper()}: {n} sections of {ctx.seconds / max(1, n):.2f} s"


class PaintingTab(Tab):
    id, label, tasks = "painting", "Painting", ("outpaint", "inpaint", "loop")

    def __init__(self, modes: list[str]):
        super().__init__()
        self.modes = modes

    def build(self) -> None:
        gr.Markdown("Continue a recording (outpaint), fill a gap in it (inpaint) or make a clip that loops into "
                    "it. The plot shades the part of the reference the new clip must match.")
        self.reference = _recording("Reference", "painting-reference")
        self.mode = gr.Radio(self.modes, value=self.modes[0], label="Mode", elem_id="painting-mode")
        with gr.Row():
            self.overlap = gr.Slider(0.25, 5, value=1.0, step=0.05, label="Overlap (s): outpaint, loop")
            self.gap_start = gr.Slider(0, inp.MAX_AUDIO_S, value=0, step=0.05,
                                       label="Gap start (s): inpaint; 0 centres the gap")
            self.gap = gr.Slider(0.25, 10, value=2.0, step=0.05, label="Gap (s): inpaint")
        self.inputs = [self.reference, self.mode, self.overlap, self.gap_start, self.gap]

    def triggers(self):
        return [(self.reference, "input", None), (self.mode, "input", None), (self.overlap, "release", None),
                (self.gap_start, "release", None), (self.gap, "release", None)]

    def options(self, values, ctx):
        ref, mode, overlap, gap_start, gap = values
        if mode not in self.modes:
            raise DittoError(f"choose a painting mode: {', '.join(self.modes)}")
        if ref:
            ref = str(inp.check_audio(ref, "reference", ctx.cfg))
        elif mode != "loop":
            raise DittoError(f"{mode} needs a reference: upload or record one (or send a result here with "
                             "'Use as reference')")
        return mode, {"reference": ref or None, "overlap_s": float(overlap),
                      "gap_start_s": float(gap_start) if gap_start else None, "gap_s": float(gap)}


    def note(self, values, ctx, task, opts):
        what = {"outpaint": f"continue the reference, matching its last {opts['overlap_s']:g} s",
                "loop": f"loop into the reference over {opts['overlap_s']:g} s at each end",
                "inpaint": f"fill a {opts['gap_s']:g} s gap"}[task]
        return what if opts["reference"] or task != "loop" else "a clip that loops on itself"


class GenericTab(Tab):
    """A form of a task's own options (TaskSpec.options), for a task without a tab above."""

    def __init__(self, spec: TaskEntry):
        super().__init__()
        self.spec = spec
        self.id, self.label, self.tasks = spec.name, spec.name.capitalize(), (spec.name,)

    def build(self) -> None:
        gr.Markdown(self.spec.help.capitalize() + ".")
        self.fields = []
        for o in self.spec.options:
            label = f"{o.help}"
            if o.kind == "path":
                c = gr.File(label=label)
            elif o.kind == "choice":
                c = gr.Dropdown(list(o.choices), value=o.default, label=label)
            elif o.kind in ("float", "int"):
                c = gr.Number(o.default, label=label, precision=0 if o.kind == "int" else None)
            else:
                c = gr.Textbox(o.default or "", label=label, lines=2)
            self.fields.append((o, c))
        self.inputs = [c for _, c in self.fields]

    def options(self, values, ctx):
        out = {}
        for (o, _), v in zip(self.fields, values):
            if o.kind == "path" and v:
                v = str(inp.check_file(v, o.flag.lstrip("-").replace("-", " ")))
            out[o.dest] = None if v in ("", None) else (int(v) if o.kind == "int" else v)
        return self.spec.name, out


def task_tabs(catalog: Catalog) -> list[Tab]:
    """The tabs of the registered tasks, in the tasks' order; each task in one tab."""
    names = [t.name for t in catalog.tasks]
    tabs: list[Tab] = [IntensityTab(catalog.intensity_presets)] if "intensity" in names else []
    tabs += [cls() for cls in (MelodyTab, StructureTab) if cls.tasks[0] in names]
    modes = [m for m in PaintingTab.tasks if m in names]
    if modes:
        tabs.append(PaintingTab(modes))
    covered = {t for tab in tabs for t in tab.tasks}
    for t in catalog.tasks:
        if t.unready:
            log.info("no %s tab: %s", t.name, t.unready)
        elif t.name not in covered:
            tabs.append(GenericTab(t))
    return tabs
