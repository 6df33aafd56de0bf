"""The x_T optimizer on toy differentiable renders: it descends, tracks the best iterate, keeps
items independent, touches only x_T, survives NaNs, stops early, and resumes exactly."""

import math

import pytest
import torch

from dittomusic.control.optimize import OptimConfig, load_latent, optimize_latent, save_latent
from dittomusic.errors import DittoError


def toy(seed=0, B=3, D=8):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, D))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    target = torch.randn(B, D, generator=g) * 0.3
    x_T = torch.randn(B, D, generator=g)

    def loss(x0):
        return (x0 - target).square().mean(dim=-1)

    return net, loss, x_T


def test_descends_and_returns_the_best_iterate():
    net, loss, x_T = toy()
    r = optimize_latent(net, loss, x_T, OptimConfig(iters=40, lr=0.05))
    hist = torch.tensor(r.history)  # [K + 1, B]
    assert hist.shape == (41, 3) and r.iters == 40 and r.evaluations == 41 and r.grad_evaluations == 40
    assert (hist[-1] < 0.5 * hist[0]).all()
    assert torch.allclose(torch.tensor(r.best_loss), hist.min(dim=0).values)
    assert r.best_iter == hist.argmin(dim=0).tolist()
    # the returned mel is what the returned x_T renders to, and its loss is the best loss
    with torch.no_grad():
        assert torch.allclose(net(r.x_T), r.x0)
        assert torch.allclose(loss(r.x0), torch.tensor(r.best_loss))
    assert r.stopped == "iters" and r.initial_loss == r.history[0]


def test_only_x_T_is_optimized():
    net, loss, x_T = toy()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x_in = x_T.clone()
    optimize_latent(net, loss, x_T, OptimConfig(iters=5, lr=0.05))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(x_T, x_in)  # the caller's tensor is not modified in place


def test_batch_items_are_independent():
    net, _, x_T = toy(B=3)
    target = torch.randn(3, 8, generator=torch.Generator().manual_seed(5))

    def loss_for(rows):
        return lambda x0: (x0 - target[rows]).square().mean(dim=-1)

    both = optimize_latent(net, loss_for(slice(0, 3)), x_T, OptimConfig(iters=15, lr=0.05))
    for b in range(3):
        one = optimize_latent(net, loss_for(slice(b, b + 1)), x_T[b:b + 1], OptimConfig(iters=15, lr=0.05))
        assert torch.allclose(one.x_T[0], both.x_T[b], atol=1e-6)
        assert one.history[-1][0] == pytest.approx(both.history[-1][b], rel=1e-5)


def test_iters_zero_is_plain_sampling():
    net, loss, x_T = toy()
    r = optimize_latent(net, loss, x_T, OptimConfig(iters=0))
    assert torch.equal(r.x_T, x_T) and r.grad_evaluations == 0 and r.evaluations == 1
    with torch.no_grad():
        assert torch.allclose(r.x0, net(x_T))


def test_tolerance_and_callback_stop_early():
    net, loss, x_T = toy()
    r = optimize_latent(net, loss, x_T, OptimConfig(iters=50, lr=0.05, tol=1e9))
    assert r.stopped == "tolerance" and r.iters == 0
    seen = []
    r = optimize_latent(net, loss, x_T, OptimConfig(iters=50, lr=0.05), callback=lambda d: seen.append(d["iter"]) or d["iter"] == 3)
    assert r.stopped == "callback" and seen == [0, 1, 2, 3] and r.iters == 3


def test_patience_stops_when_nothing_improves():
    x_T = torch.zeros(2, 4)
    r = optimize_latent(lambda x: x * 0 + x.detach(), lambda m: m.sum(-1) * 0 + 1.0 + (m * 0).sum(-1),
                        x_T, OptimConfig(iters=30, patience=4))
    assert r.stopped == "patience" and r.evaluations == 5


def test_nan_guard_restores_best_iterate_and_warns():
    net, loss, x_T = toy(B=2)
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        out = net(x)
        if calls["n"] == 4:  # item 1 blows up at the 4th evaluation
            out = torch.cat([out[:1], out[1:] * float("nan")])
        return out

    r = optimize_latent(flaky, loss, x_T, OptimConfig(iters=10, lr=0.05))
    assert any("item(s) [1]" in w and "restored" in w for w in r.warnings)
    assert all(math.isfinite(v) for v in r.best_loss)
    assert torch.isfinite(r.x_T).all() and torch.isfinite(r.x0).all()
    assert math.isnan(r.history[3][1]) and math.isfinite(r.history[3][0])
    # item 0 was unaffected: same trajectory as a run without the NaN
    clean = optimize_latent(net, loss, x_T, OptimConfig(iters=10, lr=0.05))
    assert torch.allclose(clean.x_T[0], r.x_T[0], atol=1e-6)


