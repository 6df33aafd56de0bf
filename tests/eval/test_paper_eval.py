"""`dittomusic eval paper` on the tiny model: every table with ours and the paper's values, and a
killed run resumed without redoing its finished parts."""

import json

import pytest
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.errors import DittoError
from dittomusic.eval import paper
from dittomusic.eval.paper import TABLES, TITLES, PaperEvalConfig, evaluate_paper


class Killed(Exception):
    pass


def test_eval_paper_every_table_resumes_after_a_kill(tiny_dataset, tiny_model_path, clf, tmp_path, monkeypatch):
    root, _ = tiny_dataset
    out = tmp_path / "paper"
    kw = dict(data=str(root), out=str(out), quick=True, model=str(tiny_model_path), classifier=str(clf), targets=2,
              steps=2, iters=1, t5_steps=(2, 3), t5_iters=1, guidances=(0.0, 4.0), batch=2, sets=1,
              control_tasks=("intensity", "outpaint"))
    real = dict(paper.PARTS)

    def killed_at_second_part(b, o):  # the run dies inside Table 9, after its first part
        parts = real["table9"](b, o)
        return [parts[0], (parts[1][0], lambda: (_ for _ in ()).throw(Killed()))] + parts[2:]

    monkeypatch.setitem(paper.PARTS, "table9", killed_at_second_part)
    with pytest.raises(Killed):
        evaluate_paper(PaperEvalConfig(**kw))
    done = json.loads((out / "paper_eval.json").read_text())["parts"]
    assert "table9/intensity+outpaint/ditto" in done and "table9/intensity+outpaint/freedom" not in done
    assert "table8/outpaint/dpmpp_2m" in done and "table10/intensity" not in done
    assert "Not run yet" in (out / "README.md").read_text()  # the report so far, written as tables finish

    # a changed setting is refused before anything runs
    with pytest.raises(DittoError, match=r"other settings \(steps\)"):
        evaluate_paper(PaperEvalConfig(**{**kw, "steps": 3}))

    ran = []

    def guarded(table):  # a finished part must not run again
        def parts(b, o):
            out_ = []
            for key, fn in real[table](b, o):
                def run(key=key, fn=fn):
                    assert key not in done, f"{key} was redone"
                    ran.append(key)
                    return fn()
                out_.append((key, run))
            return out_
        return parts

    for t in TABLES:
        monkeypatch.setitem(paper.PARTS, t, guarded(t))
    res = evaluate_paper(PaperEvalConfig(**kw))
    assert ran[0] == "table9/intensity+outpaint/freedom" and "appj" in ran and "appf/none" in ran
    parts = res["parts"]
    assert set(parts) == set(done) | set(ran)

    # what each table measured
    t5 = {(r["method"], r["steps"]): r for k in ("table5/2", "table5/3") for r in parts[k]["rows"]}
    assert set(t5) == {(m, s) for m in ("ditto", "doodl", "gg", "freedom") for s in (2, 3)}
    assert t5[("doodl", 2)]["peak_saved_mib"] > 0 and t5[("ditto", 3)]["s_per_step"] > 0
    # the correlation loss is -rho, in [-1, 1]; the MSE loss is in dB^2
    assert -1 <= parts["table6/corr"]["final_loss"] <= 1 < parts["table6/mse"]["final_loss"]
    assert -1 <= parts["table6/corr"]["metrics"]["intensity_rho"] <= 1
    assert {r["method"] for r in parts["table7/w=4"]["rows"]} == {"naive_noising", "ddim_inversion", "ditto_invert"}
    assert all(r["grain_ratio"] > 0 for r in parts["table7/w=0"]["realism"])
    assert parts["table8/intensity/dpmpp_2m"]["sampler"] == "dpmpp_2m"
    assert {"intensity_mse_db2", "melody_accuracy_pct"} <= set(parts["table9/intensity+melody/ditto"]["metrics"])
    assert parts["appf/none"]["raw_ssm_mse"] >= 0 and parts["appf/sg"]["final_loss"] != parts["appf/none"]["final_loss"]
    assert [r["feature"] for r in parts["appj"]["rows"]] == ["intensity", "melody", "structure"]

    md = (out / "README.md").read_text()
    assert "Not run yet" not in md and "`--quick`" in md
    for t in TABLES:
        assert f"## {TITLES[t]}" in md
    sections = md.split("\n## ")[1:]
    assert all("*Ran:*" in s and "model " in s for s in sections)
    # the paper's value beside ours, one per table
    for paper_value in ("(4.758)", "(0.716)", "(4.758) |", "(4.7576)", "(0.0678)", "(0.0025)", "(6.30)", "(9.19)",
                        "(5.783)", "(43.6)", "(11.25)", "(24.51)"):
        assert paper_value in md, paper_value


def test_cli_eval_paper_subset_and_bad_tables(tiny_dataset, tiny_model_path, clf, tmp_path):
    root, _ = tiny_dataset
    args = ["eval", "paper", "--data", str(root), "--out", str(tmp_path / "p"), "--quick", "--model",
            str(tiny_model_path), "--classifier", str(clf), "--targets", "2", "--steps", "2", "--iters", "1"]
    r = CliRunner().invoke(cli, args + ["--tables", "table6"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "p" / "paper_eval.json").read_text())
    assert set(res["parts"]) == {"table6/mse", "table6/corr"}
    assert res["config"]["t5_steps"] == [8, 20] and res["config"]["steps"] == 2  # --quick's, with the overrides
    assert "(4.7576)" in r.output and "## Table 5" in r.output and "Not run yet" in r.output
    r = CliRunner().invoke(cli, args + ["--tables", "table6,table11"])
    assert r.exit_code == 1 and "unknown table(s) table11" in r.output and "Traceback" not in r.output
    with pytest.raises(DittoError, match="FAD needs 2 clips"):
        PaperEvalConfig(data=str(root), out=str(tmp_path / "q"), quick=True, targets=1)
