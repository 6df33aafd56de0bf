"""The method registry, its one signature and the per-method configs.

A method is

    method(backend, control, cond, x_T, config, resume=None) -> MethodResult

backend: a `dittomusic.backends.Backend`, all a method sees of the model; cond: its conditioning
(backend.make_cond); config: an instance of the method's own config class; resume: an earlier
run's optimizer state (OptimResult.state), for the resumable methods only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

from torch import Tensor

from dittomusic.errors import DittoError
from dittomusic.options import Option

from ..optimize import OptimConfig, OptimResult

# Adam step sizes: DITTO sec. 5.1's 5e-3 ("higher leads to stability issues"); DITTO-2 registers
# its own (control/methods/ditto2.py).
DITTO_LR = 5e-3
FREEDOM_SCALE = 0.3  # FreeDoM's guidance step as a fraction of the DDIM update size (see baselines)
GG_SCALE = 0.05  # Guidance Gradients' fixed step, in units of its first gradient's RMS (see baselines)
# DOODL's noise injection: its code adds 1e-4 N(0, I) next to steps clipped at 1e-3 per element;
# the same 1:10 ratio to DITTO's Adam step (which DOODL shares here, App. L)
DOODL_NOISE = 5e-4


@dataclass
class MethodConfig:
    """What every method takes: the sampler's steps and guidance (DITTO sec. 5.1 defaults)."""

    steps: int = 20
    guidance: float = 3.0
    progress: bool = False
    callback: Callable | None = None  # optimize_latent's per-iteration callback (optimizing methods)
    sampler: str = "ddim"  # default / freedom: also ddpm (App. I); ditto: any deterministic one (App. G)
    noise_seed: int = 0  # a stochastic sampler's noise (ddpm)


@dataclass
class DittoConfig(MethodConfig):
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: bool = True  # per-step gradient checkpointing


@dataclass
class FreedomConfig(MethodConfig):
    freedom_scale: float = FREEDOM_SCALE


@dataclass
class DoodlConfig(DittoConfig):
    edict_mix: float | None = None  # EDICT's p; None: DITTO App. L's 0.83 at 20 steps, 0.93 at 50
    doodl_noise: float = DOODL_NOISE  # std of the noise injected into x_T after each update


@dataclass
class GuidanceGradientsConfig(MethodConfig):
    gg_scale: float = GG_SCALE


@dataclass
class Ditto2Config(DittoConfig):
    student: str | None = None  # the distilled student (None = bundled)
    decode: str | None = None  # "student" or "teacher"; None: by task (TaskSpec.method_defaults)
    decode_steps: int | None = None  # student decode steps; None: by task, else 4
    decode_sampler: str | None = None  # teacher decode: "ddim" or "dpmpp_2m"; None: by task
    teacher_steps: int | None = None  # teacher decode steps; None: by task, else `steps`
    refresh: int | None = None  # re-decode (and re-correct the surrogate) every N iterations; None: by decoder
    search: int | None = None  # start from the best of N noise draws per item (1: x_T as given); None: by task
    render: str | None = None  # the returned audio: "decode" (the decode that ranked x_T) or "teacher"; None: by task
    steer: str | None = None  # what Adam moves: "noise" (x_T) or "mix" (weights over the search's draws); None: by task


@dataclass
class Settings(Ditto2Config, DoodlConfig, FreedomConfig, GuidanceGradientsConfig):
    """Every method's settings in one bag (what the CLI and the eval gather); run_control hands
    each method only its own config (`config_for`)."""


@dataclass
class MethodResult:
    x_T: Tensor
    mel: Tensor  # [B, n_mels, F], detached
    model_calls: int  # network evaluations (a CFG pair, run as one batched pass, counts once)
    optim: OptimResult | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[..., MethodResult]
    config: type = MethodConfig
    lr: float = DITTO_LR  # default Adam step size (optimizing methods)
    resumable: bool = False  # optimizes x_T and can continue a saved run (--init-latent)
    options: tuple[Option, ...] = ()  # its own CLI options; each dest is a field of its config
    help: str = ""  # one line for the CLI

    def __call__(self, backend, control, cond, x_T: Tensor, config, resume: dict | None = None) -> MethodResult:
        if resume is not None and not self.resumable:
            raise DittoError(f"--init-latent continues an optimization: use it with --method "
                             f"{', '.join(resumable_methods())}")
        return self.fn(backend, control, cond, x_T, config_for(self, config), resume=resume)


_METHODS: dict[str, Method] = {}


def register_method(name: str, config: type = MethodConfig, lr: float = DITTO_LR, resumable: bool = False,
                    options: tuple[Option, ...] = (), help: str = ""):
    """Decorator: fn(backend, control, cond, x_T, config, resume=None) -> MethodResult."""

    def deco(fn):
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = Method(name, fn, config, lr, resumable, options, help)
        return fn

    return deco


def available_methods() -> list[str]:
    return sorted(_METHODS)


def all_methods() -> list[Method]:
    return [_METHODS[m] for m in available_methods()]


def resumable_methods() -> list[str]:
    return [m for m in available_methods() if _METHODS[m].resumable]


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise DittoError(f"unknown method {name!r}; choose from: {', '.join(available_methods())}")
    return _METHODS[name]


def default_lr(method: str) -> float:
    return get_method(method).lr


def config_for(method: Method, settings) -> MethodConfig:
    """The method's own config: settings itself if it is one, else its fields picked from a
    Settings (or any config carrying them)."""
    cls = method.config
    if settings is None:
        return cls()
    if isinstance(settings, cls):
        return settings
    return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})
