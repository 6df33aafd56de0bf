"""The shipped model: it loads from the package, knows the dataset's tags and generates music."""

import subprocess
import sys

import soundfile as sf
import torch

from dittomusic.checkpoint import load_tensors
from dittomusic.generate import Pipeline, make_tags
from dittomusic.models.loading import bundled_path


def test_bundled_checkpoint_is_fp16_safetensors_with_its_config():
    path = bundled_path()
    assert path.is_file(), "src/dittomusic/assets/base.safetensors is missing"
    assert path.stat().st_size < 60 * 2**20
    tensors, meta = load_tensors(path)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert meta["kind"] == "base" and meta["train"]["cpu_hours"] <= 8.0
    assert set(meta["model_config"]["vocab"]["collections"]) == {
        "chorale", "renaissance polyphony", "medieval polyphony", "Irish folk tune", "folk song",
        "classical string quartet"}


def test_bundled_model_generates_deterministically():
    pipe = Pipeline(device="cpu")
    tags = make_tags(pipe.vocab, collection="Irish folk tune")
    a, wa = pipe.generate(tags, seed=5, steps=3, seconds=2.0)
    b, wb = pipe.generate(tags, seed=5, steps=3, seconds=2.0)
    assert torch.equal(a, b) and torch.equal(wa, wb)
    assert torch.isfinite(wa).all() and 0.001 < wa.abs().max() <= 1.5


def test_readme_main_command_shape(tmp_path):
    """`dittomusic generate --caption ... --out FILE` with only defaults besides the caption."""
    out = tmp_path / "reel.wav"
    r = subprocess.run([sys.executable, "-m", "dittomusic", "generate", "--caption",
                        "a lively Irish folk tune on fiddle", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    audio, sr = sf.read(out)
    assert sr == 22050 and len(audio) == 511 * 256 and abs(audio).max() > 0.001
    assert out.with_suffix(".png").exists()
    assert "collection=Irish folk tune" in r.stderr


def test_bundled_classifier_is_the_fad_yardstick():
    from dittomusic.eval.classifier import load_classifier, predict

    model, meta = load_classifier(bundled_path("classifier"))
    assert meta["test"]["collection_accuracy"] > 0.8 and meta["test"]["n"] > 1000
    assert model.cfg.collections == sorted(Pipeline(device="cpu").vocab["collections"])
    out = predict(model, torch.rand(2, 160, 512) * 2 - 1)
    assert out["embedding"].shape == (2, 128)
