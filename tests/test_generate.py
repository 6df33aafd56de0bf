import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.errors import DittoError
from dittomusic.generate import Pipeline, caption_to_tags, make_tags

from .conftest import make_vocab


def test_caption_to_tags():
    v = make_vocab()
    t = caption_to_tags("A lively Irish reel on fiddle and harp in D minor at 176 BPM", v)
    assert t.collection == "Irish folk tune" and set(t.instruments) == {"fiddle", "harp"}
    assert t.tempo == "very fast" and t.mode == "minor"
    t = caption_to_tags("slow chorale for strings", v)
    assert t.collection == "chorale" and t.tempo == "slow" and t.instruments == ["string ensemble"]
    # longer phrases consume their words; plurals and the CLAP captions' training phrasings count
    t = caption_to_tags("Reed organ and double basses, very fast", v)
    assert set(t.instruments) == {"reed organ", "contrabass"} and t.tempo == "very fast"
    t = caption_to_tags("a calm folk song with guitars and voices", v)
    assert (t.collection, t.tempo) == ("folk song", "slow") and set(t.instruments) == {"acoustic guitar", "choir"}
    t = caption_to_tags("something", v)
    assert (t.collection, t.instruments, t.tempo, t.mode) == (None, [], None, None)


def test_make_tags_errors_name_the_choices():
    v = make_vocab()
    with pytest.raises(DittoError, match="unknown collection 'jazz'; choose from: chorale"):
        make_tags(v, collection="jazz")
    with pytest.raises(DittoError, match="unknown instrument 'kazoo'"):
        make_tags(v, instruments=["kazoo"])
    with pytest.raises(DittoError, match="out of range"):
        make_tags(v, tempo="900")
    assert make_tags(v, tempo="100 BPM").tempo == "moderate"
    assert make_tags(v, instruments=["Strings"]).instruments == ["string ensemble"]


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "euler"])
def test_pipeline_is_deterministic_per_seed(tiny_model_path, sampler):
    pipe = Pipeline(tiny_model_path, "cpu")
    tags = make_tags(pipe.vocab, collection="chorale", instruments=["violin"], tempo="slow", mode="major")
    m1, a1 = pipe.generate(tags, n=2, seed=3, sampler=sampler, steps=4, seconds=1.5)
    m2, a2 = pipe.generate(tags, n=2, seed=3, sampler=sampler, steps=4, seconds=1.5)
    m3, _ = pipe.generate(tags, n=2, seed=4, sampler=sampler, steps=4, seconds=1.5)
    assert m1.shape == (2, 160, 128) and a1.shape == (2, 127 * 256)
    assert torch.equal(m1, m2) and torch.equal(a1, a2)
    assert not torch.equal(m1, m3)
    assert m1.abs().max() <= 1.0 and torch.isfinite(a1).all()


