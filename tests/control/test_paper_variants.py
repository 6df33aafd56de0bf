"""DITTO's appendix variants as flags: the correlation loss for intensity (App. C), structure
transfer without smoothing (App. F), DITTO through DPM-Solver++ (App. G) and the multi-objective
weights with intensity kept off the painted overlap (App. H)."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.control import get_control, intensity_preset
from dittomusic.control.targets import structure_from_audio
from dittomusic.control.tasks import TaskOptions, build_control
from dittomusic.errors import DittoError

FR = 128


def test_correlation_loss_is_minus_pearson_and_ignores_offset_and_scale():
    y = intensity_preset("linear-rise", FR, -40, -20)
    ctrl = get_control("intensity", target=y, loss="corr")
    mse = get_control("intensity", target=y)
    mel = torch.rand(2, 160, FR) * 2 - 1
    f = mse.feature(mel).double()
    rho = [np.corrcoef(f[b].numpy(), y.numpy())[0, 1] for b in range(2)]
    assert ctrl.loss(mel).double().numpy() == pytest.approx(-np.array(rho), abs=1e-4)
    # a target of the mel's own shape, 10 dB off and half as steep: a perfect correlation, not a perfect MSE
    own = 0.5 * f[0] - 10
    assert float(get_control("intensity", target=own, loss="corr").loss(mel[:1])[0]) == pytest.approx(-1.0, abs=1e-5)
    assert float(get_control("intensity", target=own).loss(mel[:1])[0]) > 1.0
    with pytest.raises(DittoError, match="--intensity-loss must be one of mse, corr"):
        get_control("intensity", target=y, loss="l1")


def test_intensity_metrics_report_mse_and_rho():
    y = intensity_preset("linear-rise", FR, -40, -20)
    ctrl = get_control("intensity", target=y)
    sr = 22050
    t = np.arange(int(FR * 256)) / sr
    audio = (np.linspace(0.01, 0.5, t.size) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    m = ctrl.metrics(audio, sr)
    assert set(m) == {"intensity_mse_db2", "intensity_rho"} and m["intensity_rho"] > 0.9


def test_intensity_next_to_outpainting_leaves_the_overlap_free(tmp_path):
    wav = tmp_path / "ref.wav"
    sf.write(wav, 0.1 * np.sin(2 * np.pi * 440 * np.arange(33075) / 22050), 22050)
    c = build_control("intensity+outpaint", FR, TaskOptions(reference=str(wav), overlap_s=0.3))
    inten, paint = c.items[0][0], c.items[1][0]
    assert torch.isnan(inten.target[paint.masks.gen_idx]).all()
    free = torch.ones(FR, dtype=torch.bool)
    free[paint.masks.gen_idx] = False
    assert torch.isfinite(inten.target[free]).all()
    assert c.items[0][1] == pytest.approx(1 / 40 / 2)  # App. H's lambda, with 1/M folded in


def test_structure_transfer_without_smoothing(tmp_path):
    sr = 22050
    t = np.arange(3 * sr) / sr
    a = np.where(t < 1.5, np.sin(2 * np.pi * 330 * t), 0.3 * np.random.default_rng(0).standard_normal(t.size))
    wav = tmp_path / "song.wav"
    sf.write(wav, a.astype(np.float32), sr)
    raw = build_control("structure", FR, TaskOptions(target_audio=str(wav), ssm_smoothing="none"))
    smooth = build_control("structure", FR, TaskOptions(target_audio=str(wav)))
    assert raw.window == 1 and smooth.window > 1
    assert torch.allclose(raw.target, structure_from_audio(str(wav), FR, window=1))
    assert not torch.allclose(raw.target, smooth.target, atol=1e-3)


def test_cli_ditto_through_dpm_solver(tiny_model_path, tmp_path):
    r = CliRunner().invoke(cli, ["control", "intensity", "--model", str(tiny_model_path), "--seconds", "1.5",
                                 "--steps", "3", "--iters", "1", "--sampler", "dpmpp_2m", "--intensity-loss", "corr",
                                 "--no-png", "--out", str(tmp_path / "a.wav"), "--report", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "a.json").read_text())
    assert rep["sampler"] == "dpmpp_2m" and -1 <= rep["final_loss"][0] <= 1  # -rho
    assert "intensity_rho" in rep["metrics"]
