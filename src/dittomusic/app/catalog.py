"""What the page is built from besides the model's weights: the registered tasks (a tab each; none
for a task that is not ready) and methods (each tab's menu), the intensity presets, and the model's
tags and clip length.

The registries import torch (1.6 CPU-s of the 5-6 the page took), so `dittomusic ui` reads them in
a child process, on the other core, while it imports gradio itself (3.4 CPU-s); its own torch comes
with the model, in the background once a page is open (app/model.py). The child also
refuses what loading the model would refuse cheaply (a config load_model rejects, an unknown
vocoder), so the command still fails before serving. A process that has imported torch already, or
has one core only, reads the catalog itself, and so does one whose child fails (logged).

    pending = start_catalog(model_path, vocoder)  # the child runs...
    import gradio                                 # ...while this process imports gradio
    catalog = pending.result()                    # a DittoError for a model the child refused"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from dittomusic.errors import DittoError
from dittomusic.options import Option

log = logging.getLogger("dittomusic.app")
CHILD_TIMEOUT_S = 600.0  # generous: on a busy machine the child's torch import alone can take 20 s
_CHILD = ("import json, sys; a = json.loads(sys.argv[1]); sys.path[:0] = a['path']; "
          "from dittomusic.app.catalog import _child; _child(a['model'], a['vocoder'])")


@dataclass(frozen=True)
class TaskEntry:
    """What the page needs of a registered task (control.spec.TaskSpec)."""

    name: str
    help: str
    options: tuple[Option, ...]
    unready: str | None = None  # TaskSpec.ready()'s answer: why it cannot run with its defaults


@dataclass(frozen=True)
class Catalog:
    tasks: tuple[TaskEntry, ...]  # the registry's order
    methods: tuple[str, ...]
    intensity_presets: tuple[str, ...]
    vocab: dict  # the model's tags: collections, instruments, tempo_buckets, modes
    clip_seconds: float  # the model's clip length
    sampling: dict = field(default_factory=lambda: {"sampler": "ddim", "guidance": 3.0})  # the model's defaults

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Catalog:
        tasks = tuple(TaskEntry(t["name"], t["help"], tuple(Option(**{**o, "choices": tuple(o["choices"])})
                                                            for o in t["options"]), t["unready"])
                      for t in d["tasks"])
        return cls(tasks, tuple(d["methods"]), tuple(d["intensity_presets"]), d["vocab"], float(d["clip_seconds"]),
                   **({"sampling": d["sampling"]} if isinstance(d.get("sampling"), dict) else {}))


def read_catalog(model_path=None, vocoder: str | None = None, pipe=None) -> Catalog:
    """The catalog, read in this process (the registries import torch). pipe: a loaded
    generate.Pipeline, whose tags and clip length are taken as they are; else model_path's header,
    its config checked as load_model checks it, and the vocoder's name checked."""
    from dittomusic.checkpoint import sampling_defaults
    from dittomusic.control.methods import all_methods
    from dittomusic.control.spec import all_tasks
    from dittomusic.control.targets import INTENSITY_PRESETS

    if pipe is not None:
        vocab, mel, sampling = pipe.backend.vocab, pipe.backend.mel_cfg, pipe.sampling
    else:
        from dittomusic.audio.mel import MelConfig
        from dittomusic.audio.vocoder import resolve_vocoder
        from dittomusic.checkpoint import model_file
        from dittomusic.models.loading import clip_frames

        from .model import check_model_file

        meta = check_model_file(model_path)
        mel = MelConfig(clip_frames=clip_frames(meta, model_file(model_path)))
        vocab, sampling = meta["model_config"]["vocab"], sampling_defaults(meta)
        if vocoder is not None:
            resolve_vocoder(vocoder)
    tasks = tuple(TaskEntry(t.name, t.help, tuple(t.options), t.ready() if t.ready is not None else None)
                  for t in all_tasks())
    return Catalog(tasks, tuple(m.name for m in all_methods()), tuple(INTENSITY_PRESETS), vocab,
                   mel.clip_frames / mel.frame_rate, sampling)


class PendingCatalog:
    """A catalog being read in a child process (see the module's docstring); result() waits for it."""

    def __init__(self, model_path=None, vocoder: str | None = None):
        self.model_path, self.vocoder = model_path, vocoder
        self.proc: subprocess.Popen | None = None
        if "torch" in sys.modules or _cores() < 2:  # nothing to gain from a child: read it here
            return
        arg = json.dumps({"path": sys.path, "model": None if model_path is None else str(model_path),
                          "vocoder": vocoder})
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, arg], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            log.warning("cannot start a process to read the tasks and methods (%s): reading them here", e)

    def result(self, timeout: float = CHILD_TIMEOUT_S) -> Catalog:
        if self.proc is not None:
            try:
                out, err = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
                err = f"no answer in {timeout:g} s. {err}"
            answer = _answer(out)
            if "error" in answer:
                raise DittoError(answer["error"])
            if "catalog" in answer:
                return Catalog.from_dict(answer["catalog"])
            log.warning("the process reading the tasks and methods failed (exit %s): %s; reading them here",
                        self.proc.returncode, (err or "").strip()[-2000:])
        return read_catalog(self.model_path, self.vocoder)


def start_catalog(model_path=None, vocoder: str | None = None) -> PendingCatalog:
    return PendingCatalog(model_path, vocoder)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _answer(out: str | None) -> dict:
    """The child's answer: its last line of output, a JSON object."""
    lines = (out or "").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _child(model_path: str | None, vocoder: str | None) -> None:
    try:
        answer = {"catalog": read_catalog(model_path, vocoder).to_dict()}
    except DittoError as e:
        answer = {"error": str(e)}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
    sys.stdout.flush()
