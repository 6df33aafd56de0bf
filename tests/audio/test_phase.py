import math

import torch

from dittomusic.audio.losses import mel_spectral_convergence
from dittomusic.audio.phase import griffin_lim, locked_phase, to_stft_phase

N_FFT, HOP = 1024, 256


def _chord(seconds=1.5, sr=22050):
    t = torch.arange(int(seconds * sr)) / sr
    # partials between bin centres, so a phase that advances at the bin centre would drift
    return sum(a * torch.sin(2 * math.pi * f * t + p) for a, f, p in
               ((0.3, 261.0, 0.0), (0.15, 523.7, 1.0), (0.1, 659.9, 2.0), (0.05, 1318.3, 0.5))).unsqueeze(0)


def _spec(x):
    return torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)


def _istft(s, n):
    return torch.istft(s, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, length=n)


def test_locked_phase_rebuilds_a_chord_from_its_magnitude_where_random_phase_cannot():
    x = _chord()
    mag = _spec(x).abs()
    locked = _istft(torch.polar(mag, to_stft_phase(locked_phase(mag, N_FFT, HOP))), x.shape[-1])
    torch.manual_seed(0)
    scrambled = _istft(torch.polar(mag, torch.rand(mag.shape) * 2 * math.pi), x.shape[-1])
    err_locked, err_random = mel_spectral_convergence(x, locked), mel_spectral_convergence(x, scrambled)
    assert err_locked < 0.1 and err_random > 3 * err_locked, (err_locked, err_random)
    # the bins of one partial share one frame-centred phase
    psi = locked_phase(mag, N_FFT, HOP)
    k = int(mag[0, :, 20].argmax())
    assert torch.allclose(psi[0, k - 1:k + 2, 20], psi[0, k, 20].expand(3))


def test_griffin_lim_after_locking_does_not_undo_it_and_the_chain_is_differentiable():
    x = _chord(0.5)
    mag = _spec(x).abs().requires_grad_(True)
    psi = to_stft_phase(locked_phase(mag, N_FFT, HOP))
    y = griffin_lim(mag, psi, N_FFT, HOP, iters=4, length=x.shape[-1])
    assert mel_spectral_convergence(x, y.detach()) < 0.1
    y.square().sum().backward()
    assert torch.isfinite(mag.grad).all() and mag.grad.abs().sum() > 0


def test_a_frame_without_peaks_keeps_its_bins_apart():
    mag = torch.ones(1, N_FFT // 2 + 1, 3)  # flat: no bin is above its neighbours
    psi = locked_phase(mag, N_FFT, HOP)
    assert torch.isfinite(psi).all() and psi.shape == mag.shape


def test_momentum_converges_faster_on_rendered_music(rendered_audio):
    """Fast Griffin-Lim (the vocoder's gl_momentum): at equal projections it must end closer to the music."""
    x = torch.from_numpy(rendered_audio[: 3 * 22050]).float()[None]
    n_fft, hop = 2048, 256
    mag = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True).abs()
    psi = to_stft_phase(locked_phase(mag, n_fft, hop))
    err = {m: mel_spectral_convergence(x[0], griffin_lim(mag, psi, n_fft, hop, 6, m, length=x.shape[-1])[0])
           for m in (0.0, 0.99)}
    assert err[0.99] < 0.9 * err[0.0], err
