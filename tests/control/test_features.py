"""Mel-derived control features agree with their waveform twins (the metrics)."""

import librosa
import numpy as np
import pytest
import scipy.signal as ss
import torch

from dittomusic.audio.mel import MelSpectrogram
from dittomusic.control import features as F

SR = 22050


def tone(freq, seconds, amp=0.2, harmonics=1, sr=SR, phase=0.0):
    t = np.arange(int(seconds * sr)) / sr
    return sum(amp * 0.5 ** h * np.sin(2 * np.pi * freq * (h + 1) * t + phase) for h in range(harmonics))


def mel_of(audio, cfg):
    return MelSpectrogram(cfg).double()(torch.as_tensor(np.asarray(audio, dtype=np.float64)))


@pytest.mark.parametrize("n,window", [(200, 87), (200, 11), (60, 87), (87, 87), (6, 87)])
def test_savgol_matches_scipy_interp_mode(n, window):
    x = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ours = F.savgol_smooth(x, window, 3).numpy()
    w = F.effective_window(n, window, 3)
    assert w == min(window, n if n % 2 else n - 1)
    ref = ss.savgol_filter(x.numpy(), w, 3, axis=-1, mode="interp")
    assert np.abs(ours - ref).max() < 1e-8
    # along another dim too (used for the 2-D SSM smoothing)
    assert torch.allclose(F.savgol_smooth(x.T, window, 3, dim=0), torch.from_numpy(ours).T, atol=1e-8)


def test_savgol_too_short_is_identity():
    x = torch.randn(4, dtype=torch.float64)
    assert torch.equal(F.savgol_smooth(x, 87, 3), x)


def test_sg_window_is_one_second_odd(mel_cfg):
    assert F.sg_window(mel_cfg) == 87


def test_intensity_from_mel_matches_waveform_rms_on_rendered_music(rendered_audio, mel_cfg):
    mel = mel_of(rendered_audio, mel_cfg)
    from_mel = F.intensity_curve(mel, mel_cfg).numpy()
    from_wav = F.intensity_curve_from_audio(rendered_audio, SR, mel_cfg)
    assert from_mel.shape == from_wav.shape
    assert np.sqrt(np.mean((from_mel - from_wav) ** 2)) < 0.5  # measured 0.12 dB
    assert np.sqrt(np.mean((F.frame_energy_db(mel, mel_cfg).numpy()
                            - 20 * np.log10(librosa.feature.rms(y=rendered_audio, frame_length=2048, hop_length=256,
                                                                center=True, pad_mode="constant")[0] + 1e-9)) ** 2)) < 1.5
    # the curve moves with the music: a real dynamic range, not a constant
    assert from_wav.max() - from_wav.min() > 5


def test_intensity_of_vocoded_mel_matches_mel_feature(rendered_audio, mel_cfg):
    from dittomusic.audio.vocoder import get_vocoder

    mel = mel_of(rendered_audio[:255 * 256], mel_cfg).float()
    audio = get_vocoder("griffinlim", mel_cfg)(mel).numpy()
    diff = F.intensity_curve(mel, mel_cfg).numpy() - F.intensity_curve_from_audio(audio, SR, mel_cfg)
    assert np.sqrt(np.mean(diff ** 2)) < 0.5  # measured 0.13-0.15 dB on 512 frames


def test_six_db_gain_raises_both_curves_by_six_db(rendered_audio, mel_cfg):
    quiet = 0.3 * rendered_audio[: SR * 4]
    loud = quiet * 10 ** (6 / 20)
    for curve in (lambda a: F.intensity_curve(mel_of(a, mel_cfg), mel_cfg).numpy(),
                  lambda a: F.intensity_curve_from_audio(a, SR, mel_cfg)):
        shift = curve(loud) - curve(quiet)
        assert np.allclose(shift, 6.0, atol=0.05)


def test_intensity_full_scale_sine_level(mel_cfg):
    # a sine of amplitude a has RMS a/sqrt(2): here a = 0.1 -> -23.01 dB (away from the clip edges,
    # where the zero-padded first/last frames pull the edge polynomial down)
    audio = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(SR * 3) / SR)
    curve = F.intensity_curve(mel_of(audio, mel_cfg), mel_cfg).numpy()
    assert np.allclose(curve[60:-60], 20 * np.log10(0.1 / np.sqrt(2)), atol=0.1)


def test_a440_sine_is_pitch_class_a_from_mel_and_waveform(mel_cfg):
    audio = tone(440.0, 1.5)
    mel = mel_of(audio, mel_cfg)
    logp = F.log_chroma(mel, mel_cfg)
    assert logp.shape == (12, mel.shape[-1])
    assert torch.allclose(logp.exp().sum(0), torch.ones(mel.shape[-1], dtype=logp.dtype))
    assert (logp[:, 5:-5].argmax(0) == 9).all()
    assert (F.pitch_classes_from_audio(audio, SR, mel_cfg)[5:-5] == 9).all()
    assert F.PITCH_CLASSES[9] == "A"


@pytest.mark.parametrize("midi", [60, 61, 66, 71, 74, 79, 85, 90])
def test_harmonic_tones_map_to_their_pitch_class(midi, mel_cfg):
    audio = tone(440 * 2 ** ((midi - 69) / 12), 0.6, harmonics=4)
    assert (F.log_chroma(mel_of(audio, mel_cfg), mel_cfg)[:, 5:-5].argmax(0) == midi % 12).all()


