"""DITTO-2 on a tiny student distilled (here: copied) from the tiny teacher."""

import pytest
import torch

from dittomusic.control import get_control, intensity_preset
from dittomusic.control.methods import Settings, run_control
from dittomusic.control.optimize import OptimConfig
from dittomusic.errors import DittoError
from dittomusic.generate import Pipeline, make_tags

FR = 128


@pytest.fixture(scope="module")
def pipe(tiny_model_path):
    return Pipeline(tiny_model_path, "cpu")


@pytest.fixture(scope="module", params=["cd", "ctd"])
def student_path(request, pipe, tmp_path_factory):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid

    st = student_from_teacher(pipe.model, request.param)
    path = tmp_path_factory.mktemp("student") / f"{request.param}.safetensors"
    info = {"kind": request.param, "guidance": 3.0, "grid": time_grid(20)}
    save_tensors(path, st.state_dict(), {"kind": request.param, "guidance": 3.0, "grid": info["grid"],
                                         "distill": info, "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    return path


def test_ditto2_optimizes_through_the_one_step_student(pipe, student_path):
    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    for decode in ("student", "teacher"):
        s = Settings(steps=3, student=str(student_path), decode=decode, decode_steps=2, refresh=0,
                     optim=OptimConfig(iters=5, lr=0.05))
        out = run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s)
        r = out.report
        assert r["method"] == "ditto2" and r["decode"] == decode and r["iterations"] == 5
        assert r["decodes"] == 1 and r["model_calls"] == 6 + (2 if decode == "student" else 3)
        hist = torch.tensor(r["loss_history"])
        assert (hist.min(dim=0).values < hist[0]).all()  # the surrogate loss went down for every item
        assert out.mel.shape == (2, 160, FR) and out.mel.abs().max() <= 1


@pytest.mark.parametrize("decode", ["student", "teacher"])
def test_refreshed_surrogate_returns_the_best_real_decode(pipe, student_path, decode):
    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    s = Settings(steps=3, student=str(student_path), decode=decode, decode_steps=2, refresh=2,
                 optim=OptimConfig(iters=5, lr=0.05))
    out = run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s)
    r = out.report
    dc = 2 if decode == "student" else 3
    # decodes at iterations 0, 2, 4 (each re-corrects the surrogate: one more one-step pass) + the final
    assert r["refresh"] == 2 and r["decodes"] == 4 and r["model_calls"] == 6 + 4 * dc + 3
    # the initial decode is a candidate, so steering never ends worse than unsteered decoding
    from dittomusic.distill.student import get_student, student_sampler

    x_T = pipe.noise(2, FR, 0)
    with torch.no_grad():
        if decode == "student":
            st, meta = get_student(str(student_path), pipe.device)
            start = student_sampler(st, meta)(x_T, pipe.cond(tags, 2), 2).clamp(-1, 1)
        else:
            start = pipe.sample(x_T, tags, steps=3, guidance=3.0)
        assert (ctrl.loss(out.mel) <= ctrl.loss(start) + 1e-6).all()
    assert r["decoded_initial_loss"] == pytest.approx(ctrl.loss(start).tolist(), rel=1e-5)


def test_surrogate_at_init_is_the_teachers_one_step_ddim(pipe, student_path):
    from dittomusic.distill.student import get_student, student_sampler

    student, meta = get_student(str(student_path), pipe.device)
    tags = make_tags(pipe.vocab, collection="chorale")
    x = pipe.noise(1, FR, 1)
    with torch.no_grad():
        one = student_sampler(student, meta)(x, pipe.cond(tags, 1), 1)
        teacher = pipe.sample(x, tags, steps=1, guidance=3.0)
    # the student bakes in guidance only after distillation; at init it is the unguided teacher
    unguided = pipe.sample(x, tags, steps=1, guidance=1.0)
    assert torch.allclose(one.clamp(-1, 1), unguided, atol=1e-5)
    assert not torch.allclose(unguided, teacher)


def test_ditto2_needs_a_student(pipe, tiny_model_path, tmp_path):
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    s = Settings(steps=2, optim=OptimConfig(iters=1), student=str(tmp_path / "none.safetensors"))
    with pytest.raises(DittoError, match="does not exist"):
        run_control(pipe, "ditto2", ctrl, None, settings=s)
    with pytest.raises(DittoError, match="not a distilled student"):
        run_control(pipe, "ditto2", ctrl, None, settings=Settings(student=str(tiny_model_path)))
    with pytest.raises(DittoError, match="--decode must be one of"):
        run_control(pipe, "ditto2", ctrl, None, settings=Settings(decode="vocoder"))


