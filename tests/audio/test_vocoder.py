import numpy as np
import pytest
import torch

from dittomusic.audio import MelSpectrogram, get_vocoder, register_vocoder
from dittomusic.audio.vocoder import available_vocoders
from dittomusic.errors import DittoError

# Mel-magnitude spectral convergence of a Griffin-Lim round trip on rendered music.
# Measured 0.12 with the defaults (32 iterations, NNLS mel inversion); a plain
# pseudo-inverse measured 0.23.
SC_BOUND = 0.2


def spectral_convergence(ref: torch.Tensor, est: torch.Tensor) -> float:
    return float(torch.linalg.norm(ref - est) / torch.linalg.norm(ref))


def test_griffinlim_round_trip_spectral_convergence(rendered_audio, mel_cfg):
    mod = MelSpectrogram(mel_cfg)
    x = torch.from_numpy(rendered_audio[: (mel_cfg.clip_frames - 1) * mel_cfg.hop_length])
    with torch.no_grad():
        mel = mod(x)
        wav = get_vocoder("griffinlim", mel_cfg)(mel)
        assert wav.shape == x.shape
        sc = spectral_convergence(mod.mel_power(x).sqrt(), mod.mel_power(wav).sqrt())
        sc_pinv = spectral_convergence(mod.mel_power(x).sqrt(),
                                       mod.mel_power(get_vocoder("griffinlim", mel_cfg, nnls_iter=0)(mel)).sqrt())
    assert sc <= SC_BOUND, sc
    assert sc < sc_pinv  # the NNLS step earns its place


def test_griffinlim_is_deterministic_and_batched(rendered_audio, mel_cfg):
    mod = MelSpectrogram(mel_cfg)
    x = torch.from_numpy(rendered_audio[:44100])
    voc = get_vocoder("griffinlim", mel_cfg, n_iter=4)
    with torch.no_grad():
        mel = mod(x)
        a, b = voc(mel), voc(mel)
        batch = voc(torch.stack([mel, mel]))
    assert torch.equal(a, b)
    assert batch.shape == (2, a.shape[-1])
    torch.testing.assert_close(batch[0], a, rtol=1e-4, atol=1e-5)


def test_vocoder_registry():
    with pytest.raises(DittoError, match="unknown vocoder 'nope'.*griffinlim"):
        get_vocoder("nope")

    @register_vocoder("silence-test")
    class Silence:
        def __init__(self, cfg):
            self.cfg = cfg

        def __call__(self, mel):
            return torch.zeros(*mel.shape[:-2], (mel.shape[-1] - 1) * self.cfg.hop_length)

    assert "silence-test" in available_vocoders()
    out = get_vocoder("silence-test")(torch.zeros(160, 10))
    assert out.shape == (9 * 256,)


@pytest.mark.parametrize("kw", [{}, dict(n_mels=8, n_fft=64, sample_rate=8000), dict(n_mels=256, n_fft=256)])
def test_cached_pseudo_inverse_is_torchs(kw):
    from dittomusic.audio.mel import MelConfig
    from dittomusic.audio.vocoder import _basis_and_pinv

    cfg = MelConfig(**kw)  # the last has empty bands: rank-deficient, so the SVD fallback runs
    basis, pinv = _basis_and_pinv(cfg)
    ref = torch.linalg.pinv(torch.from_numpy(cfg.mel_basis()).double()).float()
    assert torch.equal(basis, torch.from_numpy(cfg.mel_basis()))
    assert torch.allclose(pinv, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