def test_bf16_generation_is_close_to_fp32_deterministic_and_resolved_by_auto(tiny_model_path, monkeypatch):
    from dittomusic import utils

    fp32, bf16 = Pipeline(tiny_model_path, "cpu"), Pipeline(tiny_model_path, "cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    tags = make_tags(fp32.vocab, collection="chorale")
    a = fp32.generate(tags, seed=2, steps=4, seconds=1.5)[0]
    b1, b2 = (bf16.generate(tags, seed=2, steps=4, seconds=1.5)[0] for _ in range(2))
    assert b1.dtype == torch.float32 and torch.equal(b1, b2)
    assert not torch.equal(a, b1) and (a - b1).abs().mean() < 0.02  # bf16 arithmetic, the same sample
    # the backend's model_fn (what controls use) follows the pipeline's precision
    x = torch.randn(1, *fp32.backend.latent_shape(128))
    t = torch.tensor([500])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert fp32.backend.model_fn(None, 1.0)(x, t).dtype == torch.float32
    assert bf16.backend.model_fn(None, 1.0)(x, t).dtype == torch.float32
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(utils, "fast_bf16", lambda device, native=native: native)
        assert Pipeline(tiny_model_path, "cpu", precision="auto").precision == want
    with pytest.raises(DittoError, match="unknown precision 'fp16'; choose from: auto, fp32, bf16"):
        Pipeline(tiny_model_path, "cpu", precision="fp16")


def test_guidance_and_tags_change_the_output(tiny_model_path):
    pipe = Pipeline(tiny_model_path, "cpu")
    tags = make_tags(pipe.vocab, collection="folk song")
    base, _ = pipe.generate(None, seed=1, steps=3, seconds=1.5)
    cond, _ = pipe.generate(tags, seed=1, steps=3, guidance=3.0, seconds=1.5)
    cond1, _ = pipe.generate(tags, seed=1, steps=3, guidance=1.0, seconds=1.5)
    assert not torch.allclose(base, cond) and not torch.allclose(cond, cond1)


def test_seconds_sets_length_and_rejects_nonsense(tiny_model_path):
    pipe = Pipeline(tiny_model_path, "cpu")
    mel, audio = pipe.generate(None, seconds=3.0, steps=2)
    assert audio.shape[-1] == (mel.shape[-1] - 1) * 256
    assert mel.shape[-1] % 8 == 0 and abs(mel.shape[-1] / pipe.mel_cfg.frame_rate - 3.0) < 0.1
    with pytest.raises(DittoError, match="out of range"):
        pipe.generate(None, seconds=0.1)
    with pytest.raises(DittoError, match="steps"):
        pipe.generate(None, steps=0)
    with pytest.raises(DittoError, match="--guidance nan must be a finite number"):
        pipe.generate(None, steps=1, guidance=float("nan"))


def test_sampling_is_differentiable_in_x_T(tiny_model_path):
    pipe = Pipeline(tiny_model_path, "cpu")
    x = pipe.noise(1, 64, seed=0).requires_grad_()
    mel = pipe.sample(x, make_tags(pipe.vocab, mode="minor"), steps=3, checkpoint=True)
    mel.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_generate_cli_writes_identical_files_for_a_seed(tiny_model_path, tmp_path):
    args = ["generate", "--model", str(tiny_model_path), "--caption", "a slow chorale", "--steps", "3",
            "--seed", "7", "--batch", "2", "--seconds", "1.5"]
    r1 = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a.wav")])
    r2 = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b.wav")])
    assert r1.exit_code == 0, r1.output
    assert r2.exit_code == 0, r2.output
    assert (tmp_path / "a_0.wav").read_bytes() == (tmp_path / "b_0.wav").read_bytes()
    assert (tmp_path / "a_1.wav").read_bytes() != (tmp_path / "a_0.wav").read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    audio, sr = sf.read(tmp_path / "a_0.wav")
    assert sr == 22050 and len(audio) == 127 * 256


def test_generate_cli_errors(tiny_model_path, tmp_path):
    r = CliRunner().invoke(cli, ["generate", "--model", str(tmp_path / "none.safetensors")])
    assert r.exit_code == 1 and "checkpoint not found" in r.output
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 pickle-ish bytes, not safetensors")
    r = CliRunner().invoke(cli, ["generate", "--model", str(bad)])
    assert r.exit_code == 1 and "not a dittomusic safetensors checkpoint" in r.output
    r = CliRunner().invoke(cli, ["generate", "--model", str(tiny_model_path), "--collection", "jazz"])
    assert r.exit_code == 1 and "choose from" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["generate", "--model", str(tiny_model_path), "--list-tags"])
    assert r.exit_code == 0 and "Irish folk tune" in r.output


@pytest.mark.parametrize("opt, value", [("--guidance", "nan"), ("--guidance", "inf"), ("--seconds", "-inf"),
                                        ("--seconds", "nan")])
def test_generate_refuses_non_finite_numbers(tiny_model_path, tmp_path, opt, value):
    r = CliRunner().invoke(cli, ["generate", "--model", str(tiny_model_path), "--steps", "2", opt, value,
                                 "--out", str(tmp_path / "x.wav")])
    assert r.exit_code == 2 and f"Invalid value for '{opt}': '{value}' is not a finite number" in r.output
    assert "NaN and infinity are not accepted" in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_generate_no_png(tiny_model_path, tmp_path):
    r = CliRunner().invoke(cli, ["generate", "--model", str(tiny_model_path), "--steps", "2", "--seconds", "1",
                                 "--no-png", "--out", str(tmp_path / "x.wav")])
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"] and r.stdout.split() == [str(tmp_path / "x.wav")]


def test_a_release_carries_its_default_sampler_and_guidance(tiny_model_path, tmp_path):
    from dittomusic.checkpoint import read_meta, sampling_defaults, set_sampling

    assert Pipeline(tiny_model_path).sampling == {"sampler": "ddim", "guidance": 3.0}  # a file that names none
    out = set_sampling(tiny_model_path, tmp_path / "m.safetensors", "dpmpp_2m", 1.5, why="a test")
    assert read_meta(out)["sampling"]["why"] == "a test"
    pipe = Pipeline(out)
    assert pipe.sampling == {"sampler": "dpmpp_2m", "guidance": 1.5}
    default, _ = pipe.generate(None, seed=3, steps=3)
    named, _ = pipe.generate(None, seed=3, steps=3, sampler="dpmpp_2m", guidance=1.5)
    other, _ = pipe.generate(None, seed=3, steps=3, sampler="ddim", guidance=3.0)
    assert torch.equal(default, named) and not torch.equal(default, other)
    r = CliRunner().invoke(cli, ["generate", "--model", str(out), "--steps", "2", "--no-png",
                                 "--out", str(tmp_path / "x.wav"), "--unconditional"])
    assert r.exit_code == 0, r.output
    assert sampling_defaults({"sampling": {"sampler": "from-the-future", "guidance": 2}}) == {"sampler": "ddim",
                                                                                               "guidance": 3.0}
    with pytest.raises(DittoError, match="unknown sampler"):
        set_sampling(tiny_model_path, tmp_path / "bad.safetensors", "nope", 2.0)
    with pytest.raises(DittoError, match="finite"):
        set_sampling(tiny_model_path, tmp_path / "bad.safetensors", "ddim", float("nan"))
    assert not (tmp_path / "bad.safetensors").exists()