def test_default_decoder_is_the_teacher_where_a_steered_task_asks_for_it(monkeypatch):
    from dittomusic.control import BatchedControl, MultiControl, structure_from_pattern
    from dittomusic.control.methods.ditto2 import default_decoder
    from dittomusic.control.spec import get_task

    inten = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    melody = get_control("melody", target=torch.zeros(FR, dtype=torch.long))
    struct = get_control("structure", target=structure_from_pattern("ABBA", FR))
    # on v2 the student decode measured best for every task
    assert {default_decoder(c) for c in (inten, melody, struct)} == {"student"}
    spec = get_task("melody")
    monkeypatch.setattr(spec, "method_defaults", {"ditto2": {**spec.method_defaults.get("ditto2", {}), "decode": "teacher"}})
    assert default_decoder(inten) == default_decoder(BatchedControl([inten, inten])) == "student"
    assert default_decoder(melody) == "teacher"
    assert default_decoder(MultiControl([(inten, 1.0), (melody, 0.5)])) == "teacher"
    assert default_decoder(BatchedControl([MultiControl([struct, melody])])) == "teacher"


def test_report_names_the_decoder_chosen_by_task(pipe, student_path):
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    s = Settings(steps=2, student=str(student_path), decode_steps=2, refresh=0, optim=OptimConfig(iters=1))
    assert run_control(pipe, "ditto2", ctrl, None, seed=0, settings=s).report["decode"] == "student"
    # unset, the student decode's steps and refresh are the task's tuned ones
    from dittomusic.control.spec import get_task

    tuned = get_task("intensity").method_defaults["ditto2"]
    s = Settings(steps=2, student=str(student_path), optim=OptimConfig(iters=1))
    rep = run_control(pipe, "ditto2", ctrl, None, seed=0, settings=s).report
    assert (rep["decode_steps"], rep["refresh"]) == (tuned["decode_steps"], tuned["refresh"])
    with pytest.raises(DittoError, match="--decode-steps must be >= 1"):
        run_control(pipe, "ditto2", ctrl, None, seed=0, settings=Settings(student=str(student_path), decode_steps=0))


def test_teacher_decode_defaults_by_task_and_its_overrides():
    from dittomusic.control import MultiControl, structure_from_pattern
    from dittomusic.control.methods.ditto2 import REFRESH, TEACHER_DECODE, teacher_decode

    inten = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    struct = get_control("structure", target=structure_from_pattern("ABBA", FR))
    s = Settings(steps=7)
    assert teacher_decode(inten, s) == ("ddim", 7, REFRESH["teacher"])
    assert teacher_decode(struct, s) == TEACHER_DECODE["structure"]
    assert teacher_decode(MultiControl([(inten, 1.0), (struct, 1.0)]), s) == TEACHER_DECODE["structure"]
    assert teacher_decode(struct, Settings(decode_sampler="ddim", teacher_steps=3, refresh=0)) == ("ddim", 3, 0)
    with pytest.raises(DittoError, match="--decode-sampler must be one of"):
        teacher_decode(inten, Settings(decode_sampler="heun"))
    with pytest.raises(DittoError, match="--teacher-steps"):
        teacher_decode(inten, Settings(teacher_steps=0))


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_teacher_decode_runs_the_chosen_sampler(pipe, student_path, sampler):
    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    s = Settings(steps=5, student=str(student_path), decode="teacher", decode_sampler=sampler, teacher_steps=3,
                 refresh=0, optim=OptimConfig(iters=0))
    out = run_control(pipe, "ditto2", ctrl, tags, seed=0, settings=s)
    assert out.report["decode_sampler"] == sampler and out.report["decode_steps"] == 3
    with torch.no_grad():
        x_T = pipe.noise(1, FR, 0)
        want = pipe.sample(x_T, tags, sampler=sampler, steps=3, guidance=3.0)
        other = pipe.sample(x_T, tags, sampler="dpmpp_2m" if sampler == "ddim" else "ddim", steps=3, guidance=3.0)
    assert torch.allclose(out.mel, want, atol=1e-6) and not torch.allclose(out.mel, other, atol=1e-3)


