import librosa
import numpy as np
import pytest
import torch

from dittomusic.audio.mel import MelConfig, MelSpectrogram, db_to_unit, mel_spectrogram, unit_to_db


def test_mel_power_matches_librosa_on_rendered_music(rendered_audio, mel_cfg):
    ours = MelSpectrogram(mel_cfg).mel_power(torch.from_numpy(rendered_audio)).numpy()
    ref = librosa.feature.melspectrogram(
        y=rendered_audio, sr=mel_cfg.sample_rate, n_fft=mel_cfg.n_fft, hop_length=mel_cfg.hop_length,
        n_mels=mel_cfg.n_mels, power=2.0, center=True, pad_mode="constant")
    assert ours.shape == ref.shape
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= 1e-3


def test_scaled_log_mel_matches_librosa_db(rendered_audio, mel_cfg):
    ours = mel_spectrogram(rendered_audio, mel_cfg)
    ref_power = librosa.feature.melspectrogram(
        y=rendered_audio, sr=mel_cfg.sample_rate, n_fft=mel_cfg.n_fft, hop_length=mel_cfg.hop_length,
        n_mels=mel_cfg.n_mels, power=2.0, pad_mode="constant")
    db = librosa.power_to_db(ref_power, ref=1.0, amin=10 ** (mel_cfg.db_min / 10), top_db=None)
    ref = 2 * (np.clip(db, mel_cfg.db_min, mel_cfg.db_max) - mel_cfg.db_min) / mel_cfg.db_range - 1
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= 1e-3
    # rendered music occupies the window without clipping at the top
    assert ours.max() < 1.0 and ours.min() >= -1.0


def test_clip_is_512_frames_about_6_seconds(mel_cfg):
    assert mel_cfg.clip_frames == 512
    assert 5.9 < mel_cfg.clip_seconds < 6.0
    wav = np.zeros(mel_cfg.clip_frames * mel_cfg.hop_length - 1, dtype=np.float32)
    assert mel_spectrogram(wav, mel_cfg).shape == (mel_cfg.n_mels, mel_cfg.clip_frames)


def test_db_scaling_is_fixed_range_and_invertible(mel_cfg):
    db = torch.tensor([mel_cfg.db_min - 50, mel_cfg.db_min, -20.0, mel_cfg.db_max, mel_cfg.db_max + 10])
    u = db_to_unit(db, mel_cfg)
    assert u.tolist()[:2] == [-1.0, -1.0] and u[-1] == 1.0 and u[-2] == 1.0
    assert torch.allclose(unit_to_db(u[1:4], mel_cfg), db[1:4], atol=1e-4)
    assert mel_cfg.db_range == 160.0
    silence = mel_spectrogram(np.zeros(4096, dtype=np.float32), mel_cfg)
    assert np.all(silence == -1.0)


def test_forward_is_differentiable():
    cfg = MelConfig(n_fft=64, hop_length=16, n_mels=8, sample_rate=8000, db_max=20.0)
    mod = MelSpectrogram(cfg).double()
    x = (torch.randn(200, dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda w: mod(w), (x,), eps=1e-6, atol=1e-4)


def test_gradient_reaches_waveform_and_batches(rendered_audio, mel_cfg):
    mod = MelSpectrogram(mel_cfg)
    x = torch.from_numpy(rendered_audio[:22050]).repeat(2, 1).requires_grad_()
    y = mod(x)
    assert y.shape[:2] == (2, mel_cfg.n_mels)
    y.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    torch.testing.assert_close(y[0], y[1])


@pytest.mark.parametrize("kw", [
    {},  # the model's config: 22,050 Hz, n_fft 2048, 160 bands
    dict(n_mels=8, n_fft=64, sample_rate=8000, db_max=20.0),  # the tests' tiny config
    dict(n_mels=80, fmin=30.0, fmax=8000.0),
    dict(n_mels=128, n_fft=1024, sample_rate=16000),
])
def test_mel_basis_is_librosas_without_librosa(kw):
    cfg = MelConfig(**kw)
    ours = cfg.mel_basis()
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)
    ours[0, 0] = 123.0  # callers get their own copy of the cached basis
    assert cfg.mel_basis()[0, 0] != 123.0


def test_mel_frequencies_match_librosa():
    from dittomusic.audio.mel import hz_to_mel, mel_frequencies

    np.testing.assert_array_equal(mel_frequencies(162, 0.0, 11025.0),
                                  librosa.mel_frequencies(162, fmin=0.0, fmax=11025.0, htk=False))
    f = np.array([0.0, 440.0, 999.9, 1000.0, 5000.0])
    np.testing.assert_allclose(hz_to_mel(f), librosa.hz_to_mel(f), rtol=0, atol=1e-12)
