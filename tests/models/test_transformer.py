import pytest
import torch

from dittomusic.models import MelDiT, ModelConfig


def _net(**kw):
    torch.manual_seed(0)
    net = MelDiT(ModelConfig(**{"width": 32, "depth": 2, "heads": 2, "patch_frames": 8, "denoise_head": 64, **kw}))
    heads = [net.head[-1]] if net.cfg.denoise_head else []
    for m in (net.patch_out, net.ada_out, *heads, *[b.ada for b in net.blocks]):  # leave the zero init
        torch.nn.init.normal_(m.weight, std=0.05)
    return net.eval()


def _cond(b=2):
    inst = torch.zeros(b, 28)
    inst[:, 3] = 1
    return {"collection": torch.tensor([1, 2])[:b], "tempo": torch.tensor([0, 3])[:b],
            "mode": torch.tensor([1, 0])[:b], "instruments": inst}


def test_zero_init_is_the_preconditioning_skip():
    from dittomusic.sampling.schedule import NoiseSchedule

    net = MelDiT(ModelConfig(width=32, depth=2, heads=2, patch_frames=8, denoise_head=64))
    x = torch.randn(2, 160, 512, dtype=torch.float64)
    t = torch.tensor([1.0, 600.0])
    out = net.double()(x, t, _cond())
    assert out.shape == x.shape
    # adaLN-Zero output layer: F == 0, so x0 is the analytic skip c_skip * x_t / sqrt(a)
    sched = NoiseSchedule.cosine()
    sigma = sched.sigmas[t.long()].view(2, 1, 1)
    sd = net.cfg.sigma_data
    x0_expected = sd**2 / (sigma**2 + sd**2) * x * (1 + sigma**2).sqrt()
    torch.testing.assert_close(sched.to_x0(out, x, t.long()), x0_expected)


def test_epsilon_and_v_outputs_describe_the_same_x0():
    from dittomusic.sampling.schedule import NoiseSchedule

    torch.manual_seed(0)
    v_net = _net()
    e_net = _net(prediction="epsilon")
    e_net.load_state_dict(v_net.state_dict())
    x, t = torch.randn(2, 160, 512), torch.tensor([30, 800])
    sched = NoiseSchedule.cosine()
    with torch.no_grad():
        x0_v = sched.to_x0(v_net(x, t.float(), None), x, t, "v_prediction")
        x0_e = sched.to_x0(e_net(x, t.float(), None), x, t, "epsilon")
    torch.testing.assert_close(x0_v, x0_e, rtol=1e-3, atol=1e-3)


def test_unconditional_modes_agree_and_differ_from_conditional():
    net = _net()
    x, t = torch.randn(2, 160, 512), torch.tensor([100.0, 700.0])
    with torch.no_grad():
        uncond = net(x, t, None)
        dropped = net(x, t, _cond(), drop=torch.tensor([True, True]))
        minus_one = net(x, t, {k: (torch.full_like(v, -1) if v.dtype == torch.long else torch.zeros_like(v))
                               for k, v in _cond().items()})
        cond = net(x, t, _cond())
        half = net(x, t, _cond(), drop=torch.tensor([False, True]))
    torch.testing.assert_close(dropped, uncond)
    torch.testing.assert_close(minus_one, uncond)
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(half[0], cond[0])
    torch.testing.assert_close(half[1], uncond[1])


def test_batch_rows_are_independent_and_time_matters():
    net = _net()
    x = torch.randn(3, 160, 512)
    t = torch.tensor([5.0, 500.0, 995.0])
    with torch.no_grad():
        full = net(x, t, None)
        one = net(x[1:2], t[1:2], None)
        other_t = net(x[1:2], torch.tensor([50.0]), None)
    torch.testing.assert_close(full[1:2], one, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(one, other_t)


def test_other_lengths_and_bad_shapes():
    net = _net()
    with torch.no_grad():
        assert net(torch.randn(1, 160, 1024), torch.tensor([3.0]), None).shape == (1, 160, 1024)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.randn(1, 160, 100), torch.tensor([3.0]), None)
    with pytest.raises(ValueError, match="expected \\[B, 160"):
        net(torch.randn(1, 80, 512), torch.tensor([3.0]), None)


def test_gradient_flows_to_input():
    net = _net()
    x = torch.randn(1, 160, 512, requires_grad=True)
    net(x, torch.tensor([400.0]), _cond(1)).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_config_round_trip():
    cfg = ModelConfig(width=64, vocab={"collections": ["a"]})
    assert ModelConfig.from_dict({**cfg.to_dict(), "unknown_future_key": 1}) == cfg


def test_denoise_head_sees_the_full_rank_input_patch():
    """Without the head, the output lies in a width-d subspace per token; the head escapes it."""
    x, t = torch.randn(1, 160, 512), torch.tensor([300.0])
    for head, full_rank in ((0, False), (64, True)):
        net = _net(denoise_head=head, width=16)
        with torch.no_grad():
            y = net._net(x, t, None, None)  # the preconditioned network F, before the skip
        tokens = y.transpose(1, 2).reshape(64, 8 * 160)  # 64 tokens x 1280 values
        centered = tokens - net.patch_out.bias
        rank = torch.linalg.matrix_rank(centered.double(), rtol=1e-6).item()
        assert (rank > 16) == full_rank, (head, rank)