def test_ditto2_refuses_a_student_of_another_teacher(pipe, tmp_path):
    """A student records its teacher file's sha1; any other --model is refused with a clear message."""
    from dittomusic.checkpoint import load_tensors, save_tensors
    from dittomusic.distill import student_from_teacher, time_grid
    from dittomusic.utils import file_sha1

    st = student_from_teacher(pipe.model, "cd")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    s = Settings(steps=2, optim=OptimConfig(iters=1))
    for teacher, ok in (("0" * 40, False), (file_sha1(pipe.model_file), True)):
        info = {"kind": "cd", "guidance": 3.0, "grid": time_grid(20), "teacher_sha1": teacher}
        path = tmp_path / f"{teacher[:4]}.safetensors"
        save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": info["grid"], "distill": info,
                                             "model_config": st.cfg.to_dict(), "schedule": "cosine"})
        s.student = str(path)
        if ok:
            assert run_control(pipe, "ditto2", ctrl, None, seed=0, settings=s).report["method"] == "ditto2"
        else:
            with pytest.raises(DittoError, match="distilled from the teacher file with sha1 000000000000"):
                run_control(pipe, "ditto2", ctrl, None, seed=0, settings=s)
    assert load_tensors(path)[1]["distill"]["teacher_sha1"] == pipe.model_digest


def test_a_refresh_comes_before_its_iterations_forward_pass(pipe, student_path):
    """Each iteration's surrogate loss and gradient come from one surrogate: at a refresh
    iteration k the surrogate is re-anchored on x_k first, so it renders x_k to its real decode."""
    from dittomusic.distill.student import get_student, student_sampler

    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    seen = {}
    s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=2,
                 optim=OptimConfig(iters=5, lr=0.05),
                 callback=lambda info: seen.update({info["iter"]: {k: v.clone() for k, v in info.items() if k != "iter"}}))
    out = run_control(pipe, "ditto2", ctrl, tags, seed=0, settings=s)
    st, meta = get_student(str(student_path), pipe.device)
    for k in (0, 2, 4):
        with torch.no_grad():
            real = student_sampler(st, meta)(seen[k]["x_T"], pipe.cond(tags, 1), 2).clamp(-1, 1)
        assert torch.allclose(seen[k]["x0"], real, atol=1e-5), k
    assert not torch.allclose(seen[3]["x0"], seen[2]["x0"])
    # the optimizer's best iterate is chosen among iterates of the last surrogate only
    assert out.result.optim.best_iter[0] >= 4
    # the last iterate (no gradient step follows) is scored, not re-anchored: 0, 2, 4 and the final
    assert out.report["decodes"] == 4 and out.report["model_calls"] == 6 + 4 * 2 + 3
    s.refresh, s.optim = 3, OptimConfig(iters=6, lr=0.05)  # a refresh falls on the last iterate
    r = run_control(pipe, "ditto2", ctrl, tags, seed=0, settings=s).report
    assert r["decodes"] == 4 and r["model_calls"] == 7 + 4 * 2 + 2  # scored at 6, corrected at 0 and 3 only


def test_tol_is_read_on_real_decodes_and_stops_at_the_refresh_that_meets_it(pipe, student_path):
    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))

    def run(tol):
        s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=3,
                     optim=OptimConfig(iters=9, lr=0.05, tol=tol))
        return run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s).report

    full = run(None)
    assert full["stopped"] == "iters" and full["iterations"] == 9 and full["decodes"] == 5  # 0, 3, 6, 9 + final
    initial = max(full["decoded_initial_loss"])
    easy = run(initial + 1.0)  # the unsteered decodes already meet it: nothing is optimized
    assert easy["stopped"] == "tolerance" and easy["iterations"] == 0 and easy["decodes"] == 1
    # [iteration, per-item decoded loss] at every refresh, and the final scoring of the best surrogate iterate
    assert [h[0] for h in full["decoded_history"]] == [0, 3, 6, 9, 9]
    at3 = min(max(full["decoded_history"][0][1]), max(full["decoded_history"][1][1]))
    mid = run(at3 + 1e-6)  # the decodes of iteration 3 meet it (or the initial ones did): stop there
    assert mid["stopped"] == "tolerance" and mid["iterations"] <= 3 and mid["decodes"] <= 2
    assert all(v <= at3 + 1e-6 for v in mid["final_loss"]) or mid["iterations"] == 0
    tiny = run(1e-12)  # no decode meets it: all K iterations run
    assert tiny["stopped"] == "iters" and tiny["iterations"] == 9


