"""Classifier-free guidance: turn a conditional network into a sampler model_fn."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .samplers import ModelFn

# net(x, t, cond, drop): cond is a dict of batched tensors or None; drop[b] = True drops all of
# row b's conditions (the null condition used for the unconditional estimate).
Net = Callable[[Tensor, Tensor, "dict | None", "Tensor | None"], Tensor]


def _double(v):
    return torch.cat([v, v]) if isinstance(v, Tensor) else v


def cfg_model_fn(net: Net, cond: dict | None, scale: float, *, batched: bool = True) -> ModelFn:
    """model_fn computing uncond + scale * (cond - uncond) = w * out(c) + (1 - w) * out(null).

    The guided combination is linear, so it is valid for eps- and v-prediction outputs alike.
    batched=True runs both estimates in one forward pass of twice the batch size (x and every
    cond tensor repeated; drop = [False] * B + [True] * B). scale == 1 needs only the
    conditional pass, scale == 0 or cond None only the unconditional one.
    """
    scale = float(scale)

    def flags(x: Tensor, value: bool) -> Tensor:
        return torch.full((x.shape[0],), value, dtype=torch.bool, device=x.device)

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        if cond is None or scale == 0.0:
            return net(x, t, cond, flags(x, True))
        if scale == 1.0:
            return net(x, t, cond, flags(x, False))
        if batched:
            drop = torch.cat([flags(x, False), flags(x, True)])
            out_c, out_u = net(_double(x), _double(t), {k: _double(v) for k, v in cond.items()}, drop).chunk(2)
        else:
            out_c, out_u = net(x, t, cond, flags(x, False)), net(x, t, cond, flags(x, True))
        return out_u + scale * (out_c - out_u)

    return model_fn
