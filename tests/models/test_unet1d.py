import pytest
import torch

from dittomusic.models import MelUNet, UNetConfig, build_denoiser, config_from_dict
from dittomusic.sampling.schedule import NoiseSchedule

TINY = dict(channels=[24, 32, 48], blocks=1, attn_levels=[2], heads=2, cond_width=32, groups=8, n_mels=20)


def _randomize_outputs(net):
    for m in net.modules():  # zero-initialised layers would make the net the identity skip
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear)) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.05)
    return net


def test_shapes_lengths_and_conditioning():
    torch.manual_seed(0)
    net = _randomize_outputs(MelUNet(UNetConfig(**TINY))).eval()
    assert net.cfg.frame_multiple == 4
    for frames in (16, 40):
        x = torch.randn(2, 20, frames)
        out = net(x, torch.tensor([10.0, 900.0]))
        assert out.shape == x.shape and torch.isfinite(out).all()
    x = torch.randn(2, 20, 16)
    cond = {"collection": torch.tensor([0, 1]), "tempo": torch.tensor([1, 1]), "mode": torch.tensor([0, 1]),
            "instruments": torch.zeros(2, 28)}
    a = net(x, torch.tensor(300.0), cond)
    b = net(x, torch.tensor(300.0), cond, drop=torch.tensor([True, True]))
    assert not torch.allclose(a, b)  # tags change the output; dropping them gives the null condition
    assert torch.allclose(b, net(x, torch.tensor(300.0), None), atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 20, 18), torch.tensor(1.0))


def test_full_time_resolution_no_patch_grain():
    """Each output frame depends on its own input frame: a one-frame bump moves that frame's output most."""
    torch.manual_seed(0)
    net = _randomize_outputs(MelUNet(UNetConfig(**TINY))).eval()
    x = torch.randn(1, 20, 32, requires_grad=True)
    out = net(x, torch.tensor(20.0))
    (g,) = torch.autograd.grad(out[0, :, 13].square().sum(), x)
    per_frame = g[0].abs().sum(0)
    assert per_frame.argmax() == 13


def test_config_round_trip_and_registry():
    cfg = UNetConfig(**TINY)
    d = cfg.to_dict()
    assert d["arch"] == "unet1d"
    back = config_from_dict(d)
    assert isinstance(back, UNetConfig) and back == cfg
    assert type(build_denoiser(back)) is MelUNet
    assert config_from_dict({"width": 32}).arch == "dit"  # configs from before the choice are MelDiT's


def test_learns_a_denoising_task():
    """A few hundred steps on one fixed signal cut the v-loss well below its start."""
    from dittomusic.train.base import diffusion_loss

    torch.manual_seed(0)
    net = MelUNet(UNetConfig(**{**TINY, "sigma_data": 0.5}))
    x0 = (torch.sin(torch.linspace(0, 12, 32))[None, None] * torch.linspace(0.2, 1, 20)[None, :, None]).repeat(4, 1, 1)
    sched = NoiseSchedule.cosine()
    g = torch.Generator().manual_seed(1)
    t, noise = torch.randint(0, 1000, (4,), generator=g), torch.randn(x0.shape, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    first = None
    for _ in range(150):
        loss = diffusion_loss(net, x0, t, noise, None, None, sched, "v_prediction")
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
