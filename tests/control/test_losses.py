"""Control losses: registry, differentiability, batching, devices, and that each loss/metric
prefers outputs that follow the control."""

import numpy as np
import pytest
import torch

from dittomusic.audio.mel import MelConfig, MelSpectrogram
from dittomusic.control import (
    IntensityControl,
    MelodyControl,
    MultiControl,
    PaintControl,
    StructureControl,
    available_controls,
    get_control,
    intensity_curve,
    intensity_preset,
    loop_masks,
    outpaint_masks,
    register_control,
    structure_from_pattern,
)
from dittomusic.control import base as L
from dittomusic.errors import DittoError

SR = 22050
CFG = MelConfig()
# a tiny front-end for gradcheck: 24 bands up to 4 kHz, 125 frames/s
TINY = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=24)


def tone(freq, seconds, amp=0.2, harmonics=3, sr=SR):
    t = np.arange(int(round(seconds * sr))) / sr
    return sum(amp / (h + 1) * np.sin(2 * np.pi * freq * (h + 1) * t) for h in range(harmonics))


def mel_of(audio, cfg=CFG):
    return MelSpectrogram(cfg).double()(torch.as_tensor(np.asarray(audio, dtype=np.float64)))


def tiny_controls(frames=12):
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(TINY.n_mels, 20, generator=g, dtype=torch.float64) - 0.5
    return [
        IntensityControl(torch.linspace(-40, -20, frames), cfg=TINY, window=7),
        MelodyControl(torch.tensor([9] * 6 + [-1, 0, 0, 4, 4, 7][: frames - 6]), cfg=TINY),
        StructureControl(structure_from_pattern("ABAB", frames, TINY, window=5), cfg=TINY, window=5, n_coeffs=6),
        PaintControl(outpaint_masks(ref, 3 / TINY.frame_rate, frames, TINY)),
        PaintControl(loop_masks(None, 2 / TINY.frame_rate, frames, cfg=TINY)),
    ]


# ------------------------------------------------------------------ registry

def test_registry_names_and_errors():
    assert {"intensity", "melody", "structure", "outpaint", "inpaint", "loop"} <= set(available_controls())
    with pytest.raises(DittoError) as e:
        get_control("loudness")
    for name in ("intensity", "melody", "structure", "outpaint", "inpaint", "loop"):
        assert name in str(e.value)
    with pytest.raises(DittoError, match="bad arguments for control 'intensity'.*target"):
        get_control("intensity", curve=[1.0])
    assert isinstance(get_control("melody", target=[0, 1, -1]), MelodyControl)
    assert get_control("outpaint", ref_mel=torch.zeros(160, 300), overlap_s=1.0).masks.frames == 512


def test_register_control_decorator():
    @register_control("test-constant")
    class Constant(L.Control):
        name = "test-constant"

        def loss(self, mel):
            return mel.mean(dim=(-2, -1))

    try:
        assert "test-constant" in available_controls()
        assert isinstance(get_control("test-constant"), Constant)
        with pytest.raises(ValueError, match="already registered"):
            register_control("test-constant")(Constant)
    finally:
        L._CONTROLS.pop("test-constant")


def test_bad_targets_are_rejected():
    with pytest.raises(DittoError, match="pitch classes 0..11"):
        MelodyControl(torch.tensor([0, 12]))
    with pytest.raises(DittoError, match="constrains no frame"):
        MelodyControl(torch.tensor([-1, -1]))
    with pytest.raises(DittoError, match="no finite dB"):
        IntensityControl(torch.full((5,), float("nan")))
    with pytest.raises(DittoError, match="square"):
        StructureControl(torch.zeros(4, 5))
    ctl = IntensityControl(torch.zeros(10))
    with pytest.raises(DittoError, match="10 frames, the mel has 12"):
        ctl.loss(torch.zeros(1, 160, 12))
    with pytest.raises(DittoError, match="bins"):
        ctl.loss(torch.zeros(1, 80, 10))


# ------------------------------------------------------------------ autograd, batching, devices

