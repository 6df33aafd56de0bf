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