def test_search_starts_each_item_from_its_best_noise_draw(pipe, student_path):
    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))

    def run(search, iters=0):
        s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=0, search=search,
                     optim=OptimConfig(iters=iters, lr=0.05))
        return run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s)

    plain, out = run(1), run(4)
    assert plain.report["search"] == 1 and plain.report["search_losses"] is None
    r = out.report
    lv = torch.tensor(r["search_losses"])  # [item, draw]; draw 0 is the seed's own x_T
    assert r["search"] == 4 and lv.shape == (2, 4)
    assert lv[:, 0].tolist() == pytest.approx(plain.report["decoded_initial_loss"] or ctrl.loss(plain.mel).tolist(),
                                              rel=1e-5)
    assert ctrl.loss(out.mel).tolist() == pytest.approx(lv.min(1).values.tolist(), rel=1e-5)
    assert len(set(lv.flatten().tolist())) == 8  # the draws differ from each other and from x_T
    # four decodes of two student steps; the winner's serves as its first scoring (plain's one decode)
    assert r["model_calls"] == plain.report["model_calls"] + 3 * 2 and r["decodes"] == 0
    again = run(4)
    assert torch.equal(again.x_T, out.x_T)  # the pool is a function of x_T, so of the seed
    assert run(4, iters=3).report["search_losses"] == r["search_losses"]
    with pytest.raises(DittoError, match="--search"):
        run(0)


def test_render_teacher_returns_the_teachers_sample_of_the_chosen_x_T(pipe, student_path):
    from dittomusic.control.methods.ditto2 import UNCONDITIONAL_STEPS
    from dittomusic.control.spec import method_default

    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    tags = make_tags(pipe.vocab, collection="chorale")

    def run(tags, render, **kw):
        s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=0, render=render,
                     optim=OptimConfig(iters=2, lr=0.05), **kw)
        return run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s)

    plain, out = run(tags, "decode"), run(tags, "teacher")
    assert torch.equal(plain.x_T, out.x_T)  # the student's decodes still rank the iterates
    with torch.no_grad():
        want = pipe.sample(out.x_T, tags, sampler="ddim", steps=3, guidance=3.0)
    assert torch.allclose(out.mel, want, atol=1e-6) and not torch.allclose(out.mel, plain.mel, atol=1e-3)
    r = out.report
    assert plain.report["render"] == "decode" and r["render"] == "teacher ddim 3"
    assert r["model_calls"] == plain.report["model_calls"] + 3
    assert r["rendered_loss"] == pytest.approx(ctrl.loss(out.mel).tolist(), rel=1e-5)
    # unconditional: the teacher renders with UNCONDITIONAL_STEPS unless --teacher-steps says otherwise
    assert run(None, "teacher").report["render"] == f"teacher ddim {UNCONDITIONAL_STEPS}"
    assert run(None, "teacher", teacher_steps=2, decode_sampler="dpmpp_2m").report["render"] == "teacher dpmpp_2m 2"
    with pytest.raises(DittoError, match="--render must be one of decode, teacher"):
        run(tags, "vocoder")
    assert method_default("text", "ditto2", "render") == "teacher"
    assert method_default("intensity", "ditto2", "render") is None


def test_mix_is_a_unit_weighted_sum_of_the_draws():
    from dittomusic.control.methods.ditto2 import mix

    pool = torch.randn(5, 3, 4, 6)  # [n, B, ...]
    w = torch.rand(3, 5) + 0.1
    want = torch.stack([sum(w[b, i] * pool[i, b] for i in range(5)) / w[b].norm() for b in range(3)])
    assert torch.allclose(mix(w, pool), want, atol=1e-6)
    assert torch.allclose(mix(7 * w, pool), mix(w, pool), atol=1e-6)  # only the direction of w counts
    one_hot = torch.nn.functional.one_hot(torch.tensor([4, 0, 2]), 5).float()
    assert torch.equal(mix(one_hot, pool), pool[[4, 0, 2], torch.arange(3)])  # exactly the picked draws
    # a fixed unit mix of iid N(0, 1) draws is N(0, 1) again: unit variance, not the shrunken variance of an average
    big = torch.randn(5, 1, 200_000)
    assert mix(torch.ones(1, 5), big).std().item() == pytest.approx(1.0, abs=0.01)


