"""Inverting a recording (DITTO App. D) on a tiny random model: the invert task, naive noising,
DDIM inversion, DITTO from it, Table 7's form and the tag edit."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.control import get_control
from dittomusic.control.methods import Settings, run_control
from dittomusic.control.optimize import OptimConfig
from dittomusic.control.tasks import TaskOptions, build_control
from dittomusic.errors import DittoError
from dittomusic.eval.inversion import inversion_table
from dittomusic.generate import make_tags

FR = 128


@pytest.fixture(scope="module")
def refs(pipe, tags):
    # clips the model can make: a fair target for every inversion (a random model cannot make real music)
    with torch.no_grad():
        return pipe.sample(pipe.noise(2, FR, 7), tags, steps=8)


def test_ditto_inverts_closer_than_ddim_inversion(pipe, tags, refs):
    ctrl = get_control("invert", target=refs[0])
    s = Settings(steps=4, optim=OptimConfig(iters=6, lr=0.05))
    ddim = run_control(pipe, "ddim_inversion", ctrl, tags, seed=1, settings=s).report
    dit = run_control(pipe, "ditto_invert", ctrl, tags, seed=1, settings=s).report
    plain = run_control(pipe, "ditto", ctrl, tags, seed=1, settings=s).report
    assert dit["initial_loss"][0] == pytest.approx(ddim["final_loss"][0], rel=1e-5)  # it starts there
    assert dit["final_loss"][0] < 0.9 * ddim["final_loss"][0]
    assert ddim["final_loss"][0] < plain["initial_loss"][0]  # the inversion beats random noise
    assert "invert_mse" in dit["metrics"] and np.isfinite(dit["metrics"]["invert_mse"])


def test_naive_noising_and_errors(pipe, tags, refs):
    ctrl = get_control("invert", target=refs[0])
    out = run_control(pipe, "naive_noising", ctrl, tags, seed=1, settings=Settings(steps=4))
    assert out.report["noised_to"] == 999 and np.isfinite(out.report["final_loss"][0])
    with pytest.raises(DittoError, match="use it with the invert task"):
        run_control(pipe, "ddim_inversion", get_control("loop", overlap_s=0.2, frames=FR), tags,
                    settings=Settings(steps=2))
    with pytest.raises(DittoError, match="needs --reference"):
        build_control("invert", FR, TaskOptions())
    with pytest.raises(DittoError, match="inversion target is a mel"):
        get_control("invert", target=torch.zeros(3, FR))


def test_inversion_table_has_every_method_at_every_scale(pipe, refs):
    out = inversion_table(pipe.backend, refs, None, guidances=(0.0, 4.0), steps=3, iters=3, lr=0.05)
    assert [(r["method"], r["guidance"]) for r in out["rows"]] == [
        (m, w) for w in (0.0, 4.0) for m in ("naive_noising", "ddim_inversion", "ditto_invert")]
    by = {(r["method"], r["guidance"]): r["mse"] for r in out["rows"]}
    assert all(by[("ditto_invert", w)] <= by[("ddim_inversion", w)] for w in (0.0, 4.0))
    assert "| DITTO |" in out["markdown"] and "(0.0025)" in out["markdown"]  # the paper's value beside ours
    assert out["mels"][("ditto_invert", 4.0)].shape == refs.shape


def test_cli_inverts_a_recording_and_resamples_it_under_other_tags(tiny_model_path, tmp_path, pipe, refs):
    wav = tmp_path / "ref.wav"
    sf.write(wav, pipe.vocoder(refs[:1])[0].numpy(), 22050)
    base = ["control", "invert", "--reference", str(wav), "--model", str(tiny_model_path), "--seconds", "1.5",
            "--steps", "3", "--no-png"]
    lat = tmp_path / "inv.safetensors"
    r = CliRunner().invoke(cli, base + ["--iters", "2", "--collection", "folk song", "--out", str(tmp_path / "a.wav"),
                                        "--report", str(tmp_path / "a.json"), "--save-latent", str(lat)])
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["method"] == "ditto_invert" and a["iterations"] == 2
    r = CliRunner().invoke(cli, base + ["--init-latent", str(lat), "--method", "default", "--collection", "chorale",
                                        "--out", str(tmp_path / "b.wav"), "--report", str(tmp_path / "b.json")])
    assert r.exit_code == 0, r.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["method"] == "default" and np.isfinite(b["final_loss"][0])
    assert not np.allclose(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def test_edit_tags_resamples_the_inverted_latent(pipe, refs):
    from dittomusic.eval.inversion import edit_tags

    src, dst = make_tags(pipe.vocab, collection="folk song"), make_tags(pipe.vocab, collection="chorale")
    out = edit_tags(pipe.backend, refs[0], src, dst, steps=3, iters=2, lr=0.05)
    with torch.no_grad():
        again = pipe.sample(out["x_T"], dst, steps=3)
    assert torch.equal(out["edited"], again)  # the edit is the inverted x_T under the new tags
    assert not torch.allclose(out["edited"], out["inverted"]) and out["mse_inverted"] >= 0
