"""What the app checks before anything runs, its jobs, and the library pieces it added (the target
preview, combined controls, the shared control-run steps), without a browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dittomusic.app import inputs as inp
from dittomusic.app.jobs import JobBoard, JobCancelled
from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

CFG = MelConfig()


def _sketch(points, size=inp.CANVAS, width=3):
    """A sketchpad value whose one layer holds a polyline through (x, y) pixel points."""
    w, h = size
    layer = np.zeros((h, w, 4), dtype=np.uint8)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        for x in range(x0, x1 + 1):
            y = int(round(y0 + (y1 - y0) * (x - x0) / max(1, x1 - x0)))
            layer[max(0, y - width):y + width, x, :] = (30, 60, 140, 255)
    return {"background": inp.sketch_background(size), "layers": [layer], "composite": None}


def test_a_drawn_line_becomes_a_curve_between_the_sliders():
    w, h = inp.CANVAS
    pts = inp.curve_from_sketch(_sketch([(0, h - 1), (w // 2, 0), (w - 1, h - 1)]), 4.0, -40, -20)
    t, db = np.array(pts).T
    assert len(pts) == inp.CURVE_POINTS and np.all(np.diff(t) > 0) and 0 < t[0] and t[-1] < 4.0
    assert db.max() == pytest.approx(-20, abs=0.6) and db[0] == pytest.approx(-40, abs=0.6)
    assert abs(t[np.argmax(db)] - 2.0) < 0.1
    # a stroke over part of the width only: the curve covers that part, the CSV holds the ends
    part = inp.curve_from_sketch(_sketch([(w // 4, h // 2), (w // 2, h // 2)]), 4.0, -40, -20)
    assert 0.9 < part[0][0] < 1.1 and 1.9 < part[-1][0] < 2.1 and all(abs(d + 30) < 0.5 for _, d in part)


def test_the_drawn_curve_is_what_the_intensity_target_reads(tmp_path):
    from dittomusic.control.targets import intensity_from_csv

    w, h = inp.CANVAS
    pts = inp.curve_from_sketch(_sketch([(0, h - 1), (w - 1, 0)]), 2.0, -40, -20)
    y = intensity_from_csv(inp.write_curve(pts, tmp_path / "c.csv"), CFG.frames_for(2.0), CFG).numpy()
    assert y[0] == pytest.approx(-40, abs=0.5) and y[-1] == pytest.approx(-20, abs=0.5)
    assert np.all(np.diff(y) >= -1e-4)


def test_an_empty_canvas_and_a_bad_range_are_refused():
    with pytest.raises(DittoError, match="nothing is drawn"):
        inp.curve_from_sketch({"background": inp.sketch_background(), "layers": [], "composite": None}, 2, -40, -20)
    with pytest.raises(DittoError, match="nothing is drawn"):
        inp.curve_from_sketch(None, 2, -40, -20)
    with pytest.raises(DittoError, match="must be above"):
        inp.curve_from_sketch(_sketch([(0, 10), (100, 10)]), 2, -20, -40)
    # without layers: where the composite differs from the background
    bg = inp.sketch_background()
    comp = bg.copy()
    comp[100:104, 200:300] = (30, 60, 140)
    pts = inp.curve_from_sketch({"background": bg, "layers": [], "composite": comp}, 8.0, -40, -20)
    assert 1.9 < pts[0][0] < 2.1 and len(pts) > 5


@pytest.fixture
def files(tmp_path):
    sr = 22050
    ok = tmp_path / "tone.wav"
    sf.write(ok, 0.2 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr), sr)
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(int(61 * 8000)), 8000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(100))
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(100, np.nan, dtype=np.float32), sr, subtype="FLOAT")
    return dict(ok=ok, long=long, corrupt=corrupt, text=text, empty=empty, nan=nan)


@pytest.mark.parametrize("name, msg", [
    ("corrupt", "not an audio file this app can read"),
    ("text", "not an audio file this app can read"),
    ("empty", "is empty"),
    ("long", "lasts 61.0 s; at most 60 s"),
    ("nan", "NaN or infinite"),
])
def test_bad_recordings_are_refused_with_a_clear_message(files, name, msg):
    with pytest.raises(DittoError, match=msg) as e:
        inp.check_audio(files[name], "recording", CFG)
    assert files[name].name in str(e.value) and str(files[name].parent) not in str(e.value)


def test_uploads_are_capped(files, tmp_path, monkeypatch):
    assert inp.check_audio(files["ok"], "recording", CFG) == files["ok"]
    monkeypatch.setattr(inp, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(DittoError, match="capped at 20 MB"):
        inp.check_file(files["ok"], "recording")
    with pytest.raises(DittoError, match="no recording given"):
        inp.check_file(None, "recording")
    with pytest.raises(DittoError, match="upload it again"):
        inp.check_file(tmp_path / "gone.wav", "recording")


def test_a_midi_file_without_notes_is_refused(tmp_path):
    import music21

    s = music21.stream.Stream([music21.note.Rest(quarterLength=4)])
    empty = tmp_path / "rests.mid"
    s.write("midi", fp=str(empty))
    with pytest.raises(DittoError, match="rests.mid contains no pitched notes"):
        inp.check_midi(empty, CFG)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(DittoError, match="cannot parse"):
        inp.check_midi(bad, CFG)
    tune = tmp_path / "tune.mid"
    music21.stream.Stream([music21.note.Note("E5"), music21.note.Note("D5")]).write("midi", fp=str(tune))
    assert inp.check_midi(tune, CFG) == tune


def test_the_melody_target_is_heard_as_its_notes():
    from dittomusic.control.targets import melody_from_string

    y = melody_from_string("E5:0.5 r:0.25 D5:0.5 C5:0.5", CFG.frames_for(2.0), CFG)
    notes = inp.melody_notes(y, CFG)
    assert [pc for _, _, pc in notes] == [4, 2, 0]
    assert notes[1][0] == pytest.approx(0.75, abs=0.02) and notes[0][1] == pytest.approx(0.5, abs=0.02)
    audio = inp.render_melody(y, CFG)
    assert len(audio) == pytest.approx(2.0 * CFG.sample_rate, abs=CFG.hop_length) and np.abs(audio).max() > 0.01
    with pytest.raises(DittoError, match="no notes"):
        inp.render_melody(torch.full((10,), -1), CFG)


def test_jobs_are_cancelled_while_waiting_or_running():
    board = JobBoard()
    a, b = board.submit("intensity"), board.submit("melody")
    assert a != b and len(board) == 2
    assert "will not start" in board.cancel(b)
    with pytest.raises(JobCancelled, match="before it started"):
        board.start(b)
    job = board.start(a)
    seen = []
    cb = job.optimizer_callback(5, lambda k, n, loss: seen.append((k, n, loss)))
    assert cb({"iter": 0, "loss": torch.tensor([2.0, 4.0])}) is False
    assert "stops after its current iteration" in board.cancel(a)
    assert cb({"iter": 1, "loss": torch.tensor([1.0, 1.0])}) is True
    assert seen == [(0, 5, 3.0), (1, 5, 1.0)] and job.iteration == 1
    with pytest.raises(JobCancelled):
        job.sampler_callback(3)({})
    board.finish(a)
    assert board.cancel(a) == "Nothing to cancel." and len(board) == 0
    with pytest.raises(DittoError, match="unknown to the server"):
        board.start("nope")


def test_the_model_of_each_method_is_chosen_once(monkeypatch):
    """model_for reads DITTO-2's student checkpoint and hashes the bundled models: once a method, not every job."""
    from types import SimpleNamespace

    from dittomusic.app.ui import App
    from dittomusic.control import runs

    calls = []
    monkeypatch.setattr(runs, "model_for", lambda method, *a: calls.append(method))  # None: the app's own model
    app = SimpleNamespace(default_model=True, student=None, backend="base", _teachers={}, _model_files={})
    assert [App.backend_for(app, m) for m in ("ditto2", "ditto2", "ditto", "ditto2")] == ["base"] * 4
    assert calls == ["ditto2", "ditto"]


