"""Students are MelDiTs: old configs still load, the s embedding is optional and starts at zero."""

from __future__ import annotations

import pytest
import torch

from dittomusic.distill import load_student, student_from_teacher
from dittomusic.errors import DittoError
from dittomusic.models import MelDiT, ModelConfig
from dittomusic.checkpoint import save_tensors
from dittomusic.models.loading import load_model

from ..conftest import make_vocab
from .conftest import random_teacher


def test_old_configs_and_checkpoints_load_without_the_new_key(tmp_path):
    old = ModelConfig(width=32, depth=2, vocab=make_vocab()).to_dict()
    del old["target_time"]
    assert ModelConfig.from_dict(old).target_time is False
    path = tmp_path / "old.safetensors"  # a file saved before target_time existed (as v1 was)
    save_tensors(path, MelDiT(ModelConfig.from_dict(old)).state_dict(),
                 {"kind": "base", "model_config": old, "schedule": "cosine"})
    model, meta = load_model(path)
    assert "target_time" not in meta["model_config"] and not hasattr(model, "s_mlp")
    with pytest.raises(ValueError, match="no target-time embedding"):
        model(torch.zeros(1, 160, 64), torch.tensor([10.0]), None, None, torch.tensor([5.0]))


def test_ctd_student_adds_only_a_zero_output_s_embedding():
    teacher = random_teacher(make_vocab())
    cd, ctd = student_from_teacher(teacher, "cd"), student_from_teacher(teacher, "ctd")
    assert cd.state_dict().keys() == teacher.state_dict().keys()
    extra = set(ctd.state_dict()) - set(teacher.state_dict())
    assert extra and all(k.startswith("s_mlp.") for k in extra)
    assert not ctd.s_mlp[-1].weight.any() and not ctd.s_mlp[-1].bias.any()
    assert all(p.requires_grad for p in ctd.parameters()) and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(DittoError, match="itself a consistency-trajectory student"):
        student_from_teacher(ctd, "cd")
    with pytest.raises(DittoError, match="unknown distillation kind"):
        student_from_teacher(teacher, "gan")
    # same seed, same init for every module the two configs share
    torch.manual_seed(3)
    a = MelDiT(ModelConfig(width=32, depth=2, heads=2, patch_frames=8, denoise_head=64))
    torch.manual_seed(3)
    b = MelDiT(ModelConfig(width=32, depth=2, heads=2, patch_frames=8, denoise_head=64, target_time=True))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_load_student_refuses_a_base_model(tiny_model_path):
    with pytest.raises(DittoError, match="not a distilled student"):
        load_student(tiny_model_path)


def test_bundled_students_are_found_by_kind(tiny_model_path, tmp_path, monkeypatch):
    from dittomusic.checkpoint import save_tensors
    from dittomusic.distill import student as student_mod
    from dittomusic.distill import time_grid

    monkeypatch.setattr(student_mod, "bundled_student", lambda kind="cd": tmp_path / f"student_{kind}.safetensors")
    monkeypatch.setattr(student_mod, "DEFAULT_KIND", "cd")
    with pytest.raises(DittoError, match="no CTD student is bundled"):
        load_student("ctd")
    with pytest.raises(DittoError, match="does not exist"):
        load_student(tmp_path / "nope.safetensors")
    st = student_from_teacher(load_model(tiny_model_path)[0], "cd")
    info = {"kind": "cd", "guidance": 2.0, "grid": time_grid(4)}
    save_tensors(tmp_path / "student_cd.safetensors", st.state_dict(),
                 {**info, "distill": info, "model_config": st.cfg.to_dict(), "schedule": "cosine"})
    for arg in (None, "cd"):  # None is the default kind
        model, meta = load_student(arg)
        assert meta["kind"] == "cd" and meta["guidance"] == 2.0


@pytest.mark.parametrize("kind", [None, "cd", "ctd"])
def test_the_bundled_students_were_distilled_from_a_bundled_model(kind):
    from dittomusic.distill.student import DEFAULT_KIND, bundled_teacher
    from dittomusic.distill.train import _file_digest

    model, meta = load_student(kind)
    teacher_file = bundled_teacher(kind)  # what `control --method ditto2` runs on without --model
    assert teacher_file is not None and teacher_file.parent.name == "assets"
    teacher, _ = load_model(teacher_file)
    assert meta["kind"] == (kind or DEFAULT_KIND) and model.cfg.vocab == teacher.cfg.vocab
    assert meta["distill"]["teacher_sha1"] == _file_digest(teacher_file)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16 on disk, float32 to compute