def test_steer_mix_moves_x_T_only_within_the_span_of_the_search_draws(pipe, student_path, monkeypatch):
    from dittomusic.control.methods import ditto2 as d2

    seen = {}
    real_search = d2.search_start

    def spy(*a, **kw):
        out = real_search(*a, **kw)
        seen["pool"], seen["pick"] = out[3], out[4]
        return out

    monkeypatch.setattr(d2, "search_start", spy)
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    tags = make_tags(pipe.vocab, collection="chorale")

    def run(steer, iters=4, search=4):
        s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=2, search=search,
                     steer=steer, optim=OptimConfig(iters=iters, lr=0.3))
        return run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s)

    searched, out = run("mix", iters=0), run("mix")
    assert out.report["steer"] == "mix"
    pool, pick = seen["pool"], seen["pick"]
    assert torch.equal(searched.x_T, pool[pick, torch.arange(2)])  # K = 0: the search's pick itself
    hist = out.report["decoded_history"]  # [k, losses]: refreshes at k = 0, 2, 4
    assert [k for k, _ in hist][:3] == [0, 2, 4] and hist[0][1] != hist[1][1]  # the iterates moved
    for b in range(2):  # the best x_T is a combination of this item's draws
        basis = pool[:, b].reshape(pool.shape[0], -1).T.double()
        x = out.x_T[b].reshape(-1, 1).double()
        coef = torch.linalg.lstsq(basis, x).solution
        assert (basis @ coef - x).norm() / x.norm() < 1e-5
        assert coef.norm().item() == pytest.approx(1.0, rel=1e-4)  # unit weights: the mix keeps N(0, I)'s scale
    assert all(a <= b + 1e-6 for a, b in zip(ctrl.loss(out.mel).tolist(), ctrl.loss(searched.mel).tolist()))
    noise = run("noise")
    assert noise.report["steer"] == "noise" and not torch.equal(noise.x_T, out.x_T)
    assert run("mix", search=1).report["steer"] == "noise"  # no draws to mix
    with pytest.raises(DittoError, match="--steer"):
        run("weights")


def test_an_item_within_tol_keeps_the_first_decode_that_met_it_while_the_others_go_on(pipe, student_path):
    tags = make_tags(pipe.vocab, collection="chorale")
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))

    def run(tol, iters=8):
        s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=2,
                     optim=OptimConfig(iters=iters, lr=0.05, tol=tol))
        return run_control(pipe, "ditto2", ctrl, tags, seed=0, batch=2, settings=s)

    free, start = run(None), run(None, iters=0)
    first = torch.tensor(free.report["decoded_history"][0][1])  # the decodes at k = 0
    easy, hard = int(first.argmin()), int(first.argmax())
    tol = float(first.min()) + 1e-6  # the easy item meets it at the start, the other does not
    assert float(first.max()) > tol
    out = run(tol)
    r = out.report
    assert r["within_tol"][easy] and r["decoded_best_iter"][easy] == 0
    assert torch.equal(out.x_T[easy], start.x_T[easy])  # untouched by the 8 updates
    # the other item's path is its own (the easy item's freeze does not change it): it meets tol, if at
    # all, at the refresh where the free run's decode of it first does, and the run stops there
    hard_at = [(k, lv[hard]) for k, lv in free.report["decoded_history"][:5] if lv[hard] <= tol]
    if hard_at:
        k, lv = hard_at[0]
        assert r["stopped"] == "tolerance" and r["iterations"] == k and r["decoded_best_iter"][hard] == k
        assert ctrl.loss(out.mel)[hard].item() == pytest.approx(lv, rel=1e-4)
    else:
        assert r["stopped"] == "iters" and r["iterations"] == 8 and not r["within_tol"][hard]
        assert torch.equal(out.x_T[hard], free.x_T[hard])
    assert not torch.equal(out.x_T[hard], start.x_T[hard])
    assert run(None).report["within_tol"] is None


def test_the_loss_plot_shows_the_real_decodes_beside_the_surrogate(pipe, student_path, tmp_path):
    from dittomusic.control.plots import loss_curves
    from dittomusic.control.runs import write_outputs

    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20))
    s = Settings(steps=3, student=str(student_path), decode="student", decode_steps=2, refresh=2,
                 optim=OptimConfig(iters=5, lr=0.05))
    out = run_control(pipe, "ditto2", ctrl, make_tags(pipe.vocab, collection="chorale"), seed=0, batch=2, settings=s)
    r = out.report
    for item in (0, 1):
        c = loss_curves(r, item)
        assert [k for k, _ in c["optimized"]] == list(range(len(r["loss_history"])))
        assert [v for _, v in c["optimized"]] == [h[item] for h in r["loss_history"]]
        # the refreshes at 0, 2, 4 and the final score of the surrogate's best iterate, as ditto2 decoded them
        assert [k for k, _ in c["decoded"]] == [k for k, _ in r["decoded_history"]] and c["decoded"][0][0] == 0
        assert [v for _, v in c["decoded"]] == [ls[item] for _, ls in r["decoded_history"]]
        assert "rendered" not in c  # no teacher render in this run
    rendered = dict(r, rendered_loss=[0.5, 0.25])
    assert loss_curves(rendered, 1)["rendered"] == [(max(k for k, _ in r["decoded_history"]), 0.25)]
    assert set(loss_curves({"loss_history": [[1.0]]})) == {"optimized"}  # ditto: its own loss only
    paths = write_outputs(out, ctrl, tmp_path / "o.wav", task="intensity")
    assert paths.plot.stat().st_size > 0
