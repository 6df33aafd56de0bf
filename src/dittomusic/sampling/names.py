"""The sampler names, importable without torch (the CLI's choices; `dittomusic --help` stays
light). samplers.py registers `sample_<name>` for each."""

SAMPLER_NAMES = ("ddim", "ddpm", "dpmpp_2m", "euler", "heun")
# the ones with dynamic thresholding (the sigma-space samplers have none)
THRESHOLDING_SAMPLERS = ("ddim", "ddpm", "dpmpp_2m")
# the ones that draw noise while sampling (from a `generator`; ddim only with eta > 0)
STOCHASTIC_SAMPLERS = ("ddim", "ddpm")
