"""A tiny deterministic denoiser shared by the sampling tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dittomusic.sampling import NoiseSchedule

SHAPE = (2, 8, 16)


class TinyDenoiser:
    """Predicts a bounded, channel-mixing x0 estimate and returns the eps / v consistent with it.

    Being a plausible denoiser keeps every trajectory O(1), so an absolute tolerance is meaningful
    for all samplers and both prediction types. x0 reaches +-2, which makes dynamic thresholding
    with sample_max_value > 1 actually rescale. Counts its calls.
    """

    def __init__(self, schedule: NoiseSchedule, prediction: str, channels: int = SHAPE[1], seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(channels, channels, 3, generator=g) * 0.4
        self.b = torch.randn(channels, 1, generator=g) * 0.3
        self.schedule, self.prediction, self.calls = schedule, prediction, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],) and t.is_floating_point()
        self.calls += 1
        alpha, sigma = (c.to(x.dtype).view(-1, 1, 1) for c in self.schedule.alpha_sigma(t))
        h = F.conv1d(x, self.w.to(x.dtype), padding=1) + self.b.to(x.dtype)
        x0 = 2 * torch.tanh(1.5 * alpha * x + 0.6 * torch.tanh(h) * (1 + t.view(-1, 1, 1) / 1000))
        eps = (x - alpha * x0) / sigma
        return eps if self.prediction == "epsilon" else alpha * eps - sigma * x0
