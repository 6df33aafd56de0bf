"""`dittomusic eval text` on the tiny model, dataset and classifier, with tiny random CLAPs."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.errors import DittoError
from dittomusic.eval.text import ROWS, TextEvalConfig, eval_prompts, prompt_expectation

from ..clap.conftest import make_tiny_clap


@pytest.fixture(scope="module")
def claps(tmp_path_factory):
    d = tmp_path_factory.mktemp("claps")
    return make_tiny_clap(d / "clap.safetensors"), make_tiny_clap(d / "clap2.safetensors", "conv2d", seed=1)


@pytest.fixture(scope="module")
def student(tiny_model_path, tmp_path_factory):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid
    from dittomusic.generate import Pipeline

    st = student_from_teacher(Pipeline(tiny_model_path, "cpu", "griffinlim").model, "cd")
    path = tmp_path_factory.mktemp("student") / "cd.safetensors"
    info = {"kind": "cd", "guidance": 3.0, "grid": time_grid(20)}
    save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": info["grid"], "distill": info,
                                         "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    return path


def test_eval_prompts_are_held_out_phrasings_covering_the_test_split(tiny_dataset):
    from dittomusic.clap.captions import BY_ID
    from dittomusic.data.dataset import MelDataset

    root, _ = tiny_dataset
    test = MelDataset(root, "test", random_crop=False)
    n = min(len(test), 8)
    ps = eval_prompts(root, n, seed=0)
    assert len(ps) == n and len({p.clip_id for p in ps}) == n
    assert all(BY_ID[p.template].heldout for p in ps)  # never a training template
    assert {p.expected.collection for p in ps} >= {r["collection"] for r in test.rows}
    assert {f for p in ps for f in p.expected.families} == {f for r in test.rows for f in r["families"]}
    assert [p.text for p in eval_prompts(root, n, seed=0)] == [p.text for p in ps]  # deterministic
    with pytest.raises(DittoError, match="fewer than the"):
        eval_prompts(root, len(test) + 1)


def test_prompt_expectation_uses_the_caption_keyword_parser():
    from dittomusic.eval.text import full_vocab

    v = full_vocab(None, None) | {"collections": ["chorale", "Irish folk tune", "folk song"]}
    e = prompt_expectation("A lively Irish jig on fiddle and tin whistle", v)
    assert e.collection == "Irish folk tune" and set(e.families) == {"strings", "woodwinds"}
    assert prompt_expectation("something nice", v).collection is None


def test_eval_text_writes_all_four_rows_and_resumes(tiny_dataset, tiny_model_path, clf, claps, student, tmp_path):
    root, _ = tiny_dataset
    out = tmp_path / "ev"
    args = ["eval", "text", "--data", str(root), "--out", str(out), "--model", str(tiny_model_path),
            "--classifier", str(clf), "--clap", str(claps[0]), "--judge-clap", str(claps[1]), "--student",
            str(student), "--prompts", "3", "--steps", "2", "--uncond-steps", "3", "--iters", "2", "--batch", "2", "--seconds", "1.5",
            "--c2st-steps", "3", "--vocoder", "griffinlim"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "text_eval.json").read_text())
    assert set(res["rows"]) == set(ROWS) == {"a", "b", "c", "d"} and res["steering_method"] == "ditto2"
    for k, row in res["rows"].items():
        assert row["n"] == 3 and len(row["items"]) == 3 and row["wall_per_clip_s"] > 0
        s = row["summary"]
        assert -1 <= s["text_clap"] <= 1 and -1 <= s["text_clap2"] <= 1 and 0 <= s["text_clap2_r1"] <= 1
        assert {"text_family_acc", "text_collection_acc"} <= set(s)
        assert np.isfinite(row["realism"]["texture_fad"]) and 0 <= row["realism"]["c2st"]["accuracy"] <= 1
        assert row["method"] == ("ditto2" if row["steered"] else None)
        assert np.load(out / f"mels_{k}.npy").shape == (3, 160, 128)
    # the same x_T seed per prompt in every row: row a is plain unconditional sampling of seed + i, at --uncond-steps
    from dittomusic.generate import Pipeline

    pipe = Pipeline(tiny_model_path, "cpu", "griffinlim")
    with torch.no_grad():
        a1 = pipe.backend.sample(pipe.backend.noise(1, 128, 1), None, steps=3)
    np.testing.assert_allclose(np.load(out / "mels_a.npy")[1], a1[0].numpy(), atol=1e-5)
    assert not np.allclose(np.load(out / "mels_a.npy"), np.load(out / "mels_c.npy"))
    md = (out / "README.md").read_text()
    for k in ROWS:
        assert f"| ({k}) " in md
    assert "Targets (issue #21)" in md and "held-out caption templates" in md
    assert "](spectrograms.png)" in md and (out / "spectrograms.png").stat().st_size > 1000
    assert "batches of 2)" in md and all(res["rows"][k]["batch"] == 2 for k in ROWS)
    # the text task's ditto2 defaults: a collection term, a search over noise draws, a tolerance
    from dittomusic.control.tasks.text import STEER_TOL, VIEW_GAIN_DB, VIEW_SHIFT, VIEWS

    assert res["steering"] == {"iters": 2, "lr": 0.01, "tol": STEER_TOL, "prompt_terms": "collection", "search": 32,
                               "render": "teacher", "steer": "noise", "views": VIEWS, "view_shift": VIEW_SHIFT,
                               "view_gain_db": VIEW_GAIN_DB}
    assert "from the best of 32 noise draws per clip" in md and '"a <collection>"' in md
    assert f"its gradient the mean over {VIEWS} crops of the clip (each moved by up to {VIEW_SHIFT} mel bin" in md
    assert VIEW_GAIN_DB or " dB)" not in md  # a zero gain is not described
    assert f"each clip stopping once its decode's loss is within {STEER_TOL:g}" in md
    assert "DDIM 2 steps with tags, 3 without" in md and "rendered by the teacher's DDIM" in md
    # the teacher renders row c's clips at --uncond-steps (unconditional), row d's at --steps
    assert {k: res["rows"][k]["render"] for k in ROWS} == {"a": "teacher ddim 3", "b": "teacher ddim 2",
                                                            "c": "teacher ddim 3", "d": "teacher ddim 2"}
    assert "d_beats_b_on_second_clap" in res["targets"] and "ditto2_within_10s" in res["targets"]
    # texture FAD's uncertainty over prompts, (c) and the unsteered (a) against (b)
    ci = res["texture_fad_ci"]
    assert set(ci) == {"c/b", "a/b", "c/a"} and ci["c/b"]["items"] == 3
    assert ci["c/b"]["ratio"] == pytest.approx(res["targets"]["c_realism_vs_b"]["texture_fad"], rel=1e-6)
    assert res["targets"]["c_texture_fad_vs_b_ci95"] == ci["c/b"]["ci95"]
    assert "paired bootstrap over prompts" in md and "unsteered unconditional row (a)" in md
    # a re-run skips finished rows; other settings in the same folder are refused
    stamp = res["rows"]["c"]["wall_s"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "text_eval.json").read_text())["rows"]["c"]["wall_s"] == stamp
    r = CliRunner().invoke(cli, args[:-4] + ["--seed", "1", "--c2st-steps", "3", "--vocoder", "griffinlim"])
    assert r.exit_code == 1 and "other settings (seed)" in r.output
    r = CliRunner().invoke(cli, args + ["--prompt-terms", "none"])
    assert r.exit_code == 1 and "other settings (prompt_terms)" in r.output
    for flag, value, key in (("--tol", "0", "tol"), ("--refresh", "1", "refresh"), ("--steer", "mix", "steer"),
                             ("--views", "1", "views")):
        r = CliRunner().invoke(cli, args + [flag, value])  # each reaches the run's settings
        assert r.exit_code == 1 and f"other settings ({key})" in r.output


def test_eval_text_falls_back_to_ditto_without_a_student_and_notes_a_missing_second_clap(
        tiny_dataset, tiny_model_path, clf, claps, tmp_path, monkeypatch):
    import dittomusic.models.loading as loading
    from dittomusic.eval.text import evaluate_text

    real = loading.bundled_path
    # no bundled second CLAP; the bundled student is of another model
    monkeypatch.setattr(loading, "bundled_path",
                        lambda name="base": tmp_path / "none.safetensors" if name == "clap2" else real(name))
    root, _ = tiny_dataset
    cfg = TextEvalConfig(data=str(root), out=str(tmp_path / "ev"), prompts=2, clap=str(claps[0]), classifier=str(clf),
                         model=str(tiny_model_path), steps=2, iters=1, seconds=1.5, c2st=False, vocoder="griffinlim",
                         rows=("a", "c"))
    res = evaluate_text(cfg, progress=False)
    assert res["steering_method"] == "ditto" and res["rows"]["c"]["method"] == "ditto"
    assert any("ditto2 unavailable" in n for n in res["notes"])
    assert any("scripts/clap.sh all2 && scripts/clap.sh install2" in n for n in res["notes"])
    assert "text_clap2" not in res["rows"]["a"]["summary"] and "c2st" not in res["rows"]["a"]["realism"]


def test_eval_text_rejects_bad_settings(tmp_path):
    with pytest.raises(DittoError, match="--prompts must be at least 1"):
        TextEvalConfig(data=".", out=str(tmp_path), prompts=0)
    with pytest.raises(DittoError, match="unknown eval row"):
        TextEvalConfig(data=".", out=str(tmp_path), rows=("e",))
