import logging

import pytest
import torch

from dittomusic.audio import MelConfig, MelSpectrogram, get_vocoder
from dittomusic.audio import vocoder as voc_mod
from dittomusic.audio.losses import MelL1Loss, MultiResolutionSTFTLoss, mel_spectral_convergence, mrstft_distance
from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig, load_vocoder
from dittomusic.checkpoint import save_tensors
from dittomusic.errors import DittoError

from ..conftest import TINY_VOCODER

CFG = MelConfig()


def _net(seed=0, **kw) -> ConvNeXtVocoder:
    torch.manual_seed(seed)
    return ConvNeXtVocoder(VocoderConfig.for_mel(CFG, **{**TINY_VOCODER, **kw})).eval()


def _save(net, path):
    save_tensors(path, {k: v.half() for k, v in net.state_dict().items()},
                 {"kind": "vocoder", "vocoder_config": net.cfg.to_dict()})
    return path


def test_shapes_match_griffinlim_and_batch_dims_pass_through():
    mel = torch.rand(2, 3, 160, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for gl_iters, tol in ((0, 1e-5), (16, 2e-3)):
        net = _net(gl_iters=gl_iters)
        with torch.no_grad():
            out = net(mel)
            single = net(mel[1, 2])
        assert out.shape == (2, 3, 39 * 256) == (2, 3, get_vocoder("griffinlim", CFG, n_iter=1)(mel[0, 0]).shape[-1])
        # the network and phase locking agree to float error; 16 projections with mel matching amplify the
        # batched matmuls' other rounding (1e-4 of the peak measured at 1 thread), far below a mixed-up item
        torch.testing.assert_close(out[1, 2], single, rtol=0, atol=tol * float(single.abs().max()))
        assert (out[0, 0] - single).abs().max() > 100 * tol * single.abs().max()
    with pytest.raises(DittoError, match="at least 2 mel frames"):
        net(mel[..., :1])


def test_deterministic_and_causal_in_the_right_places():
    net = _net(mel_match=0.0)  # each mel-matching step widens the reach by the mel's window (2048 samples)
    mel = torch.rand(160, 64) * 2 - 1
    with torch.no_grad():
        a, b = net(mel), net(mel)
        # a change in the last frames leaves the start of the audio alone (finite receptive field)
        mel2 = mel.clone()
        mel2[:, -4:] = -1
        c = net(mel2)
    assert torch.equal(a, b)
    assert torch.equal(a[:20 * 256], c[:20 * 256]) and not torch.equal(a, c)


def test_gradient_flows_from_audio_back_to_the_mel(tmp_path):
    net = _net()
    mel = (torch.rand(1, 160, 32) * 2 - 1).requires_grad_(True)
    net(mel).square().sum().backward()
    assert torch.isfinite(mel.grad).all() and mel.grad.abs().sum() > 0
    # the registered vocoder keeps its weights frozen but is differentiable in its input
    v = get_vocoder("neural", CFG, weights=_save(net, tmp_path / "v.safetensors"))
    mel.grad = None
    v(mel).square().sum().backward()
    assert mel.grad.abs().sum() > 0 and not any(p.requires_grad for p in v.net.parameters())


def assert_same_vocoder(a, b, mel):
    """fp16 weights: the learned magnitudes agree closely; the locked phase follows the magnitude's peaks,
    so a peak that moves by a rounding error changes a few samples: the audio is compared as a spectrum."""
    torch.testing.assert_close(a.magnitude(mel), b.magnitude(mel), rtol=2e-2, atol=2e-3)
    assert mel_spectral_convergence(b(mel), a(mel)) < 0.03


def test_release_file_round_trip_in_fp16(tmp_path):
    net = _net(seed=3)
    path = _save(net, tmp_path / "v.safetensors")
    loaded, meta = load_vocoder(path)
    assert meta["vocoder_config"]["dim"] == TINY_VOCODER["dim"] and loaded.cfg.n_fft == 512
    mel = torch.rand(160, 48) * 2 - 1
    with torch.no_grad():
        assert_same_vocoder(loaded, net, mel)


def test_neural_vocoder_refuses_other_mels_and_missing_weights(tmp_path):
    path = _save(_net(), tmp_path / "v.safetensors")
    with pytest.raises(DittoError, match="n_mels 160 vs 128"):
        get_vocoder("neural", MelConfig(n_mels=128), weights=path)
    with pytest.raises(DittoError, match="weights not found.*griffinlim"):
        get_vocoder("neural", CFG, weights=tmp_path / "none.safetensors")
    save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)}, {"kind": "base"})
    with pytest.raises(DittoError, match="no vocoder config"):
        get_vocoder("neural", CFG, weights=tmp_path / "x.safetensors")
    with pytest.raises(DittoError, match="takes no weights"):
        get_vocoder("griffinlim", CFG, weights=path)
    with pytest.raises(DittoError, match="twice the hop"):
        VocoderConfig.for_mel(CFG, n_fft=256)