def test_bass_below_middle_c_is_ignored(mel_cfg):
    # a loud G2 bass under a quiet E5: the high-passed chroma reads the melody, not the bass
    audio = tone(98.0, 1.0, amp=0.5) + tone(659.26, 1.0, amp=0.05)
    assert (F.log_chroma(mel_of(audio, mel_cfg), mel_cfg)[:, 5:-5].argmax(0) == 4).all()
    assert np.mean(F.pitch_classes_from_audio(audio, SR, mel_cfg)[5:-5] == 4) > 0.9
    w = F.chroma_weights(mel_cfg)
    centres = librosa.mel_frequencies(mel_cfg.n_mels + 2, fmax=SR / 2)[1:-1]
    assert np.all(w[:, centres <= 261.6] == 0) and np.allclose(w[:, centres > 261.6].sum(0), 1)


def test_mel_chroma_agrees_with_waveform_chroma_on_rendered_music(rendered_audio, mel_cfg):
    mel = mel_of(rendered_audio, mel_cfg)
    ours = F.log_chroma(mel, mel_cfg).argmax(0).numpy()
    theirs = F.pitch_classes_from_audio(rendered_audio, SR, mel_cfg)
    assert np.mean(ours == theirs) > 0.9  # measured 97.5%


def test_mfcc_matches_librosa(rendered_audio, mel_cfg):
    mel = mel_of(rendered_audio[: SR * 3], mel_cfg)
    ours = F.mfcc(mel, mel_cfg).numpy()
    power = librosa.feature.melspectrogram(y=rendered_audio[: SR * 3].astype(np.float64), sr=SR, n_fft=2048,
                                           hop_length=256, n_mels=160, pad_mode="constant")
    db = librosa.power_to_db(power, ref=1.0, amin=1e-12, top_db=None)
    ref = librosa.feature.mfcc(S=db, n_mfcc=13, dct_type=2, norm="ortho")[1:]
    assert ours.shape == ref.shape == (12, mel.shape[-1])
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()


def test_ssm_is_cosine_similarity(rendered_audio, mel_cfg):
    mel = mel_of(rendered_audio[: SR * 3], mel_cfg)
    raw = F.self_similarity(mel, mel_cfg, window=1)
    assert torch.allclose(raw, raw.T) and torch.allclose(raw.diagonal(), torch.ones(raw.shape[0], dtype=raw.dtype))
    assert raw.min() >= -1 - 1e-9 and raw.max() <= 1 + 1e-9 and raw.min() < -0.3  # z-scored: contrast both ways
    smooth = F.self_similarity(mel, mel_cfg)
    assert torch.allclose(smooth, smooth.T, atol=1e-9)
    # smoothing removes frame-level flicker: smaller differences between neighbouring cells
    assert (smooth.diff(dim=-1).abs().mean() < 0.5 * raw.diff(dim=-1).abs().mean())
    np.testing.assert_allclose(F.self_similarity_from_audio(rendered_audio[: SR * 3], SR, mel_cfg), smooth.numpy(),
                               atol=1e-9)
    # the factored smoothing (filter the MFCC rows, then the product) is the 2-D Savitzky-Golay of the matrix
    w = F.sg_window(mel_cfg)
    twice = ss.savgol_filter(ss.savgol_filter(raw.double().numpy(), w, 3, axis=-1, mode="interp"), w, 3, axis=0,
                             mode="interp")
    np.testing.assert_allclose(smooth.double().numpy(), twice, atol=1e-5)


def test_seam_ratio_is_about_one_for_a_continuous_tone():
    audio = tone(220.0, 4.0, harmonics=5)
    for b in (1.0, 2.0, 2.717):
        assert F.spectral_flux_seam_ratio(audio, SR, [b]) < 1.3  # measured 1.15


def test_seam_ratio_is_large_for_a_hard_cut_between_two_sounds():
    a = tone(220.0, 2.0, harmonics=5)
    b = tone(311.1, 2.0, harmonics=2, amp=0.1)
    cut = np.concatenate([a, b])
    assert F.spectral_flux_seam_ratio(cut, SR, [2.0]) > 3.0
    # only the boundary's neighbourhood counts; several boundaries report the worst one
    assert F.spectral_flux_seam_ratio(cut, SR, [1.0]) < F.spectral_flux_seam_ratio(cut, SR, [2.0]) / 2
    assert F.spectral_flux_seam_ratio(cut, SR, [1.0, 2.0]) == F.spectral_flux_seam_ratio(cut, SR, [2.0])


def test_seam_ratio_hard_cut_between_renders(rendered_audio):
    cut = np.concatenate([rendered_audio[: SR * 4], 0.3 * tone(523.25, 4.0, harmonics=3)])
    assert F.spectral_flux_seam_ratio(cut, SR, [4.0]) > 2.0


def test_seam_ratio_rejects_bad_boundaries():
    from dittomusic.errors import DittoError

    with pytest.raises(DittoError, match="outside the clip"):
        F.spectral_flux_seam_ratio(tone(220.0, 1.0), SR, [3.0])
    with pytest.raises(DittoError, match="at least one boundary"):
        F.spectral_flux_seam_ratio(tone(220.0, 1.0), SR, [])