def test_a_cancelled_optimization_keeps_its_best_iterate():
    from dittomusic.control.optimize import OptimConfig, optimize_latent

    board = JobBoard()
    job = board.start(board.submit("x"))
    cb = job.optimizer_callback(50)

    def stop_at_3(info):
        if info["iter"] == 3:
            board.cancel(job.id)
        return cb(info)

    r = optimize_latent(lambda x: x, lambda x0: x0.square().sum(dim=(1, 2)), torch.ones(1, 2, 3),
                        OptimConfig(iters=50, lr=0.1), callback=stop_at_3)
    assert r.stopped == "callback" and r.iters == 3 and r.best_iter == [3]


def test_combined_controls_scale_the_second_weight():
    from dittomusic.control.tasks import TaskOptions, build_control, combine

    fr = 128
    a = build_control("intensity", fr, TaskOptions())
    b = build_control("melody", fr, TaskOptions(target_notes="C5:1"))
    same = build_control("intensity+melody", fr, TaskOptions(target_notes="C5:1"))
    both = combine([("intensity", a), ("melody", b)], [1.0, 2.0])
    assert [w for _, w in same.items] == [0.125, 0.5]
    assert [w for _, w in both.items] == [0.125, 1.0]
    assert combine([("melody", b)]) is b
    with pytest.raises(DittoError, match="names a control twice"):
        combine([("melody", b), ("melody", b)])