def test_default_is_neural_only_when_the_bundled_file_exists(tmp_path, monkeypatch, caplog):
    missing = tmp_path / "assets" / "vocoder.safetensors"
    monkeypatch.setattr(voc_mod, "bundled_vocoder_path", lambda: missing)
    monkeypatch.setattr(voc_mod, "_warned_fallback", False)
    with caplog.at_level(logging.WARNING, logger="dittomusic.audio"):
        assert voc_mod.default_vocoder() == "griffinlim"
        assert isinstance(get_vocoder(None, CFG), voc_mod.GriffinLimVocoder)
    warnings = [r for r in caplog.records if "Griffin-Lim" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()  # one line, once
    missing.parent.mkdir()
    _save(_net(), missing)
    assert voc_mod.default_vocoder() == "neural"
    v = get_vocoder(None, CFG, device="cpu")
    assert isinstance(v, voc_mod.NeuralVocoder) and v.weights == str(missing)
    assert voc_mod.vocoder_name(v) == "neural (vocoder.safetensors)"


def test_a_weights_path_selects_the_neural_vocoder(tmp_path):
    path = _save(_net(), tmp_path / "mine.safetensors")
    v = get_vocoder(str(path), CFG)
    assert isinstance(v, voc_mod.NeuralVocoder)
    with pytest.raises(DittoError, match="unknown vocoder 'nope'.*neural"):
        get_vocoder("nope")


def test_pipeline_takes_a_vocoder_and_falls_back_to_griffinlim(tiny_model_path, tmp_path, monkeypatch):
    from dittomusic.generate import Pipeline

    monkeypatch.setattr(voc_mod, "bundled_vocoder_path", lambda: tmp_path / "missing.safetensors")
    assert isinstance(Pipeline(tiny_model_path, "cpu").vocoder, voc_mod.GriffinLimVocoder)
    path = _save(_net(), tmp_path / "v.safetensors")
    pipe = Pipeline(tiny_model_path, "cpu", str(path))
    mel, audio = pipe.generate(None, n=1, steps=2, seconds=1.0)
    assert isinstance(pipe.vocoder, voc_mod.NeuralVocoder) and audio.shape == (1, (mel.shape[-1] - 1) * 256)
    monkeypatch.setattr(voc_mod, "bundled_vocoder_path", lambda: path)
    assert isinstance(Pipeline(tiny_model_path, "cpu").vocoder, voc_mod.NeuralVocoder)


def test_spectral_losses_are_zero_on_identity_and_grow_with_error(rendered_audio):
    x = torch.from_numpy(rendered_audio[:22050])
    noisy = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    sc, mag = MultiResolutionSTFTLoss()(x, x)
    assert float(sc) < 1e-5 and float(mag) == 0  # sc: sqrt of its 1e-12 floor
    assert 0 < mrstft_distance(x, noisy) < mrstft_distance(x, 0.1 * torch.randn_like(x))
    assert mel_spectral_convergence(x, x) == 0 and 0 < mel_spectral_convergence(x, noisy) < 1
    assert float(MelL1Loss(CFG)(x, x)) == 0 and float(MelL1Loss(CFG)(noisy, x)) > 0
    # a time shift of one hop is a real error for both distances
    shifted = torch.roll(x, 256)
    assert mrstft_distance(x, shifted) > mrstft_distance(x, x * 0.99)


def test_loss_gradients_reach_the_waveform():
    x = torch.randn(2, 8192)
    y = torch.randn(2, 8192, requires_grad=True)
    sc, mag = MultiResolutionSTFTLoss()(y, x)
    (sc + mag + MelL1Loss(CFG)(y, x)).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_mel_of_the_griffinlim_round_trip_is_worse_than_a_tiny_noise(rendered_audio):
    """Sanity of the benchmark's metric on real music: Griffin-Lim's phase error shows in it."""
    x = torch.from_numpy(rendered_audio[: 200 * 256])
    mel = MelSpectrogram(CFG)(x)
    with torch.no_grad():
        gl = get_vocoder("griffinlim", CFG)(mel)
    ref = x[: gl.shape[-1]]
    assert mrstft_distance(ref, gl) > mrstft_distance(ref, ref + 1e-3 * torch.randn_like(ref))


def test_cli_vocoder_option(tiny_model_path, tmp_path):
    import soundfile as sf
    from click.testing import CliRunner

    from dittomusic.cli import cli

    path = _save(_net(), tmp_path / "v.safetensors")
    base = ["generate", "--model", str(tiny_model_path), "--steps", "2", "--seconds", "1.0"]
    for name, spec in (("gl", "griffinlim"), ("nn", str(path))):
        r = CliRunner().invoke(cli, [*base, "--vocoder", spec, "--out", str(tmp_path / f"{name}.wav")])
        assert r.exit_code == 0, r.output
    a, _ = sf.read(tmp_path / "gl.wav")
    b, _ = sf.read(tmp_path / "nn.wav")
    assert a.shape == b.shape and not (a == b).all()
    r = CliRunner().invoke(cli, [*base, "--vocoder", "nope", "--out", str(tmp_path / "x.wav")])
    assert r.exit_code == 1 and "unknown vocoder 'nope'" in r.output and "Traceback" not in r.output


def _steady_head(phase: str, f: float):
    """An iSTFT head whose outputs are the same every frame (as a conv net's are for a steady input),
    set by hand to a tone at f Hz: a triangular lobe over +-2 bins, for the recurrent head each bin's
    instantaneous-frequency offset f/bin - k and a gate of 1."""
    from dittomusic.audio.neural import ISTFTHead

    head = ISTFTHead(1, 1024, 256, phase)
    bins, c = 513, f / (22050 / 1024)
    k = torch.arange(bins).float()
    bias = torch.zeros(head.proj.out_features)
    bias[:bins] = torch.log((1 - (k - c).abs() / 2).clamp(min=0) * 10 + 1e-9)
    if phase == "recurrent":
        bias[2 * bins:3 * bins] = c - k
        bias[3 * bins:] = 20.0
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(bias)
        return head(torch.ones(1, 200, 1))[0, 50 * 256:150 * 256]


@pytest.mark.parametrize("f", [441.0, 300.0])
def test_recurrent_phase_sustains_a_tone_between_the_86_hz_lines(f):
    """Identical frames in, identical frames out: the per-frame (Vocos) head then makes audio that repeats
    every hop, so a steady tone can only sit on multiples of 22050 / 256 = 86.1 Hz. The recurrent head
    carries the phase and keeps the tone where it is."""
    import numpy as np

    def peak(wav):
        spec = np.abs(np.fft.rfft(wav.numpy() * np.hanning(len(wav))))
        return np.fft.rfftfreq(len(wav), 1 / 22050)[spec.argmax()]

    direct, carried = _steady_head("direct", f), _steady_head("recurrent", f)
    assert torch.allclose(direct[256:], direct[:-256], atol=1e-5)  # hop-periodic
    assert abs(peak(direct) / (22050 / 256) - round(peak(direct) / (22050 / 256))) < 0.01 and abs(peak(direct) - f) > 5
    assert abs(peak(carried) - f) < 1.5


def test_magnitude_prior_is_close_to_the_heads_own_stft(rendered_audio):
    """Before any training, the log-magnitude the head corrects is the mel's power spread over each band's
    bins: the right energy and a rough shape, and never the floor (the pseudo-inverse put ~20 % of a test
    clip's bins there, measured, where the render had energy)."""
    x = torch.from_numpy(rendered_audio[:200 * 256])
    stft = torch.stft(x, 1024, 256, window=torch.hann_window(1024), center=True, return_complex=True).abs()
    for prior in ("spread", "pinv"):
        net = _net(n_fft=1024, prior=prior)
        est = net.prior_logmag(MelSpectrogram(CFG)(x)[None])[0].exp()
        assert est.shape == stft.shape
        assert 0.8 < float(est.square().sum() / stft.square().sum()) < 1.3
        assert float(torch.linalg.norm(stft - est) / torch.linalg.norm(stft)) < 0.6
        floored = float((est <= 1.01e-5).float().mean())
        assert floored == 0.0 if prior == "spread" else floored > 0.05


def test_config_of_an_older_file_keeps_its_prior_and_fixed_magnitudes():
    old = VocoderConfig.for_mel(CFG, **TINY_VOCODER).to_dict()
    del old["prior"], old["mel_match"]
    cfg = VocoderConfig.from_dict(old)
    assert cfg.prior == "pinv" and cfg.mel_match == 0.0
    assert VocoderConfig().prior == "spread"
    # mel matching by default only where the head's STFT is the mel's own
    assert _net(n_fft=2048).matches_mel and not _net(n_fft=512).matches_mel and _net(n_fft=512, mel_match=0.5).matches_mel
    with pytest.raises(DittoError, match="prior is one of"):
        VocoderConfig(prior="nnls")
    with pytest.raises(DittoError, match="between 0 and 1"):
        VocoderConfig(mel_match=1.5)
    with pytest.raises(DittoError, match="gl_momentum is at least 0 and below 1"):
        VocoderConfig(gl_momentum=1.0)


@pytest.mark.parametrize("n_fft", [1024, 2048])  # the mel's own STFT, and another
def test_mel_matching_brings_the_audios_mel_to_the_input(rendered_audio, n_fft):
    """An untrained head gives a rough magnitude; the mel-matching projections must pull the vocoded audio's
    own mel towards the mel it was given, at either head size."""
    x = torch.from_numpy(rendered_audio[:120 * 256])
    mel = MelSpectrogram(CFG)(x)
    errs = {}
    for step in (0.0, 0.5):
        with torch.no_grad():
            wav = _net(n_fft=n_fft, mel_match=step)(mel)
        errs[step] = mel_spectral_convergence(x, wav, CFG)
    assert errs[0.5] < 0.7 * errs[0.0], errs
