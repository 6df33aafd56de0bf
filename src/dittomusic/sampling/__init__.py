"""Differentiable diffusion samplers matching diffusers' schedulers, and classifier-free guidance."""

from .guidance import cfg_model_fn
from .samplers import (
    DEFAULT_SPACING,
    SAMPLERS,
    SPACINGS,
    ModelFn,
    dynamic_threshold,
    get_sampler,
    invert_ddim,
    model_calls,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    sampler_timesteps,
)
from .schedule import PREDICTIONS, NoiseSchedule, cosine_betas, model_output_to_x0_eps

__all__ = [
    "DEFAULT_SPACING", "PREDICTIONS", "SAMPLERS", "SPACINGS", "ModelFn", "NoiseSchedule", "cfg_model_fn",
    "cosine_betas", "dynamic_threshold", "get_sampler", "invert_ddim", "model_calls", "model_output_to_x0_eps",
    "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_euler", "sample_heun", "sampler_timesteps",
]
