"""Control methods end to end on a tiny random model: DITTO, FreeDoM, naive masking,
MultiDiffusion, the shared DDIM loop, reports and tasks."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.control import get_control, intensity_preset, melody_from_string
from dittomusic.control.methods.baselines import guided_ddim, mask_hook
from dittomusic.control.methods import Settings, available_methods, default_lr, run_control
from dittomusic.control.optimize import OptimConfig
from dittomusic.control.tasks import TaskOptions, build_control, default_iters, default_method, split_task
from dittomusic.errors import DittoError
from dittomusic.sampling.samplers import sample_ddim

FR = 128  # 1.5 s clips keep the tiny model fast


def intensity(frames=FR):
    return get_control("intensity", target=intensity_preset("linear-rise", frames, -40, -20))


def test_registry_has_the_paper_baselines():
    assert {"default", "ditto", "freedom", "naive", "multidiffusion", "multidiffusion50"} <= set(available_methods())


def test_guided_ddim_without_hooks_is_sample_ddim(pipe, tags):
    x = pipe.noise(2, FR, 3)
    fn = pipe.model_fn(tags, 2, 3.0)
    with torch.no_grad():
        a = sample_ddim(fn, x, pipe.schedule, 6, thresholding=True)
        b = guided_ddim(fn, x, pipe.schedule, 6, thresholding=True)
    assert torch.equal(a, b)


def test_ditto_lowers_the_loss_and_reports(pipe, tags):
    ctrl = intensity()
    s = Settings(steps=4, optim=OptimConfig(iters=6, lr=0.05))
    out = run_control(pipe, "ditto", ctrl, tags, seed=1, batch=2, settings=s, task="intensity")
    r = out.report
    for key in ("task", "method", "wall_s", "iterations", "model_calls", "initial_loss", "final_loss",
                "metrics", "loss_history", "best_iter"):
        assert key in r
    assert r["iterations"] == 6 and r["model_calls"] == 6 * 4 * 2 + 4
    assert all(f <= i for f, i in zip(r["final_loss"], r["initial_loss"]))
    assert min(f < i for f, i in zip(r["final_loss"], r["initial_loss"]))
    assert out.clip_audio.shape == (2, pipe.vocoder(out.mel).shape[-1]) and len(out.audio) == 2
    assert "intensity_mse_db2" in r["metrics"] and np.isfinite(r["metrics"]["intensity_mse_db2"])
    json.dumps(r)  # serialisable


def test_ditto_checkpointing_does_not_change_the_result(pipe, tags):
    ctrl = intensity()
    res = []
    for ck in (True, False):
        s = Settings(steps=3, optim=OptimConfig(iters=2, lr=0.05), checkpoint=ck)
        res.append(run_control(pipe, "ditto", ctrl, tags, seed=2, settings=s).x_T)
    assert torch.allclose(res[0], res[1], atol=1e-6)


def test_same_seed_same_output(pipe, tags):
    s = Settings(steps=3, optim=OptimConfig(iters=2, lr=0.05))
    a = run_control(pipe, "ditto", intensity(), tags, seed=4, settings=s)
    b = run_control(pipe, "ditto", intensity(), tags, seed=4, settings=s)
    assert np.array_equal(a.clip_audio, b.clip_audio)


def test_freedom_beats_default_sampling(pipe, tags):
    ctrl = intensity()
    s = Settings(steps=6)
    d = run_control(pipe, "default", ctrl, tags, seed=5, batch=2, settings=s).report["final_loss"]
    f = run_control(pipe, "freedom", ctrl, tags, seed=5, batch=2, settings=s).report["final_loss"]
    assert np.mean(f) < np.mean(d)


def reference_mel(pipe, frames=FR, seed=9):
    with torch.no_grad():
        return pipe.sample(pipe.noise(1, frames, seed), None, steps=3)[0]


def test_naive_masking_pins_the_overlap_to_the_reference(pipe, tags):
    ref = reference_mel(pipe)
    ctrl = get_control("outpaint", ref_mel=ref, overlap_s=0.3, frames=FR)
    out = run_control(pipe, "naive", ctrl, tags, seed=0, settings=Settings(steps=4))
    m = ctrl.masks
    assert torch.allclose(out.mel[0][:, m.gen_idx], ref[:, m.ref_idx], atol=1e-6)
    assert out.report["final_loss"][0] < 1e-10
    assert "seam_ratio" in out.report["items"][0] and out.report["stitch_boundaries_s"]
    # MultiDiffusion averages instead: close to, but not equal to, the reference
    md = run_control(pipe, "multidiffusion", ctrl, tags, seed=0, settings=Settings(steps=4))
    d = run_control(pipe, "default", ctrl, tags, seed=0, settings=Settings(steps=4))
    assert 0 < md.report["final_loss"][0] < d.report["final_loss"][0]


def test_ditto_draft_starts_from_the_inverted_naive_draft(pipe, tags):
    from dittomusic.control.methods import DRAFT_INVERT_STEPS
    from dittomusic.sampling import invert_ddim

    ref = reference_mel(pipe)
    ctrl = get_control("outpaint", ref_mel=ref, overlap_s=0.3, frames=FR)
    s = Settings(steps=3, optim=OptimConfig(iters=2, lr=0.05))
    out = run_control(pipe, "ditto_draft", ctrl, tags, seed=5, settings=s)
    plain = run_control(pipe, "ditto", ctrl, tags, seed=5, settings=s)
    # the first iterate: x_T with the matched frames' noise from the draft's inversion, rebuilt by hand
    with torch.no_grad():
        draft = run_control(pipe, "naive", ctrl, tags, seed=5, settings=s).mel
        inv = invert_ddim(pipe.model_fn(tags, 1, s.guidance), draft, pipe.schedule, DRAFT_INVERT_STEPS)
        x_T = pipe.noise(1, FR, 5)
        v = inv[..., ctrl.masks.gen_idx]
        x_T[..., ctrl.masks.gen_idx] = v / v.std()  # the new material keeps its own noise
        start = ctrl.loss(pipe.sample(x_T, tags, steps=s.steps, guidance=s.guidance))
    assert out.report["initial_loss"][0] == pytest.approx(float(start), rel=1e-5)
    assert out.report["initial_loss"][0] != pytest.approx(plain.report["initial_loss"][0], rel=1e-3)
    assert out.report["model_calls"] == plain.report["model_calls"] + s.steps + DRAFT_INVERT_STEPS
    with pytest.raises(DittoError, match="outpaint/inpaint/loop only"):
        run_control(pipe, "ditto_draft", intensity(), tags, settings=s)


def test_multidiffusion50_stops_halfway(pipe):
    ref = reference_mel(pipe)
    ctrl = get_control("outpaint", ref_mel=ref, overlap_s=0.3, frames=FR)
    x = torch.zeros(1, 160, FR)
    hook = mask_hook(ctrl, pipe.backend, x, 4, mix=0.5, until=0.5)
    assert not torch.equal(hook(1, 500, x), x)  # step 2 of 4: applied
    assert torch.equal(hook(2, 250, x), x)  # step 3 of 4: not


def test_self_loop_naive_copies_the_loop_start(pipe, tags):
    ctrl = get_control("loop", overlap_s=0.2, frames=FR)
    out = run_control(pipe, "naive", ctrl, tags, seed=0, settings=Settings(steps=3))
    m = ctrl.masks
    assert torch.equal(out.mel[0][:, m.gen_idx], out.mel[0][:, m.ref_idx])


def test_masking_on_a_non_painting_task_is_a_clear_error(pipe, tags):
    with pytest.raises(DittoError, match="outpaint/inpaint/loop only"):
        run_control(pipe, "naive", intensity(), tags, settings=Settings(steps=2))


def test_unknown_method(pipe, tags):
    with pytest.raises(DittoError, match="unknown method 'dps'; choose from"):
        run_control(pipe, "dps", intensity(), tags)


# ------------------------------------------------------------------ tasks

def test_split_task_and_defaults():
    assert split_task("Intensity + melody") == ["intensity", "melody"]
    assert default_iters("intensity") == 70 and default_iters("intensity+structure") == 150
    assert default_lr("ditto") == 5e-3 and default_lr("freedom") == 5e-3 and default_lr("ditto2") == 1e-2
    assert default_method("loop") == "ditto_draft" and default_method("intensity+outpaint") == "ditto_draft"
    assert default_method("structure") == "ditto" and default_method("intensity") == default_method("melody") == "ditto2"
    # a '+' task keeps a part's own method only where every part has it
    assert default_method("intensity+structure") == default_method("structure+intensity") == "ditto"
    assert default_method("text+intensity") == default_method("melody+intensity") == "ditto2"
    with pytest.raises(DittoError, match="unknown task 'tempo'"):
        split_task("tempo")
    with pytest.raises(DittoError, match="at most one of"):
        split_task("outpaint+loop")
    with pytest.raises(DittoError, match="twice"):
        split_task("melody+melody")


def test_tuned_defaults_apply_per_task_and_method():
    from dittomusic.control.defaults import resolve
    from dittomusic.control.spec import get_task, method_default

    tuned = get_task("intensity").method_defaults["ditto2"]
    _, o = resolve("intensity", "ditto2")
    assert (o.iters, o.lr) == (tuned["iters"], tuned["lr"]) != (70, 1e-2)
    # DITTO and the untuned tasks keep the general defaults
    assert (resolve("intensity", "ditto")[1].iters, resolve("intensity", "ditto")[1].lr) == (70, 5e-3)
    assert (resolve("melody", "ditto2")[1].iters, resolve("melody", "ditto2")[1].lr) == (150, 1e-2)
    # a '+' task takes a tuned value only where its parts agree; the caller's values always win
    assert resolve("intensity+melody", "ditto2")[1].lr == 1e-2
    assert resolve("intensity", "ditto2", iters=3, lr=0.5, tol=0.1)[1] == OptimConfig(iters=3, lr=0.5, tol=0.1)
    assert method_default(["intensity", "intensity"], "ditto2", "refresh") == tuned["refresh"]
    assert method_default("intensity+melody", "ditto2", "refresh", 7) == 7


def test_build_control_weights_follow_app_h():
    o = TaskOptions(target_notes="C5:1 E5:1")
    c = build_control("intensity+melody", FR, o)
    assert [w for _, w in c.items] == [pytest.approx(0.25 / 2), pytest.approx(0.5)]
    c = build_control("intensity+structure", FR, o)
    assert c.items[0][1] == pytest.approx(1 / 40 / 2)


def test_build_control_needs_the_right_targets(tmp_path):
    with pytest.raises(DittoError, match="melody needs exactly one target"):
        build_control("melody", FR, TaskOptions())
    with pytest.raises(DittoError, match="needs --reference"):
        build_control("outpaint", FR, TaskOptions())
    with pytest.raises(DittoError, match="reference audio not found"):
        build_control("inpaint", FR, TaskOptions(reference=str(tmp_path / "nope.wav")))
    assert torch.equal(build_control("melody", FR, TaskOptions(target_notes="C5:1")).target,
                       melody_from_string("C5:1", FR))
    assert build_control("loop", FR, TaskOptions(overlap_s=0.2)).masks.kind == "loop-free"


# ------------------------------------------------------------------ CLI

def test_cli_control_writes_audio_plot_report_and_resumes(tiny_model_path, tmp_path):
    run = CliRunner().invoke
    base = ["control", "intensity", "--model", str(tiny_model_path), "--seconds", "1.5", "--steps", "3",
            "--lr", "0.05", "--collection", "chorale"]
    r = run(cli, base + ["--iters", "2", "--out", str(tmp_path / "a.wav"), "--report", str(tmp_path / "a.json"),
                         "--save-latent", str(tmp_path / "a.safetensors")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "a.json").read_text())
    assert rep["task"] == "intensity" and rep["method"] == "ditto" and rep["iterations"] == 2
    assert rep["model_calls"] > 0 and rep["wall_s"] > 0 and "intensity_mse_db2" in rep["metrics"]
    audio, sr = sf.read(tmp_path / "a.wav")
    assert sr == 22050 and len(audio) > 22050
    assert (tmp_path / "a.png").stat().st_size > 1000
    r = run(cli, base + ["--iters", "2", "--init-latent", str(tmp_path / "a.safetensors"),
                         "--out", str(tmp_path / "b.wav"), "--report", str(tmp_path / "b.json")])
    assert r.exit_code == 0, r.output
    rep2 = json.loads((tmp_path / "b.json").read_text())
    assert rep2["initial_loss"][0] <= rep["initial_loss"][0]
    # without --lr the method's own default applies
    r = run(cli, [a for a in base if a not in ("--lr", "0.05")] + ["--iters", "1", "--out", str(tmp_path / "c.wav"),
                                                                   "--report", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "c.json").read_text())["lr"] == default_lr("ditto")


def test_cli_control_painting_and_baseline(tiny_model_path, tmp_path):
    wav = tmp_path / "ref.wav"
    sf.write(wav, 0.1 * np.sin(2 * np.pi * 440 * np.arange(33075) / 22050), 22050)
    r = CliRunner().invoke(cli, ["control", "outpaint", "--method", "naive", "--reference", str(wav), "--overlap",
                                 "0.5", "--model", str(tiny_model_path), "--seconds", "1.5", "--steps", "3",
                                 "--out", str(tmp_path / "o.wav"), "--report", str(tmp_path / "o.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "o.json").read_text())
    assert rep["stitch_boundaries_s"] and "seam_ratio" in rep["metrics"]
    out, _ = sf.read(tmp_path / "o.wav")
    assert len(out) > 1.5 * 33075  # reference + continuation
    # without --method, painting runs ditto_draft
    r = CliRunner().invoke(cli, ["control", "outpaint", "--reference", str(wav), "--overlap", "0.5", "--model",
                                 str(tiny_model_path), "--seconds", "1.5", "--steps", "3", "--iters", "1",
                                 "--out", str(tmp_path / "d.wav"), "--report", str(tmp_path / "d.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "d.json").read_text())["method"] == "ditto_draft"


@pytest.mark.parametrize("args, msg", [
    (["tempo"], "unknown task 'tempo'"),
    (["melody"], "melody needs exactly one target"),
    (["intensity", "--method", "naive"], "outpaint/inpaint/loop only"),
    (["intensity", "--method", "magic"], "unknown method 'magic'"),
    (["intensity", "--method", "freedom", "--init-latent", "__file__"], "is not a dittomusic latent file"),
    (["intensity", "--sampler", "ddpm"], "DITTO optimizes through a deterministic sampler"),
    (["intensity", "--backend", "nope:x"], "unknown backend 'nope'; choose from: dittomusic"),
    (["intensity", "--negative-prompt", "noise"], "--negative-prompt is for text-conditioned backends"),
])
def test_cli_control_bad_input_is_one_line(tiny_model_path, tmp_path, args, msg):
    args = [str(tiny_model_path) if a == "__file__" else a for a in args]
    r = CliRunner().invoke(cli, ["control", *args, "--model", str(tiny_model_path), "--steps", "2", "--iters", "1",
                                 "--seconds", "1.5", "--out", str(tmp_path / "x.wav")])
    assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.wav").exists()


@pytest.fixture
def bad_inputs(tmp_path):
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(22050, np.nan, dtype=np.float32), 22050, subtype="FLOAT")
    csv = tmp_path / "loud.csv"
    csv.write_text("time_s,db\n0,-30\n1,5000\n")
    return {"__nan_wav__": str(nan), "__csv__": str(csv)}


@pytest.mark.parametrize("args, msg", [
    (["outpaint", "--reference", "__nan_wav__"], "22050 NaN or infinite sample(s) of 22050"),
    (["intensity", "--target-curve", "__csv__"], "line 3: 5000 dB is out of range; intensity targets must lie in "
                                                 "[-100, +21.4] dB"),
    (["intensity", "--high-db", "300"], "--high-db 300 dB is out of range"),
    (["melody", "--target-notes", "C12:1"], "C12 is MIDI note 156, out of range; notes must lie between C-1 (MIDI 0) "
                                            "and E9 (MIDI 124"),
    (["intensity", "--guidance", "nan"], "Invalid value for '--guidance': 'nan' is not a finite number"),
    (["intensity", "--low-db", "-inf"], "Invalid value for '--low-db': '-inf' is not a finite number"),
    (["outpaint", "--overlap", "inf"], "Invalid value for '--overlap': 'inf' is not a finite number"),
    (["intensity", "--lr", "nan"], "'nan' is not a finite number; give a real number in the range x>0"),
    (["intensity", "--tol", "NaN"], "Invalid value for '--tol'"),
])
def test_cli_control_refuses_bad_values_before_any_work(tiny_model_path, tmp_path, bad_inputs, args, msg):
    args = [bad_inputs.get(a, a) for a in args]
    r = CliRunner().invoke(cli, ["control", *args, "--model", str(tiny_model_path), "--steps", "2", "--iters", "1",
                                 "--seconds", "1.5", "--out", str(tmp_path / "x.wav")])
    assert r.exit_code in (1, 2) and msg in r.output, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "x.png").exists()
    assert "model calls" not in r.output  # refused before sampling or optimizing


def test_a_saved_latent_of_another_length_is_refused(tiny_model_path, tmp_path):
    base = ["control", "intensity", "--model", str(tiny_model_path), "--steps", "2", "--iters", "1", "--no-png"]
    r = CliRunner().invoke(cli, base + ["--seconds", "1.5", "--out", str(tmp_path / "a.wav"),
                                        "--save-latent", str(tmp_path / "a.safetensors")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, base + ["--seconds", "1", "--out", str(tmp_path / "b.wav"),
                                        "--init-latent", str(tmp_path / "a.safetensors")])
    assert r.exit_code == 1 and "does not fit this run, which needs float [batch, 160, 88]" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "b.wav").exists()


def test_a_new_task_plugs_in_through_the_registry(monkeypatch):
    """A task is its TaskSpec: registered, it is a task name, its options are TaskOptions, and
    build_control, the defaults and the '+' weights use it (no other code names it)."""
    from dittomusic.control import spec
    from dittomusic.control.spec import TaskOption, TaskSpec, get_task

    def build(frames, o, cfg, multiple=1):
        return get_control("intensity", target=torch.full((frames,), float(o.tempo_db)), cfg=cfg)

    monkeypatch.setitem(spec._TASKS, "tempo", TaskSpec(
        "tempo", build, eval_targets=lambda *a: ([], []), plot=lambda *a: None, iters=99, method="freedom",
        options=(TaskOption("--tempo-db", "tempo_db", -30.0, "A level.", "float"),)))
    assert "tempo" in spec.task_names() and split_task("tempo+melody") == ["tempo", "melody"]
    c = build_control("tempo", FR, TaskOptions(tempo_db=-25.0))
    assert torch.equal(c.target, torch.full((FR,), -25.0, dtype=torch.float64))
    assert default_iters("tempo") == 99 and default_method("tempo") == "freedom"
    assert default_iters("tempo+melody") == 150


def test_inpainting_a_short_reference_keeps_a_length_the_model_takes(pipe, tags, tmp_path):
    """A reference shorter than the clip sets the inpainting window: cut to the backend's frame
    multiple (the tiny model patches 8 frames), it runs; an unfit length is a clear error."""
    wav = tmp_path / "short.wav"
    sf.write(wav, 0.1 * np.sin(2 * np.pi * 440 * np.arange(27562) / 22050), 22050)  # 108 mel frames
    o = TaskOptions(reference=str(wav), gap_s=0.3)
    assert build_control("inpaint", FR, o).frames == 108  # multiple 1: the whole reference, as before
    m = pipe.backend.frame_multiple
    ctrl = build_control("inpaint", FR, o, multiple=m)
    assert m == 8 and ctrl.frames == 104
    out = run_control(pipe, "naive", ctrl, tags, settings=Settings(steps=2))
    assert out.mel.shape[-1] == 104
    with pytest.raises(DittoError, match="takes multiples of 8"):
        run_control(pipe, "naive", build_control("inpaint", FR, o), tags, settings=Settings(steps=2))


def test_backends_open_by_name(monkeypatch, tiny_model_path):
    """--backend NAME[:ARG] opens a registered backend: a new one plugs in by registering."""
    from dittomusic import backends

    seen = []
    monkeypatch.setitem(backends._BACKENDS, "fake", lambda arg, model, device, vocoder: seen.append(arg) or "B")
    assert backends.open_backend("fake:some/folder") == "B" and seen == ["some/folder"]
    b = backends.open_backend(f"dittomusic:{tiny_model_path}", device="cpu", vocoder="griffinlim")
    assert isinstance(b, backends.Backend) and b.model_file == tiny_model_path
    with pytest.raises(DittoError, match="unknown backend 'nope'"):
        backends.open_backend("nope")


def test_paper_scale_counts_a_clip_by_its_metrics_direction():
    from dittomusic.control.spec import within_paper_scale

    assert within_paper_scale("intensity", 3.3) and not within_paper_scale("intensity", 3.31)
    assert within_paper_scale("melody", 85.0) and not within_paper_scale("melody", 84.9)  # higher is better
    assert within_paper_scale("structure", 0.017) and not within_paper_scale("structure", 0.02)
    assert within_paper_scale("outpaint", 0.1) is None  # no paper figure: not counted
