"""Differentiable diffusion samplers matching diffusers' schedulers, and classifier-free guidance.

Names load on first use (PEP 562), so `dittomusic.sampling.names` (the sampler names the CLI
offers) is importable without torch."""

from __future__ import annotations

import importlib

_WHERE = {
    "cfg_model_fn": "guidance",
    **{n: "samplers" for n in ("DEFAULT_SPACING", "Edict", "SAMPLERS", "SPACINGS", "ModelFn", "dynamic_threshold", "edict_mix",
                               "get_sampler", "invert_ddim", "invert_edict", "model_calls", "sample_ddim",
                               "sample_ddpm", "sample_dpmpp_2m", "sample_edict", "sample_euler", "sample_heun",
                               "sampler_timesteps")},
    **{n: "schedule" for n in ("PREDICTIONS", "NoiseSchedule", "cosine_betas", "model_output_to_x0_eps")},
    **{n: "names" for n in ("SAMPLER_NAMES", "STOCHASTIC_SAMPLERS", "THRESHOLDING_SAMPLERS")},
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
