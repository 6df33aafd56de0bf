"""Distillation of the base model into one-pass students (DITTO-2): consistency distillation (CD)
and consistency trajectory distillation (CTD), with classifier-free guidance baked in."""

from dittomusic.distill.consistency import (
    CLEAN,
    alpha_sigma,
    cd_loss,
    consistency_fn,
    consistency_sample,
    ctd_loss,
    ctd_sample,
    jump,
    teacher_ode,
    teacher_step,
    time_grid,
)
from dittomusic.distill.student import KINDS, export_student, load_student, student_from_teacher
from dittomusic.distill.train import DistillConfig, distill

__all__ = [
    "CLEAN", "DistillConfig", "KINDS", "alpha_sigma", "cd_loss", "consistency_fn", "consistency_sample", "ctd_loss",
    "ctd_sample", "distill", "export_student", "jump", "load_student", "student_from_teacher", "teacher_ode", "teacher_step",
    "time_grid",
]
