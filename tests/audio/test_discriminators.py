"""The mel discriminators' views: what the decoder's adversarial fine-tune shows them."""

import pytest
import torch

from dittomusic.audio.discriminators import MelDiscriminators, critic_view


def test_critic_view_floors_the_inaudible_and_adds_the_frame_change():
    mel = torch.full((1, 8, 6), -1.0)
    mel[0, 2, 3] = 0.5  # the peak; the floor sits 60 dB (0.75 units) below it
    v = critic_view(mel)
    assert v.shape == (1, 2, 8, 6)
    assert torch.allclose(v[0, 0].min(), torch.tensor(-0.25))
    assert torch.allclose(v[0, 1, 2, 2], torch.tensor(4 * 0.75)) and torch.allclose(v[0, 1, 2, 3], torch.tensor(-4 * 0.75))
    x = mel.clone().requires_grad_(True)
    critic_view(x)[:, 0].sum().backward()
    assert x.grad[0, 0, 0] == 0 and x.grad[0, 2, 3] > 0  # floored bins carry no gradient, audible ones do


def test_both_views_judge_patches_and_a_bad_view_is_refused():
    mel = torch.randn(2, 32, 40)
    for view in MelDiscriminators.VIEWS:
        out = MelDiscriminators(4, view)(mel)
        assert len(out) == 2 and out[0][-1].shape[0] == 2 and out[0][-1].shape[-1] > 1
    with pytest.raises(ValueError, match="expected one of"):
        MelDiscriminators(4, "waveform")
