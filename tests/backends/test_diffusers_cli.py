"""`dittomusic control --backend diffusers:DIR` end to end on a tiny random pipeline saved to a
folder: the caption is the text prompt, tag options and DITTO-2 are refused in one line, and
unknown backend names list the registered ones."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded

from click.testing import CliRunner  # noqa: E402

from dittomusic.cli import cli  # noqa: E402

from .tiny_pipelines import SAMPLE_RATE, save_tiny_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_pipeline("audioldm", tmp_path_factory.mktemp("cli") / "model")


def _control(folder, tmp_path, *args):
    return CliRunner().invoke(cli, ["control", "intensity", "--backend", f"diffusers:{folder}", "--device", "cpu",
                                    "--preset", "linear-rise", "--low-db", "-40", "--high-db", "-20",
                                    "--seconds", "0.64", "--steps", "3", "--guidance", "2.5", "--iters", "2",
                                    "--out", str(tmp_path / "c.wav"), "--report", str(tmp_path / "c.json"), *args])


def test_control_intensity_runs_on_a_diffusers_pipeline(folder, tmp_path):
    import soundfile as sf

    r = _control(folder, tmp_path, "--caption", "solo piano", "--negative-prompt", "noise")
    assert r.exit_code == 0, r.output
    assert "prompt: 'solo piano' (negative: 'noise')" in r.output
    audio, sr = sf.read(tmp_path / "c.wav")
    assert sr == SAMPLE_RATE and len(audio) == 64 * 16  # 0.64 s at the pipeline's hop 16
    rep = json.loads((tmp_path / "c.json").read_text())
    assert rep["method"] == "ditto" and rep["iterations"] == 2 and "intensity_mse_db2" in rep["metrics"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, msg", [
    (["--caption", "piano", "--method", "ditto2"], "use --method ditto"),
    (["--collection", "folk song"], 'this backend is conditioned on text: use --caption (e.g. --caption "folk song")'),
    (["--caption", "piano", "--model", "m.safetensors"], "--model is for dittomusic's own models"),
])
def test_what_a_diffusers_backend_cannot_do_is_refused_in_one_line(folder, tmp_path, args, msg):
    r = _control(folder, tmp_path, *args)
    assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "c.wav").exists()


def test_backend_names_and_usage_in_errors_and_help(tmp_path):
    out = str(tmp_path / "x.wav")
    r = CliRunner().invoke(cli, ["control", "intensity", "--backend", "stable-audio:/x", "--out", out])
    assert r.exit_code != 0 and "unknown backend 'stable-audio'; choose from: dittomusic" in r.output
    assert "diffusers:DIR (a local AudioLDM / MusicLDM / AudioLDM2 pipeline folder)" in r.output
    r = CliRunner().invoke(cli, ["control", "intensity", "--backend", "diffusers", "--out", out])
    assert r.exit_code != 0 and "needs the model folder: diffusers:DIR" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["control", "--help"])
    assert r.exit_code == 0 and "diffusers:DIR" in r.output and "--negative-prompt" in r.output
