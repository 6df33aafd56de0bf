"""MelUNet: a 1-D convolutional UNet over time, with the mel bins as channels.

Mel decoders in speech synthesis (Grad-TTS's decoder aside, DiffSinger / WaveGrad-style
denoisers) work at full time resolution with the frequency axis as channels. Unlike MelDiT's
4-frame patches there is no token bottleneck: every frame keeps `channels[0]` >= n_mels features,
so the network can cancel full-rank noise at low noise levels, where MelDiT left a grain.
The time axis is halved at each level (attention only at the coarse levels, where it is cheap),
and tags + diffusion time modulate every residual block (adaptive GroupNorm, as in the
ADM UNet of Dhariwal & Nichol 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dittomusic.models.denoiser import Denoiser, DenoiserConfig


@dataclass
class UNetConfig(DenoiserConfig):
    channels: list = field(default_factory=lambda: [192, 256, 384, 512])  # per level; time halves per level
    blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attn_levels: list = field(default_factory=lambda: [3])  # levels with self-attention after each block
    heads: int = 4
    cond_width: int = 256
    groups: int = 32

    arch = "unet1d"

    @property
    def frame_multiple(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def _check_arch(self) -> None:
        from dittomusic.models.denoiser import MAX_DIM, _is_int

        if not (isinstance(self.channels, list) and 1 <= len(self.channels) <= 8
                and all(_is_int(c) and 1 <= c <= MAX_DIM for c in self.channels)):
            self._bad("channels", "a list of 1 to 8 positive integers")
        self._ints(("blocks", "heads", "cond_width", "groups"), 1)
        if not (isinstance(self.attn_levels, list) and all(_is_int(v) for v in self.attn_levels)):
            self._bad("attn_levels", "a list of level indices")
        if any(self.channels[v] % self.heads for v in self.attn_levels if 0 <= v < len(self.channels)):
            self._bad("heads", "a divisor of the channels of every attention level")
        if self.cond_width % 2:
            self._bad("cond_width", "an even number (sine and cosine time features)")


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, ch), ch, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.ada = nn.Linear(cond, 2 * cout)
        self.norm2 = _norm(cout, groups)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as (a projection of) the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, c):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.ada(F.silu(c))[..., None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = nn.Conv1d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, ch, f = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, 3, self.heads, ch // self.heads, f).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [b, heads, f, ch/heads]
        return x + self.proj(h.transpose(-1, -2).reshape(b, ch, f))


class MelUNet(Denoiser):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        d, chs, g = cfg.cond_width, list(cfg.channels), cfg.groups
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self._init_tags(d)
        self.conv_in = nn.Conv1d(cfg.n_mels, chs[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [chs[0]]
        cur = chs[0]
        for lvl, ch in enumerate(chs):
            for _ in range(cfg.blocks):
                self.down.append(self._stage(cur, ch, lvl))
                cur = ch
                skips.append(cur)
            if lvl < len(chs) - 1:
                self.down.append(nn.Conv1d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, d, g), Attention(cur, cfg.heads, g), ResBlock(cur, cur, d, g)])
        self.up = nn.ModuleList()
        for lvl in reversed(range(len(chs))):
            for _ in range(cfg.blocks + 1):
                self.up.append(self._stage(cur + skips.pop(), chs[lvl], lvl))
                cur = chs[lvl]
            if lvl > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.norm_out = _norm(cur, g)
        self.conv_out = nn.Conv1d(cur, cfg.n_mels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self._init_target_time(d)

    def _stage(self, cin: int, cout: int, lvl: int) -> nn.ModuleList:
        mods = [ResBlock(cin, cout, self.cfg.cond_width, self.cfg.groups)]
        if lvl in self.cfg.attn_levels:
            mods.append(Attention(cout, self.cfg.heads, self.cfg.groups))
        return nn.ModuleList(mods)

    @staticmethod
    def _run_stage(stage: nn.ModuleList, h, c):
        for m in stage:
            h = m(h, c) if isinstance(m, ResBlock) else m(h)
        return h

    def _net(self, x: torch.Tensor, t: torch.Tensor, cond, drop, s: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        c = self._cond_vector(t, cond, drop, s, self.cfg.cond_width, b, x)
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            h = m(h) if isinstance(m, nn.Conv1d) else self._run_stage(m, h, c)
            hs.append(h)
        for m in self.mid:
            h = m(h, c) if isinstance(m, ResBlock) else m(h)
        for m in self.up:
            h = m(h) if isinstance(m, nn.Upsample) else self._run_stage(m, torch.cat([h, hs.pop()], dim=1), c)
        return self.conv_out(F.silu(self.norm_out(h)))
