"""The variance-preserving noise schedule shared by training and sampling.

x_t = alpha_t * x0 + sigma_t * eps, with alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t).
The equivalent variance-exploding ("sigma space") noise level is s_t = sigma_t / alpha_t,
which is what Euler/Heun integrate over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

PREDICTIONS = ("epsilon", "v_prediction")


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def cosine_betas(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> Tensor:
    """diffusers' betas_for_alpha_bar (squaredcos_cap_v2), float32 like diffusers."""

    def abar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    betas = [min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float32)


def model_output_to_x0_eps(out: Tensor, x_t: Tensor, alpha, sigma, prediction: str) -> tuple[Tensor, Tensor]:
    """Split a raw network output into (x0, eps) given VP alpha/sigma (scalars or broadcastable).

    The operation order is the one diffusers' DDIM/DPM-Solver use, so results agree bitwise
    when alpha/sigma are the same float32 numbers.
    """
    if prediction == "epsilon":
        return (x_t - sigma * out) / alpha, out
    if prediction == "v_prediction":
        return alpha * x_t - sigma * out, alpha * out + sigma * x_t
    _check_prediction(prediction)
    raise AssertionError  # unreachable


@dataclass
class NoiseSchedule:
    """Cumulative alpha products abar_t for t = 0..T-1, stored in float64."""

    alphas_cumprod: Tensor

    def __post_init__(self) -> None:
        a = torch.as_tensor(self.alphas_cumprod).detach().to("cpu", torch.float64)
        if a.ndim != 1 or len(a) < 2 or not bool(((a > 0) & (a <= 1)).all()):
            raise ValueError("alphas_cumprod must be a 1-D tensor of values in (0, 1]")
        self.alphas_cumprod = a

    @classmethod
    def from_betas(cls, betas) -> "NoiseSchedule":
        # cumprod in the betas' own dtype: float32 betas reproduce diffusers' float32 cumprod exactly
        betas = torch.as_tensor(betas)
        if not betas.is_floating_point():
            betas = betas.double()
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def cosine(cls, num_train_timesteps: int = 1000) -> "NoiseSchedule":
        """Exactly diffusers' beta_schedule="squaredcos_cap_v2" (including its float32 rounding)."""
        return cls.from_betas(cosine_betas(num_train_timesteps))

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def sigmas(self) -> Tensor:
        """Sigma-space noise levels sqrt((1 - abar) / abar), float64 [T]."""
        a = self.alphas_cumprod
        return ((1 - a) / a).sqrt()

    def sigma_at(self, t) -> Tensor:
        """Sigma-space noise level at (possibly fractional) timesteps, float64.

        Fractional timesteps interpolate linearly in sigma, as diffusers' Euler/Heun do when
        they pass non-integer timesteps to the model.
        """
        t = torch.as_tensor(t, dtype=torch.float64).detach().cpu().clamp(0, self.num_train_timesteps - 1)
        lo = t.floor().long().clamp(max=self.num_train_timesteps - 2)
        w = t - lo
        s = self.sigmas
        return (1 - w) * s[lo] + w * s[lo + 1]

    def alpha_sigma(self, t) -> tuple[Tensor, Tensor]:
        """VP (alpha_t, sigma_t) at timesteps t (float64; exact at integer t)."""
        t = torch.as_tensor(t).detach().cpu()
        if not t.is_floating_point() or bool((t == t.round()).all()):
            a = self.alphas_cumprod[t.long()]
            return a.sqrt(), (1 - a).sqrt()
        s = self.sigma_at(t)
        alpha = 1 / (1 + s**2).sqrt()
        return alpha, s * alpha

    def _coeffs(self, t, like: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.alpha_sigma(t)
        shape = (-1,) + (1,) * (like.ndim - 1) if alpha.ndim else ()
        return (alpha.to(like.device, like.dtype).reshape(shape), sigma.to(like.device, like.dtype).reshape(shape))

    def add_noise(self, x0: Tensor, noise: Tensor, t) -> Tensor:
        """Forward process x_t = alpha_t x0 + sigma_t noise; t is a scalar or [B] timesteps."""
        alpha, sigma = self._coeffs(t, x0)
        return alpha * x0 + sigma * noise

    def velocity(self, x0: Tensor, noise: Tensor, t) -> Tensor:
        """v = alpha_t * eps - sigma_t * x0 (diffusers' get_velocity)."""
        alpha, sigma = self._coeffs(t, x0)
        return alpha * noise - sigma * x0

    def target(self, x0: Tensor, noise: Tensor, t, prediction: str = "v_prediction") -> Tensor:
        """The regression target for a network of the given prediction type."""
        _check_prediction(prediction)
        return noise if prediction == "epsilon" else self.velocity(x0, noise, t)

    def split(self, out: Tensor, x_t: Tensor, t, prediction: str = "v_prediction") -> tuple[Tensor, Tensor]:
        """(x0, eps) implied by a raw network output at x_t."""
        alpha, sigma = self._coeffs(t, x_t)
        return model_output_to_x0_eps(out, x_t, alpha, sigma, prediction)

    def to_x0(self, out: Tensor, x_t: Tensor, t, prediction: str = "v_prediction") -> Tensor:
        return self.split(out, x_t, t, prediction)[0]

    def to_eps(self, out: Tensor, x_t: Tensor, t, prediction: str = "v_prediction") -> Tensor:
        return self.split(out, x_t, t, prediction)[1]

    def from_x0_eps(self, x0: Tensor, eps: Tensor, t, prediction: str = "v_prediction") -> Tensor:
        """The network output that would imply (x0, eps): inverse of split()."""
        _check_prediction(prediction)
        if prediction == "epsilon":
            return eps
        alpha, sigma = self._coeffs(t, x0)
        return alpha * eps - sigma * x0
