"""Control methods: one module per family, one signature (methods/base.py), a config per method.

    base.py       the registry, MethodResult, MethodConfig and each method's config, Settings
    baselines.py  default sampling, FreeDoM, Guidance Gradients, naive masking, MultiDiffusion (training-free,
                  DITTO sec. 5.4)
    ditto.py      DITTO and ditto_draft (x_T optimized through the whole sampler)
    doodl.py      DOODL (x_T optimized through the invertible EDICT sampler)
    inversion.py  naive noising, DDIM inversion and DITTO from it, for inverting a recording (App. D)
    ditto2.py     DITTO-2 (x_T optimized through a distilled student's one-step map)
    run.py        run_control: one method end to end, with metrics and stitching

    out = run_control(pipe, "ditto", control, tags, seed=0, batch=1)
"""

from . import baselines, ditto, ditto2, doodl, inversion  # noqa: F401  (each registers its methods)
from .base import (
    DITTO_LR,
    FREEDOM_SCALE,
    Ditto2Config,
    DittoConfig,
    FreedomConfig,
    Method,
    MethodConfig,
    MethodResult,
    Settings,
    all_methods,
    available_methods,
    config_for,
    default_lr,
    get_method,
    register_method,
    resumable_methods,
)
from .ditto import DRAFT_INVERT_STEPS, draft_start
from .run import ControlOutput, as_backend, run_control, stitch_and_score

__all__ = [
    "DITTO_LR", "DRAFT_INVERT_STEPS", "FREEDOM_SCALE", "ControlOutput", "Ditto2Config", "DittoConfig",
    "FreedomConfig", "Method", "MethodConfig", "MethodResult", "Settings", "all_methods", "as_backend", "available_methods",
    "config_for", "default_lr", "draft_start", "get_method", "register_method", "resumable_methods",
    "run_control", "stitch_and_score",
]
