"""Students: made from a teacher, loaded from a run or release checkpoint, exported as releases."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.errors import DittoError
from dittomusic.models.loading import load_model
from dittomusic.models.transformer import MelDiT, ModelConfig

KINDS = ("cd", "ctd")
WEIGHTS = ("ema", "target", "model")  # prefixes of a distillation checkpoint's weights
# the bundled student --student defaults to: on v2 both students' 4-step FAD is within the noise of the
# teacher's 20-step DDIM, but CTD's samples are 2.6x closer to the teacher's from the same noise (MSE
# 0.0061 vs 0.0160, docs/students/), and its DITTO-2 intensity adherence is better (0.47 vs 0.57 dB²)
DEFAULT_KIND = "ctd"


def bundled_student(kind: str = DEFAULT_KIND) -> Path:
    return Path(str(resources.files("dittomusic") / "assets" / f"student_{check_kind(kind)}.safetensors"))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DittoError(f"unknown distillation kind {kind!r}; choose cd (consistency) or ctd (consistency trajectory)")
    return kind


def student_from_teacher(teacher: MelDiT, kind: str) -> MelDiT:
    """A student with the teacher's weights; a CTD student adds the zero-initialised target-time embedding."""
    check_kind(kind)
    if teacher.cfg.target_time:
        raise DittoError("the teacher is itself a consistency-trajectory student; distill from a base model")
    cfg = ModelConfig.from_dict({**teacher.cfg.to_dict(), "target_time": kind == "ctd"})
    student = MelDiT(cfg).to(next(teacher.parameters()).device)
    # a latent teacher's autoencoder stays with the teacher: the student works in its latent
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("autoencoder.")}
    missing, unexpected = student.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("s_mlp.") for k in missing), (missing, unexpected)
    return student.requires_grad_(True)


def distill_info(meta: dict) -> dict:
    """kind, guidance, grid ... of a student, from a release's or a training checkpoint's metadata."""
    info = meta.get("distill")
    if not info:
        raise DittoError(f"not a distilled student (kind {meta.get('kind', 'unknown')!r}); "
                         f"train one with `dittomusic distill`")
    return info


def load_student(path: str | Path | None = None, device: str | torch.device | None = None) -> tuple[MelDiT, dict]:
    """A student in eval mode and its metadata, with meta["kind"] ("cd"/"ctd"), meta["guidance"], meta["grid"].

    path: a release from `dittomusic distill export`, or a run's checkpoint (its EMA weights);
    None, "cd" or "ctd": a bundled student (None: the default kind).
    """
    model, meta = load_model(resolve_student_path(path), device)
    info = distill_info(meta)
    return model, {**meta, "kind": info["kind"], "guidance": info["guidance"], "grid": info["grid"]}


def resolve_student_path(path: str | Path | None) -> Path:
    """A student's file: a release, a run folder's checkpoint, or None / "cd" / "ctd" for a bundled one."""
    if path is None or str(path) in KINDS:
        kind = DEFAULT_KIND if path is None else str(path)
        path = bundled_student(kind)
        if not path.exists():
            raise DittoError(f"no {kind.upper()} student is bundled (expected {path.name}); train one with "
                             f"`dittomusic distill --kind {kind}` and pass its checkpoint with --student")
    elif not Path(path).exists():
        raise DittoError(f"student {path} does not exist; give a release file, a distillation run folder, "
                         f"or cd / ctd for a bundled student")
    if Path(path).is_dir():
        path = Path(path) / "checkpoint.safetensors"
    return Path(path)


def export_student(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                   weights: str = "ema") -> Path:
    """A run's EMA (or target / online) student -> a release checkpoint carrying config, kind and guidance."""
    from dittomusic.train.base import add_continued_cost, release_train_info

    if weights not in WEIGHTS:
        raise DittoError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    tensors, meta = load_tensors(Path(run) / "checkpoint.safetensors")
    info = distill_info(meta)
    n = len(weights) + 1
    state = {k[n:]: v.to(dtype) for k, v in tensors.items() if k.startswith(weights + ".")}
    release = {"kind": info["kind"], "guidance": info["guidance"], "grid": info["grid"],
               "distill": {**info, "weights": weights}, "model_config": meta["model_config"],
               "schedule": meta["schedule"], "train": release_train_info(meta), "train_config": meta["train_config"]}
    if info.get("init"):
        add_continued_cost(release["train"], info["init"]["train"])
    return save_tensors(out, state, release)


# ------------------------------------------------------------------ students as DITTO-2 surrogates

_CACHE: dict = {}


def get_student(path, device) -> tuple[torch.nn.Module, dict]:
    """Load (once per path and device) a student: a release file, a run folder or None = bundled."""
    key = (str(path), str(device))
    if key not in _CACHE:
        model, meta = load_student(path, device)
        _CACHE[key] = (model.requires_grad_(False), meta)
    return _CACHE[key]


def check_teacher(meta: dict, pipe, student=None) -> None:
    """A student is a surrogate of one teacher only: refuse any other --model (and a student of
    another tag vocabulary). pipe: a DenoiserBackend or a generate.Pipeline (anything with
    model_file, model_digest and vocab)."""
    if not hasattr(type(pipe), "model_digest"):
        raise DittoError("ditto2 needs a dittomusic model with a student distilled from it; this backend has none: "
                         "use --method ditto")
    want = meta.get("distill", {}).get("teacher_sha1")
    if want and want != pipe.model_digest:
        raise DittoError(f"this student was distilled from the teacher file with sha1 {want[:12]}, but --model "
                         f"({pipe.model_file.name}) has sha1 {pipe.model_digest[:12]}: DITTO-2 needs the student's own "
                         f"teacher. Pass that teacher with --model, or distill a student from this model "
                         f"(dittomusic distill --teacher {pipe.model_file.name} ...)")
    if student is not None and student.cfg.vocab != pipe.vocab:
        raise DittoError("the student was distilled from a model with a different tag vocabulary than --model")


def bundled_teacher(student=None) -> Path | None:
    """The bundled base model a student was distilled from (matched by sha1), or None.

    While the bundled students are the previous base model's, `--method ditto2` without --model
    runs on that model rather than refusing the default one."""
    from dittomusic.utils import file_sha1

    want = distill_info(load_tensors(resolve_student_path(student))[1]).get("teacher_sha1")
    assets = Path(str(resources.files("dittomusic") / "assets"))
    for f in sorted(assets.glob("base*.safetensors")):
        if want and file_sha1(f) == want:
            return f
    return None


def student_sampler(student, meta: dict):
    """(x_T, cond, steps, checkpoint) -> x0 for the student's kind."""
    from dittomusic.distill.consistency import consistency_sample, ctd_sample

    if meta["kind"] == "ctd":
        return lambda x, cond, steps, checkpoint=False: ctd_sample(student, x, cond, steps, checkpoint=checkpoint)

    def cd(x, cond, steps, checkpoint=False):
        # fixed re-noising draws: the decode must be a deterministic function of x_T
        g = torch.Generator().manual_seed(0)
        noise = [torch.randn(x.shape, generator=g).to(x) for _ in range(steps - 1)]
        return consistency_sample(student, x, cond, steps, noise=noise, checkpoint=checkpoint)

    return cd
