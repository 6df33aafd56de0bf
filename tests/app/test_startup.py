"""`dittomusic ui` serves its page before torch and the model are loaded (issue 22): the model file
is checked from its header, the page is built from the registries' catalog read in a child process,
and the model loads once in the background; jobs that come first wait for it, and a load that
failed is a message for every job."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
import torch
from click.testing import CliRunner

from dittomusic.app.catalog import Catalog, read_catalog
from dittomusic.app.model import LOADING, ModelLoader, check_model_file
from dittomusic.checkpoint import load_tensors, read_meta, save_tensors
from dittomusic.errors import DittoError

from .conftest import SECONDS

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["", [], "", "", "", 5, 2, 3.0, SECONDS, 0]  # the page's shared settings, two sampler steps


def test_the_header_holds_the_checkpoints_metadata(tiny_model_path, tmp_path):
    assert read_meta(tiny_model_path) == load_tensors(tiny_model_path)[1]
    with pytest.raises(DittoError, match="checkpoint not found"):
        read_meta(tmp_path / "none.safetensors")
    bad = {"junk.safetensors": b"not a checkpoint at all",
           "short.safetensors": b"\x01\x02",
           "long.safetensors": (1 << 40).to_bytes(8, "little") + b"{}",
           "list.safetensors": (2).to_bytes(8, "little") + b"[]"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DittoError, match="is not a dittomusic safetensors checkpoint"):
            read_meta(tmp_path / name)


def _save(path, meta):
    save_tensors(path, {"w": torch.zeros(2)}, meta)
    return path


@pytest.mark.parametrize("meta, msg", [
    ({"kind": "base"}, "carries no model config"),
    ({"kind": "autoencoder", "model_config": {}}, "is an autoencoder, not a diffusion model"),
    (None, "has no tag vocabulary"),  # the tiny model without its tags
])
def test_a_foreign_model_file_is_refused_from_its_header_as_loading_refuses_it(tmp_path, tiny_model_path, meta, msg):
    from dittomusic.generate import Pipeline

    path = tmp_path / "m.safetensors"
    if meta is None:
        tensors, meta = load_tensors(tiny_model_path)
        save_tensors(path, tensors, {**meta, "model_config": {k: v for k, v in meta["model_config"].items()
                                                              if k != "vocab"}})
    else:
        _save(path, meta)
    with pytest.raises(DittoError, match=msg) as header:
        check_model_file(path)
    with pytest.raises(DittoError, match=msg) as loading:
        Pipeline(path, "cpu", "griffinlim")
    assert str(header.value) == str(loading.value)


def test_the_ui_command_fails_before_serving(tmp_path, tiny_model_path, monkeypatch):
    import dittomusic.app.ui as ui
    from dittomusic.cli import cli

    monkeypatch.setattr(ui, "launch", lambda *a, **kw: pytest.fail("served a model it should have refused"))
    runner = CliRunner()
    junk = tmp_path / "junk.safetensors"
    junk.write_text("hello")
    no_config = _save(tmp_path / "no_config.safetensors", {"kind": "base"})
    bad_config = tmp_path / "bad_config.safetensors"
    meta = read_meta(tiny_model_path)
    _save(bad_config, {**meta, "model_config": {**meta["model_config"], "clip_frames": -1}})
    for args, msg in [(["--model", str(junk)], "not a dittomusic safetensors checkpoint"),
                      (["--model", str(no_config)], "carries no model config"),
                      (["--model", str(bad_config)], "is not a usable dittomusic model"),
                      (["--model", str(tiny_model_path), "--vocoder", "nope"], "unknown vocoder 'nope'")]:
        r = runner.invoke(cli, ["ui", "--port", "1", *args])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, (args, r.output)


def test_the_catalog_is_what_the_registries_and_the_loaded_model_say(tiny_model_path):
    from dittomusic.control.methods import all_methods
    from dittomusic.control.spec import all_tasks
    from dittomusic.generate import Pipeline

    cat = read_catalog(tiny_model_path, "griffinlim")
    assert [t.name for t in cat.tasks] == [t.name for t in all_tasks()]
    assert cat.methods == tuple(m.name for m in all_methods()) and "tanh-rise" in cat.intensity_presets
    assert Catalog.from_dict(json.loads(json.dumps(cat.to_dict()))) == cat
    for path in (tiny_model_path, None):  # a mel model, and the bundled latent one
        assert read_catalog(path) == read_catalog(pipe=Pipeline(path, "cpu", "griffinlim"))


def test_the_page_is_built_without_torch(tiny_model_path, tmp_path):
    """A new process builds the page (the catalog read by its child) without importing torch;
    starting the model imports it."""
    code = f"""if True:
        import json, sys
        sys.path.insert(0, {str(ROOT / 'src')!r})
        from dittomusic.app.catalog import start_catalog
        from dittomusic.app.model import ModelLoader, check_model_file
        path = sys.argv[1]
        check_model_file(path)
        pending = start_catalog(path, "griffinlim")
        from dittomusic.app.ui import build_app
        app, demo = build_app(ModelLoader(path, "cpu", "griffinlim"), catalog=pending.result(), out_dir=sys.argv[2])
        out = {{"torch": "torch" in sys.modules, "child": pending.proc is not None,
               "tabs": [t.label for t in app.tabs], "catalog": app.catalog.to_dict(),
               "routes": [d.get("api_name") for d in demo.config["dependencies"]]}}
        app.model.start()
        frames = app.backend.frames_for(1.5)
        out["torch_after"] = "torch" in sys.modules
        print(json.dumps(out))
    """
    r = subprocess.run([sys.executable, "-c", code, str(tiny_model_path), str(tmp_path)], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not out["torch"] and out["child"] and out["torch_after"]
    assert out["tabs"][:4] == ["Intensity", "Melody", "Structure", "Painting"]
    assert {"generate", "intensity", "melody"} <= set(out["routes"])
    assert Catalog.from_dict(out["catalog"]) == read_catalog(tiny_model_path, "griffinlim")


@pytest.fixture
def slow_pipeline(monkeypatch):
    """Pipeline construction held until the test releases it; the number of loads."""
    import dittomusic.generate as gen

    gate, loads, real = threading.Event(), [], gen.Pipeline

    class Held(real):
        def __init__(self, *a, **kw):
            loads.append(a)
            assert gate.wait(120), "the test never released the model"
            super().__init__(*a, **kw)

    monkeypatch.setattr(gen, "Pipeline", Held)
    return gate, loads


def _app(tiny_model_path, tmp_path):
    from dittomusic.app.ui import build_app

    app, _ = build_app(ModelLoader(tiny_model_path, "cpu", "griffinlim"),
                       catalog=read_catalog(tiny_model_path, "griffinlim"), out_dir=tmp_path,
                       defaults={"steps": 2, "iters": 2, "seconds": SECONDS})
    return app


def _until(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_jobs_that_come_first_wait_for_the_model_then_run(tiny_model_path, tmp_path, slow_pipeline):
    gate, loads = slow_pipeline
    app = _app(tiny_model_path, tmp_path)
    app.model.start()
    told, out = [], {}

    def progress(value, desc=None, **kw):
        told.append(desc)

    first = threading.Thread(target=lambda: out.setdefault("first", app.generate(None, *COMMON, progress=progress)))
    first.start()
    _until(lambda: LOADING in told)
    # a second job, cancelled while it waits for the model, never starts
    second_id = app.board.submit("generate")
    second = threading.Thread(target=lambda: out.setdefault("second", _raises(app.generate, second_id, *COMMON,
                                                                              progress=progress)))
    second.start()
    time.sleep(0.2)
    assert "will not start" in app.board.cancel(second_id)
    second.join(30)
    assert isinstance(out["second"], DittoError) and "cancelled before it started" in str(out["second"])
    assert first.is_alive() and not app.model.ready and app.history == []
    gate.set()
    first.join(120)
    status, wav, *_ = out["first"]
    assert status.startswith("**Generated**") and wav.endswith("generated.wav")
    # later jobs and target previews use the same model: loaded once
    assert app.generate(None, *COMMON, progress=progress)[0].startswith("**Generated**")
    defaults = [c.value for t in app.tabs for c in t.inputs]  # every tab's inputs as the page starts
    png, note = app.preview(app.tabs[0], *COMMON, *defaults)
    assert Path(png).is_file() and "tanh-rise" in note
    assert len(loads) == 1 and len(app.board) == 0 and [s for _, s in app.history] == [5, 5]


def _raises(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except Exception as e:
        return e


def test_an_error_stays_in_the_page_until_it_is_closed():
    """gradio's toast goes after 10 s by default, leaving a bare red "Error" on a job's outputs that
    failed minutes after its click (scripts/ui_screenshots.py's DITTO-2 job on a teacher its student
    was not distilled from showed nothing else once it was looked at)."""
    from dittomusic.app.ui import shown

    for error in (DittoError("DITTO-2 needs the student's own teacher"), RuntimeError("a bug")):
        def fail(error=error):
            raise error

        with pytest.raises(gr.Error) as e:
            shown(fail)()
        assert e.value.duration is None and e.value.visible and e.value.message


def test_a_stroke_just_begun_is_a_note_not_an_error(tiny_model_path, tmp_path):
    """The canvas's input event comes as a stroke begins, nothing drawn yet: the live preview says so
    beside the plot (an error there would stay in the page); "Show the target" still refuses it."""
    from dittomusic.app.ui import shown

    from .test_inputs import _sketch

    app = _app(tiny_model_path, tmp_path)
    tab = next(t for t in app.tabs if t.id == "intensity")
    empty = {"background": None, "layers": [], "composite": None}

    def values(sketch):
        v = [c.value for t in app.tabs for c in t.inputs]  # every tab's inputs as the page starts
        i = sum(len(t.inputs) for t in app.tabs[:app.tabs.index(tab)])
        v[i], v[i + 4] = "drawing", sketch
        return v

    for sketch in (empty, None):
        assert shown(app.preview)(tab, *COMMON, *values(sketch), live=True) == (
            None, "nothing is drawn yet: draw a line from left to right (high = loud, low = quiet)")
    assert not app.model.ready  # no model needed to say so
    with pytest.raises(gr.Error, match="nothing is drawn on the loudness canvas"):
        shown(app.preview)(tab, *COMMON, *values(empty))
    w, h = (480, 120)
    png, note = shown(app.preview)(tab, *COMMON, *values(_sketch([(0, h - 1), (w - 1, 0)], size=(w, h))), live=True)
    assert Path(png).is_file() and note.startswith("time_s,db")


@pytest.mark.parametrize("error, msg", [
    (DittoError("unknown vocoder 'x'"), "the model could not be loaded: unknown vocoder 'x'"),
    (RuntimeError("no CUDA GPUs are available"), ("the model could not be loaded (RuntimeError: no CUDA GPUs are "
                                                  "available); the details are in the server's log")),
])
def test_a_failed_load_is_a_clear_message_for_every_job(tiny_model_path, tmp_path, monkeypatch, error, msg):
    import dittomusic.generate as gen
    from dittomusic.app.ui import shown

    def fail(*a, **kw):
        raise error

    monkeypatch.setattr(gen, "Pipeline", fail)
    app = _app(tiny_model_path, tmp_path)
    app.model.start()
    for _ in range(2):
        with pytest.raises(gr.Error) as e:
            shown(app.generate)(None, *COMMON, progress=lambda *a, **kw: None)
        assert e.value.message == msg
    with pytest.raises(gr.Error) as e:
        shown(functools.partial(app.run, app.tabs[0]))(None, None, "ditto2", "", 1.0, *COMMON, progress=None)
    assert e.value.message == msg and len(app.board) == 0