def test_all_nan_at_start_is_a_clear_error():
    with pytest.raises(DittoError, match="NaN/inf at the starting latent"):
        optimize_latent(lambda x: x * float("nan"), lambda m: m.sum(-1), torch.ones(1, 3), OptimConfig(iters=3))


def test_wrong_loss_shape_is_a_clear_error():
    with pytest.raises(DittoError, match="one value per batch item"):
        optimize_latent(lambda x: x * 2, lambda m: m.sum(), torch.ones(2, 3), OptimConfig(iters=1))


def test_bad_config_is_rejected():
    with pytest.raises(DittoError, match="--iters"):
        OptimConfig(iters=-1)
    with pytest.raises(DittoError, match="--lr"):
        OptimConfig(lr=float("nan"))


def test_resume_continues_exactly(tmp_path):
    net, loss, x_T = toy()
    full = optimize_latent(net, loss, x_T, OptimConfig(iters=12, lr=0.05))
    first = optimize_latent(net, loss, x_T, OptimConfig(iters=5, lr=0.05))
    path = save_latent(tmp_path / "lat.safetensors", first, {"task": "toy"})
    best, state, meta = load_latent(path)
    assert torch.equal(best, first.x_T) and meta["task"] == "toy" and meta["iters_done"] == 5
    second = optimize_latent(net, loss, state["x_T"], OptimConfig(iters=7, lr=0.05), resume=state)
    assert torch.equal(second.state["x_T"], full.state["x_T"])
    assert second.history[-1] == full.history[-1]


def test_load_latent_rejects_other_files(tmp_path):
    from dittomusic.checkpoint import save_tensors

    p = save_tensors(tmp_path / "w.safetensors", {"w": torch.ones(2)}, {"kind": "base"})
    with pytest.raises(DittoError, match="not a dittomusic latent file"):
        load_latent(p)
    with pytest.raises(DittoError, match="not found"):
        load_latent(tmp_path / "missing.safetensors")


def test_adam_is_torchs_bit_for_bit():
    from dittomusic.control.optimize import Adam

    g = torch.Generator().manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(3, 5, 7, generator=g))
    ref = torch.nn.Parameter(ours.detach().clone())
    mine, theirs = Adam(ours, lr=5e-3), torch.optim.Adam([ref], lr=5e-3)
    for k in range(12):
        grad = torch.randn(3, 5, 7, generator=g) * 10 ** (k % 4 - 2)
        for p, opt in ((ours, mine), (ref, theirs)):
            opt.zero_grad(set_to_none=True)
            if k != 5:  # no gradient: no step, as in torch
                p.grad = grad.clone()
            opt.step()
        assert torch.equal(ours, ref), k
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(mine.state[ours][key], theirs.state[ref][key]), key


@pytest.mark.parametrize("edit", [{"x_T": torch.zeros(2, 3)}, {"exp_avg": torch.zeros(3)}, {"step": torch.zeros(2)},
                                  {"x_T": torch.zeros(3, 4, dtype=torch.int64)}])
def test_load_latent_refuses_inconsistent_files(tmp_path, edit):
    from dittomusic.checkpoint import save_tensors

    good = {"best_x_T": torch.zeros(3, 4), "x_T": torch.zeros(3, 4), "exp_avg": torch.zeros(3, 4),
            "exp_avg_sq": torch.zeros(3, 4), "step": torch.tensor(5.0)}
    assert load_latent(save_tensors(tmp_path / "ok.safetensors", good, {"kind": "latent"}))[1]["step"] == 5
    p = save_tensors(tmp_path / "bad.safetensors", {**good, **edit}, {"kind": "latent"})
    with pytest.raises(DittoError, match="is not a dittomusic latent file: "):
        load_latent(p)


def test_pre_step_runs_before_each_render_and_can_reset_the_best():
    """pre_step(k, x) runs before iterate k is rendered; returning True (the objective changed)
    forgets the best losses of the old objective but keeps a best iterate for the NaN guard."""
    calls, shift = [], {"v": 0.0}

    def render(x):
        calls.append(("render", shift["v"]))
        return x + shift["v"]

    def pre(k, x):
        calls.append(("pre", k))
        assert not x.requires_grad
        if k == 3:
            shift["v"] = 5.0  # a worse objective from here on: without the reset, iterate 2 would stay best
            return True
        return False

    r = optimize_latent(render, lambda m: m.square().sum(-1), torch.ones(1, 2), OptimConfig(iters=5, lr=0.1),
                        pre_step=pre)
    assert calls[:2] == [("pre", 0), ("render", 0.0)]
    assert calls[calls.index(("pre", 3)) + 1] == ("render", 5.0)
    assert r.best_iter[0] >= 3 and r.best_loss[0] == min(h[0] for h in r.history[3:])
    assert r.evaluations == 6 and r.iters == 5
