"""control/runs.py: which model a run opens (saved latents: the CLI tests of inversion and reuse)."""

import pytest

from dittomusic.control import runs


@pytest.fixture
def assets(monkeypatch, tmp_path):
    """A default model and an older one that the bundled student was distilled from."""
    import dittomusic.distill.student as student_mod
    import dittomusic.models.loading as loading

    default, old = tmp_path / "base.safetensors", tmp_path / "base_v1.safetensors"
    teacher = {"file": old}
    monkeypatch.setattr(loading, "bundled_path", lambda name="base": default)
    monkeypatch.setattr(student_mod, "bundled_teacher", lambda student=None: teacher["file"])
    return default, old, teacher


def test_ditto2_without_a_model_runs_on_its_students_teacher(assets):
    default, old, teacher = assets
    assert runs.model_for("ditto2", None, None) == old
    assert runs.model_for("ditto2", None, "dittomusic") == old
    # an explicit model, another method or another backend is never second-guessed
    assert runs.model_for("ditto2", "mine.safetensors", None) == "mine.safetensors"
    assert runs.model_for("ditto", None, None) is None
    assert runs.model_for("ditto2", None, "diffusers:/x") is None
    teacher["file"] = default  # students distilled from the default model: nothing to change
    assert runs.model_for("ditto2", None, None) is None
    teacher["file"] = None  # no bundled teacher: the default, whose check_teacher explains the mismatch
    assert runs.model_for("ditto2", None, None) is None


def test_a_ditto2_default_that_no_student_fits_runs_ditto(pipe, tmp_path, caplog, monkeypatch):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student_from_teacher, time_grid

    backend = pipe.backend  # a tiny model: the bundled students were distilled from the bundled one
    assert runs.runnable_method("intensity", "ditto2", None, backend) == "ditto"
    assert "cannot run here" in caplog.text and "distilled from" in caplog.text
    # the user's own --method or --student is never second-guessed (the run then explains a mismatch)
    assert runs.runnable_method("intensity", "ditto2", "ditto2", backend) == "ditto2"
    assert runs.runnable_method("intensity", "ditto2", None, backend, student="mine.safetensors") == "ditto2"
    assert runs.runnable_method("melody", "ditto", None, backend) == "ditto"
    # with a student of this very model the default stands
    st = student_from_teacher(pipe.model, "cd")
    path = tmp_path / "cd.safetensors"
    info = {"kind": "cd", "guidance": 3.0, "grid": time_grid(20), "teacher_sha1": backend.model_digest}
    save_tensors(path, st.state_dict(), {"kind": "cd", "guidance": 3.0, "grid": info["grid"], "distill": info,
                                         "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    import dittomusic.distill.student as student_mod

    # as the bundled student: get_student(None, ...) answers from its cache
    monkeypatch.setitem(student_mod._CACHE, (str(None), str(backend.device)), student_mod.load_student(path, backend.device))
    assert runs.runnable_method("intensity", "ditto2", None, backend) == "ditto2"
