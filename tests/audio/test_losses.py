import math

import pytest
import torch

from dittomusic.audio.losses import SpectrumLoss


def _tones(n=63 * 256, sr=22050, f0=441.0):
    t = torch.arange(n) / sr
    return (0.3 * torch.sin(2 * math.pi * f0 * t) + 0.1 * torch.sin(2 * math.pi * 1234 * t + 1)).unsqueeze(0)


def test_spectrum_loss_is_zero_at_the_truth_and_blind_to_a_global_phase():
    audio, loss = _tones(), SpectrumLoss(1024, 256)
    s = loss.target(audio)
    assert float(loss(s, audio)) < 1e-5
    # the absolute phase is not a function of the mel, so it must not be penalised
    assert float(loss(s * torch.exp(torch.tensor(0.7j)), audio)) < 1e-5


def test_spectrum_loss_sees_wrong_phase_and_wrong_magnitude_apart():
    audio, loss = _tones(), SpectrumLoss(1024, 256)
    s = loss.target(audio)
    torch.manual_seed(0)
    scrambled = loss.parts(s.abs() * torch.exp(1j * torch.rand(s.shape) * 2 * math.pi), audio)
    assert scrambled["if"] > 1.0 and scrambled["gd"] > 1.0 and scrambled["spec_sc"] < 1e-4
    doubled = loss.parts(2 * s, audio)
    assert doubled["spec_sc"] == pytest.approx(1.0, abs=1e-3) and doubled["if"] < 1e-4
    # a tone at the wrong frequency: the instantaneous frequency term sees it
    assert loss.parts(loss.target(_tones(f0=470.0)), audio)["if"] > 0.3


def test_spectrum_loss_refuses_a_segment_too_short_for_its_edges():
    loss = SpectrumLoss(1024, 256)
    audio = _tones(n=4 * 256)
    with pytest.raises(ValueError, match="too short"):
        loss(loss.target(audio), audio)


def test_spectrum_loss_lifts_a_bin_predicted_below_the_floor():
    """A clamped log term gave a bin predicted below 1e-5 no gradient, so it stayed dark for good; the soft
    floor must push it up towards the truth."""
    audio, loss = _tones(), SpectrumLoss(1024, 256)
    mag = loss.target(audio).abs().clone()
    mag[:, 100:110] = 1e-8  # well below the floor, where the tones' skirts have energy
    mag.requires_grad_(True)
    loss(mag, audio).backward()
    assert (mag.grad[:, 100:110, loss.edge:-loss.edge] < 0).float().mean() > 0.9  # descent raises them