def test_gradcheck_every_control_in_float64():
    g = torch.Generator().manual_seed(1)
    mel = (torch.rand(2, TINY.n_mels, 12, generator=g, dtype=torch.float64) * 1.4 - 0.9).requires_grad_()
    controls = tiny_controls()
    for ctl in controls + [MultiControl([(controls[0], 0.25), (controls[1], 1.0), controls[2]])]:
        assert torch.autograd.gradcheck(ctl.loss, (mel,), eps=1e-6, atol=1e-5, rtol=1e-3), ctl


def test_gradients_are_finite_and_nonzero_on_real_music(rendered_audio):
    mel = mel_of(rendered_audio[: 255 * 256]).float()[None].repeat(2, 1, 1)
    mel = mel + 0.01 * torch.randn_like(mel, generator=None)
    F = mel.shape[-1]
    controls = [
        get_control("intensity", target=intensity_preset("tanh-rise", F, -35, -15)),
        get_control("melody", target=torch.tensor([9, 0, 4, -1]).repeat_interleave(F // 4)),
        get_control("structure", target=structure_from_pattern("ABBA", F)),
        get_control("outpaint", ref_mel=torch.rand(160, 300) - 0.5, overlap_s=1.0, frames=F),
        get_control("inpaint", ref_mel=torch.rand(160, F) - 0.5, gap_start_s=1.0, gap_s=1.0),
        get_control("loop", ref_mel=torch.rand(160, 300) - 0.5, overlap_s=0.5, frames=F),
        get_control("loop", overlap_s=0.5, frames=F),
    ]
    for ctl in controls:
        x = mel.clone().requires_grad_()
        loss = ctl.loss(x)
        assert loss.shape == (2,) and torch.isfinite(loss).all(), ctl.name
        loss.sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, ctl.name


def test_batch_items_are_independent_and_targets_can_be_batched(rendered_audio):
    mel = mel_of(rendered_audio[: 127 * 256])
    batch = torch.stack([mel, mel * 0.9 - 0.05, mel.flip(-1)])
    F = mel.shape[-1]
    targets = torch.stack([intensity_preset(n, F, -40, -10) for n in ("linear-rise", "cosine-fall", "tanh-rise")])
    shared = IntensityControl(targets[0])
    per_item = IntensityControl(targets)
    for i in range(3):
        assert torch.allclose(shared.loss(batch)[i], shared.loss(batch[i])[0])
        assert torch.allclose(per_item.loss(batch)[i], IntensityControl(targets[i]).loss(batch[i])[0])
    assert get_control("melody", target=torch.zeros(F, dtype=torch.long)).loss(mel).shape == (1,)  # unbatched mel
    with pytest.raises(DittoError, match="batch"):
        per_item.loss(batch[:2])


def test_losses_follow_the_input_dtype_and_device():
    for dtype in (torch.float32, torch.float64):
        mel = torch.rand(2, TINY.n_mels, 12, dtype=dtype) - 0.5
        for ctl in tiny_controls():
            assert ctl.loss(mel).dtype == dtype, ctl.name
    # meta tensors carry no data: any constant built on the CPU instead of the input's device
    # either fails to combine or produces a CPU result
    mel = torch.empty(2, CFG.n_mels, 64, device="meta")
    for ctl in [IntensityControl(torch.zeros(64)), MelodyControl(torch.zeros(64, dtype=torch.long)),
                StructureControl(torch.zeros(64, 64)), get_control("loop", overlap_s=0.1, frames=64),
                get_control("outpaint", ref_mel=torch.zeros(160, 80), overlap_s=0.1, frames=64)]:
        assert ctl.loss(mel).device.type == "meta", ctl.name
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        mel = torch.rand(2, TINY.n_mels, 12, device="cuda") - 0.5
        for ctl in tiny_controls():
            assert ctl.loss(mel).device.type == "cuda"


# ------------------------------------------------------------------ intensity

def test_intensity_loss_is_mse_in_db_over_constrained_frames(rendered_audio):
    mel = mel_of(rendered_audio[: SR * 3])
    own = intensity_curve(mel, CFG)
    assert IntensityControl(own).loss(mel).item() == pytest.approx(0, abs=1e-9)
    assert IntensityControl(own + 6).loss(mel).item() == pytest.approx(36, rel=1e-6)
    half = own.clone() + torch.linspace(0, 10, own.shape[-1], dtype=own.dtype)
    half[: len(half) // 2] = float("nan")
    expected = (torch.linspace(0, 10, own.shape[-1], dtype=own.dtype)[len(half) // 2:] ** 2).mean()
    assert IntensityControl(half).loss(mel).item() == pytest.approx(expected.item(), rel=1e-5)


def test_intensity_metric_on_audio_matches_the_mel_loss(rendered_audio):
    audio = rendered_audio[: 511 * 256]
    mel = mel_of(audio)
    ctl = IntensityControl(intensity_preset("cosine-rise", mel.shape[-1], -40, -15))
    loss = ctl.loss(mel).item()
    assert loss > 20  # the chorale does not follow this crescendo
    assert ctl.metric(audio, SR) == pytest.approx(loss, rel=0.05)
    louder = IntensityControl(intensity_curve(mel, CFG) + 6)
    assert louder.metric(audio * 10 ** (6 / 20), SR) < 0.05


# ------------------------------------------------------------------ melody

def test_melody_nll_prefers_the_matching_pitch_class():
    a4, c5 = mel_of(tone(440.0, 1.0)), mel_of(tone(523.25, 1.0))
    F = a4.shape[-1]
    ctl = MelodyControl(torch.full((F,), 9))
    la, lc = ctl.loss(torch.stack([a4, c5]))
    assert la < 0.5 < 3.0 < lc
    # frames marked -1 do not count
    mixed = torch.cat([a4[:, : F // 2], c5[:, F // 2:]], dim=-1)
    target = torch.full((F,), 9)
    target[F // 2:] = -1
    assert MelodyControl(target).loss(mixed).item() == pytest.approx(
        MelodyControl(target[: F // 2]).loss(a4[:, : F // 2]).item(), rel=0.05)
    assert MelodyControl(target).loss(mixed) < MelodyControl(torch.full((F,), 9)).loss(mixed)


def test_melody_metric_is_waveform_accuracy():
    audio = np.concatenate([tone(440.0, 1.0), tone(659.26, 1.0)])
    F = 1 + len(audio) // 256
    t = np.arange(F) * 256 / SR
    right = torch.from_numpy(np.where(t < 1.0, 9, 4))
    assert MelodyControl(right).metric(audio, SR) > 95
    assert MelodyControl(torch.full((F,), 2)).metric(audio, SR) < 5
    half = torch.from_numpy(np.where(t < 1.0, 9, -1))
    assert MelodyControl(half).metric(audio, SR) > 95
    ctl = MelodyControl(right)
    assert ctl.higher_is_better and list(ctl.metrics(audio, SR)) == ["melody_accuracy_pct"]


# ------------------------------------------------------------------ structure

def abab_audio(segment_frames=128):
    n = segment_frames * 256
    rng = np.random.default_rng(0)
    a = sum(tone(f, n / SR, amp=0.15, harmonics=8) for f in (130.81, 164.81, 196.0))
    b = sum(tone(f, n / SR, amp=0.05, harmonics=1) for f in (698.46, 880.0, 1046.5)) + 0.02 * rng.standard_normal(n)
    return np.concatenate([a, b, a, b])[: 4 * n - 255]


def test_abab_signal_is_closest_to_the_abab_target():
    audio = abab_audio()
    mel = mel_of(audio)
    F = mel.shape[-1]
    assert F == 512
    losses = {p: StructureControl(structure_from_pattern(p, F)).loss(mel).item() for p in ("ABAB", "AAAA", "ABBA", "AABB")}
    assert losses["ABAB"] < 0.25 * min(losses[p] for p in ("AAAA", "ABBA", "AABB")), losses
    metrics = {p: StructureControl(structure_from_pattern(p, F)).metric(audio, SR) for p in ("ABAB", "AAAA")}
    assert metrics["ABAB"] < metrics["AAAA"]
    assert metrics["ABAB"] == pytest.approx(losses["ABAB"], abs=1e-4)


# ------------------------------------------------------------------ painting

def test_outpaint_loss_only_sees_the_overlap():
    ref = torch.rand(160, 300) * 2 - 1
    ctl = get_control("outpaint", ref_mel=ref, overlap_s=1.0, frames=200)
    o = ctl.masks.overlap
    gen = torch.rand(2, 160, 200) * 2 - 1
    gen[0, :, :o] = ref[:, -o:]
    x = gen.clone().requires_grad_()
    loss = ctl.loss(x)
    assert loss[0].item() == pytest.approx(0, abs=1e-12) and loss[1] > 0.1
    assert loss[1].item() == pytest.approx(((gen[1, :, :o] - ref[:, -o:]) ** 2).mean().item(), rel=1e-6)
    loss.sum().backward()
    assert x.grad[1, :, :o].abs().sum() > 0 and (x.grad[:, :, o:] == 0).all()
    assert torch.equal(ctl.feature(gen), gen[..., :o]) and torch.equal(ctl.target, ref[:, -o:])


def test_reference_free_loop_pulls_both_regions_together():
    ctl = get_control("loop", overlap_s=0.5, frames=256, loop_s=2.0)
    m = ctl.masks
    L, o = m.loop_frames, m.overlap
    x = (torch.rand(1, 160, 256) * 2 - 1).requires_grad_()
    ctl.loss(x).sum().backward()
    g = x.grad[0].abs().sum(0)
    assert (g[:o] > 0).all() and (g[L:L + o] > 0).all()
    assert g[o:L].sum() == 0 and g[L + o:].sum() == 0
    periodic = torch.rand(160, L).repeat(1, 2)[:, :256]
    assert ctl.loss(periodic).item() == pytest.approx(0, abs=1e-12)


def test_paint_metric_reads_the_audio_mel(rendered_audio):
    audio = rendered_audio[: 511 * 256]
    mel = mel_of(audio).float()
    ctl = get_control("inpaint", ref_mel=mel, gap_start_s=2.0, gap_s=1.0)
    assert ctl.metric(audio, SR) < 1e-8
    assert ctl.metric(0.1 * audio, SR) > 0.01


# ------------------------------------------------------------------ multi-objective

def test_multicontrol_is_the_weighted_sum(rendered_audio):
    audio = rendered_audio[: 255 * 256]
    mel = mel_of(audio)
    F = mel.shape[-1]
    inten = IntensityControl(intensity_preset("linear-rise", F, -30, -15))
    mel_c = MelodyControl(torch.full((F,), 7))
    struct = StructureControl(structure_from_pattern("ABA", F))
    multi = MultiControl([(inten, 0.25), (mel_c, 1.0), struct])
    expected = 0.25 * inten.loss(mel) + mel_c.loss(mel) + struct.loss(mel)
    assert torch.allclose(multi.loss(mel), expected)
    assert set(multi.terms(mel)) == {"intensity", "melody", "structure"}
    metrics = multi.metrics(audio, SR)
    assert set(metrics) == {"intensity_mse_db2", "melody_accuracy_pct", "structure_mse"}
    assert metrics["intensity_mse_db2"] == pytest.approx(inten.metric(audio, SR))
    assert set(MultiControl([inten, inten]).feature(mel)) == {"intensity", "intensity_2"}
    with pytest.raises(DittoError, match="weight"):
        MultiControl([(inten, -1.0)])
    with pytest.raises(DittoError, match="at least one"):
        MultiControl([])


def test_batched_control_scores_each_item_with_its_own_control():
    from dittomusic.control import BatchedControl

    a = get_control("intensity", target=intensity_preset("linear-rise", 64, -40, -20))
    b = get_control("intensity", target=intensity_preset("tanh-fall", 64, -20, -40))
    mel = (torch.rand(2, CFG.n_mels, 64, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    both = BatchedControl([a, b])
    loss = both.loss(mel)
    assert torch.allclose(loss, torch.cat([a.loss(mel[:1]), b.loss(mel[1:])]))
    loss.sum().backward()
    assert mel.grad.abs().sum() > 0
    assert both.for_item(1) is b and a.for_item(5) is a and len(both) == 2
    audio = tone(440, 64 * 256 / SR)
    assert both.metrics(audio, SR, item=1) == b.metrics(audio, SR)
    with pytest.raises(DittoError, match="BatchedControl has 2 controls, the mel batch is 3"):
        both.loss(torch.zeros(3, CFG.n_mels, 64))
    with pytest.raises(DittoError, match="non-empty list"):
        BatchedControl([])