def test_every_task_previews_its_target(tmp_path):
    from dittomusic.control.plots import plot_target
    from dittomusic.control.tasks import TaskOptions, build_control

    sr = 22050
    ref = tmp_path / "ref.wav"
    sf.write(ref, 0.1 * np.sin(2 * np.pi * 440 * np.arange(3 * sr) / sr), sr)
    for task, o in [("intensity+melody", TaskOptions(target_notes="C5:1")), ("structure", TaskOptions()),
                    ("outpaint", TaskOptions(reference=str(ref))), ("inpaint", TaskOptions(reference=str(ref), gap_s=0.5)),
                    ("loop", TaskOptions(overlap_s=0.5))]:
        png = plot_target(build_control(task, 128, o), tmp_path / f"{task}.png", title=task)
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_ui_command_is_listed_and_refuses_a_missing_model(tmp_path):
    from dittomusic.cli import cli

    r = CliRunner().invoke(cli, ["ui", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "127.0.0.1" in r.output
    r = CliRunner().invoke(cli, ["ui", "--model", str(tmp_path / "none.safetensors")])
    assert r.exit_code == 1 and "checkpoint not found" in r.output and "Traceback" not in r.output


def test_write_outputs_is_what_the_cli_writes(tiny_model_path, tmp_path):
    from dittomusic.control.methods import run_control
    from dittomusic.control.runs import run_settings, start_latent, write_outputs
    from dittomusic.control.tasks import TaskOptions, build_control
    from dittomusic.generate import Pipeline

    pipe = Pipeline(tiny_model_path, "cpu", "griffinlim")
    ctrl = build_control("intensity", 128, TaskOptions())
    method, s = run_settings("intensity", "ditto", 1, steps=2)
    assert s.optim.iters == 1 and s.optim.lr == 5e-3
    res = run_control(pipe, method, ctrl, None, settings=s, task="intensity")
    out = write_outputs(res, ctrl, tmp_path / "a.wav", task="intensity", report=tmp_path / "a.json",
                        latent=tmp_path / "a.safetensors")
    assert [p.name for p in out.paths] == ["a.wav", "a.png", "a.json", "a.safetensors"]
    assert json.loads(out.report.read_text())["iterations"] == 1
    x_T, resume = start_latent(out.latent, "ditto", pipe.backend)
    assert torch.equal(x_T, resume["x_T"])
    # a method that cannot continue it samples the saved x_T as it is (latent reuse, App. I), per batch item
    x3, none = start_latent(out.latent, "freedom", pipe.backend, batch=3)
    from dittomusic.control.optimize import load_latent

    best = load_latent(out.latent)[0]
    assert none is None and x3.shape[0] == 3 and all(torch.equal(row, best[0]) for row in x3)
    assert start_latent(None, "freedom", pipe.backend) == (None, None)
