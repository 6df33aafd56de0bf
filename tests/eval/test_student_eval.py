import json
import math

import pytest
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.eval.student import best_decode_steps


@pytest.fixture(scope="module")
def student(tiny_model_path, tmp_path_factory):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid
    from dittomusic.models.loading import load_model

    st = student_from_teacher(load_model(tiny_model_path, "cpu")[0], "cd")
    path = tmp_path_factory.mktemp("student") / "cd.safetensors"
    info = {"kind": "cd", "guidance": 3.0, "grid": time_grid(20), "target_decay": 0.95, "ema_decay": 0.999}
    save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": info["grid"], "distill": info,
                                         "train": {"steps": 7, "cpu_hours": 0.25, "batch_size": 4},
                                         "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    return path


def test_eval_student_writes_a_card_with_every_step_count(tiny_dataset, tiny_model_path, clf, student, tmp_path):
    root, _ = tiny_dataset
    out = tmp_path / "card"
    args = ["eval", "student", "--student", str(student), "--teacher", str(tiny_model_path), "--data", str(root),
            "--classifier", str(clf), "--per-collection", "2", "--teacher-steps", "2", "--out", str(out),
            "--fad-boot", "50"]
    r = CliRunner().invoke(cli, args + ["--steps", "1,2", "--note", "made in a test"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    rows = rep["rows"]
    assert [x["steps"] for x in rows] == [2, 1, 2] and rows[0]["mse_to_teacher"] is None
    assert rows[0]["fad_over_teacher"] == 1.0
    for x in rows[1:]:
        assert math.isfinite(x["fad"]) and x["mse_to_teacher"] > 0 and x["passes_per_clip"] == x["steps"]
        lo, hi = x["fad_ratio_ci95"]  # paired bootstrap of the FAD ratio
        assert 0 < lo <= hi and 0.0 <= x["fad_ratio_share_within"] <= 1.0
    assert "fad_ratio_ci95" not in rows[0] and rep["settings"]["fad_boot"] == 50
    # one extra step means a different sample (re-noised and denoised again)
    assert rows[1]["mse_to_teacher"] != rows[2]["mse_to_teacher"]
    card = (out / "README.md").read_text()
    assert "0.25 CPU-hours" in card and "| student (cd) | 2 | 2 |" in card
    assert "## Notes" in card and "- made in a test" in card and "EMA target (decay 0.95)" in card
    assert "paired bootstrap over the clips, 50 resamples" in card
    assert f"{rows[1]['fad_over_teacher']:.2f} ({rows[1]['fad_ratio_ci95'][0]:.2f}-" in card
    # spectrograms: real, the teacher and each student row, two collections each
    from PIL import Image

    assert "![samples](samples.png)" in card
    assert Image.open(out / "samples.png").size[1] > 6 * 100
    r = CliRunner().invoke(cli, args + ["--steps", "one,two"])
    assert r.exit_code != 0 and "comma-separated step counts" in r.output


def test_best_decode_steps_is_the_fewest_within_the_fad_budget():
    rep = {"rows": [{"steps": 20, "fad_over_teacher": 1.0}, {"steps": 1, "fad_over_teacher": 2.0},
                    {"steps": 4, "fad_over_teacher": 1.4}, {"steps": 2, "fad_over_teacher": 1.6}]}
    assert best_decode_steps(rep) == 4
    assert best_decode_steps(rep, 1.7) == 2
    assert best_decode_steps(rep, 1.1) is None


@pytest.mark.parametrize("kind", ["cd", "ctd"])
def test_card_describes_the_kinds_teacher_solver_and_how_to_reproduce(kind, tmp_path):
    from dittomusic.distill import time_grid
    from dittomusic.eval.student import write_student_card

    row = {"sampler": f"student ({kind})", "steps": 4, "passes_per_clip": 4, "collection_accuracy": 0.7,
           "family_micro_f1": 0.6, "fad": 66.0, "seconds_per_clip": 0.05, "mse_to_teacher": 0.005,
           "fad_over_teacher": 1.05}
    rep = {"student": kind, "kind": kind, "guidance": 3.0, "grid": time_grid(20),
           "train": {"steps": 9, "cpu_hours": 1.5}, "train_config": {"teacher_steps": 3},
           "distill": {"target_decay": 0.95}, "settings": {"n": 8, "fad_reference": "all 8 test clips"},
           "rows": [row]}
    card = write_student_card(f"student_{kind}.safetensors", rep, tmp_path, notes=["n1"]).read_text()
    assert f"--student {kind} --data DATA" in card and "20-interval grid" in card and "--init" not in card
    rep["train"].update(continued_from={"steps": 30, "cpu_hours": 2.0}, total_cpu_hours=3.5)
    rep["train_config"]["lr"] = 3e-5
    more = write_student_card(f"student_{kind}.safetensors", rep, tmp_path / "c").read_text()
    assert "from a student of 30 steps (2.0 CPU-h)" in more and "peak 3e-05" in more and "3.5 CPU-hours in all" in more
    # CD bootstraps over one teacher step; CTD's target spans up to teacher_steps of them
    assert ("1 to 3 steps from t to u" in card) == (kind == "ctd")
    assert ("one step between adjacent grid points" in card) == (kind == "cd")
    assert json.loads((tmp_path / "report.json").read_text())["kind"] == kind


def test_a_latent_student_is_scored_on_decoded_mels_with_the_realism_yardstick(tiny_dataset, latent_teacher_path,
                                                                                clf, tmp_path):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid
    from dittomusic.eval.student import evaluate_student, report_markdown
    from dittomusic.models.loading import load_model
    from dittomusic.utils import file_sha1

    root, _ = tiny_dataset
    teacher, _ = load_model(latent_teacher_path, "cpu")
    st = student_from_teacher(teacher, "cd")
    path = tmp_path / "latent_cd.safetensors"
    info = {"kind": "cd", "guidance": 3.0, "grid": time_grid(20), "teacher_sha1": file_sha1(latent_teacher_path)}
    save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": info["grid"], "distill": info,
                                         "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    rep = evaluate_student(path, root, clf, teacher=latent_teacher_path, per_collection=3, steps=(1,),
                           teacher_steps=2, progress=False, c2st_repeats=1)
    assert rep["teacher_sha1"] == file_sha1(latent_teacher_path)
    for x in rep["rows"]:  # decoded mels (160 bins) were scored: every yardstick number is real
        assert 0.0 <= x["c2st"] <= 1.0 and x["grain_ratio"] > 0 and x["flatness_ratio"] > 0
        assert 0.0 <= x["blown_out"] <= 1.0
    md = report_markdown(rep)
    assert "C2ST ↓" in md and md.count("\n| ") == 3  # header, teacher and one student row
