"""MelAutoencoder: a compact latent for latent diffusion of log-mels.

Large audio diffusion models get their fine detail from a deterministic decoder trained for
reconstruction, with diffusion in a compact latent (Stable Diffusion, AudioLDM, Stable Audio).
Here a 1-D conv encoder over time (mel bins as channels) halves the frame rate at each level,
and a mirrored decoder maps the latent back to the mel. The encoder is a small VAE (mean and
log-variance, a light KL term) so the latent space stays smooth enough to diffuse in.

The decoder's last layer maps each frame's features to all mel bins at once, a rank-limited map
that draws the detail *across* bins (what the realism critic reads) too smoothly. An optional
2-D post-net (`post_channels` > 0) convolves over frequency and time and adds a residual to the
decoded mel; its last layer starts at zero, so it can be trained onto a finished decoder (encoder
and decoder frozen) and every diffusion model trained in that latent stays valid.

A decoder trained for reconstruction returns the mean mel given the latent, which lacks the
frame-to-frame jitter of real spectrograms (partials of rendered audio flicker by about a dB from
frame to frame; the latent cannot say how). The realism critic reads that smoothness at once:
decoded real latents are told from real mels as easily as generated clips are. An optional
texture noise (`texture_edges` non-empty) adds the missing variance back as Gaussian noise whose
std depends on the mel bin and the decoded level (`texture_std` [n_mels, len(edges) + 1]),
calibrated on training clips so that the frame-to-frame differences of decoded mels match real
ones (`train.autoencoder.calibrate_texture`). It is drawn from a generator the caller seeds (a
fixed seed by default, so decode stays a deterministic function of z) and has no gradient.

The Gaussian texture has one std per bin and level, white in time and frequency, and it leaves the
decoder's ceiling (textured reconstructions against real clips) at a C2ST of 0.76-0.78: real speckle
comes from interference inside each analysis window, so it is shaped by its neighbourhood (dips
beside partials, grain between them). An optional texture *network* (`texture_channels` > 0) learns
that shape instead: a small 2-D conv net maps the decoded mel and white noise to a residual,
high-passed by construction (its 5 x 5 local mean is removed), so it can add fine detail but not move
levels, partials or onsets; it is trained adversarially with encoder and decoder frozen
(`AETrainConfig.texture_gan`), and where present it replaces the Gaussian texture. Its input is the
detached mel, so controls backpropagate through decode as before (identity through the texture).

`latent_scale` is set after training to 1 / std of the latent means on training clips, so the
diffusion model sees data of unit scale (Stable Diffusion's scale factor).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoencoderConfig:
    n_mels: int = 160
    latent_channels: int = 64
    channels: list = field(default_factory=lambda: [128, 192, 256])  # per level; time halves between levels
    blocks: int = 2
    groups: int = 32
    latent_scale: float = 1.0
    post_channels: int = 0  # 0: no 2-D post-net
    post_dilations: list = field(default_factory=lambda: [1, 2, 4, 8, 16])  # over frequency (~ +-33 bins)
    texture_edges: list = field(default_factory=list)  # decoded-level edges of the texture noise; []: none
    texture_channels: int = 0  # 0: no texture network (the Gaussian texture, if any)
    texture_noise: int = 4  # noise channels the texture network reads
    texture_dilations: list = field(default_factory=lambda: [1, 2, 4, 1])  # over frequency

    arch = "mel_vae"

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, ch), ch, eps=1e-6)


class _Res(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(_norm(cin, groups), nn.SiLU(), nn.Conv1d(cin, cout, 3, padding=1),
                                  _norm(cout, groups), nn.SiLU(), nn.Conv1d(cout, cout, 3, padding=1))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class PostNet(nn.Module):
    """Residual 2-D refiner of a decoded log-mel [B, mels, frames]: 3x3 convs whose frequency
    dilations widen the view across bins (harmonic neighbours) at full resolution."""

    def __init__(self, channels: int, dilations):
        super().__init__()
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=(d, 1), dilation=(d, 1)) for d in dilations)
        self.out = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.inp(mel.unsqueeze(1))
        for conv in self.body:
            h = h + conv(F.silu(h))
        return mel + self.out(F.silu(h)).squeeze(1)


class TextureNet(nn.Module):
    """Stochastic fine detail for a decoded log-mel: (mel [B, F, T], noise [B, k, F, T]) -> a residual
    [B, F, T] with its 5 x 5 local mean removed (fine detail only). The last layer starts at zero."""

    HIGH_PASS = 5

    def __init__(self, channels: int, noise_channels: int, dilations):
        super().__init__()
        self.noise_channels = noise_channels
        self.inp = nn.Conv2d(1 + noise_channels, channels, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=(d, 1), dilation=(d, 1)) for d in dilations)
        self.out = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, mel: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([mel.unsqueeze(1), noise], 1))
        for conv in self.body:
            h = h + conv(F.silu(h))
        r = self.out(F.silu(h))
        k = self.HIGH_PASS
        return (r - F.avg_pool2d(r, k, 1, k // 2, count_include_pad=False)).squeeze(1)


def add_texture_noise(mel: torch.Tensor, std: torch.Tensor, edges, generator: torch.Generator | None = None):
    """mel [B, F, T] + Gaussian noise of std std[f, level bucket of the value] (buckets split at
    `edges`); the noise comes from `generator` (None: a fixed seed) and carries no gradient."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    eps = torch.randn(mel.shape, generator=g, device=g.device).to(mel)
    level = torch.bucketize(mel.detach(), torch.tensor(list(edges), device=mel.device, dtype=mel.dtype))
    bins = torch.arange(mel.shape[1], device=mel.device).view(1, -1, 1)
    return mel + std.to(mel)[bins, level] * eps


class MelAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        chs, g = list(cfg.channels), cfg.groups
        enc: list[nn.Module] = [nn.Conv1d(cfg.n_mels, chs[0], 3, padding=1)]
        cur = chs[0]
        for lvl, ch in enumerate(chs):
            for _ in range(cfg.blocks):
                enc.append(_Res(cur, ch, g))
                cur = ch
            if lvl < len(chs) - 1:
                enc.append(nn.Conv1d(cur, chs[lvl + 1], 4, stride=2, padding=1))
                cur = chs[lvl + 1]
        enc += [_norm(cur, g), nn.SiLU(), nn.Conv1d(cur, 2 * cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv1d(cfg.latent_channels, chs[-1], 3, padding=1)]
        cur = chs[-1]
        for lvl in reversed(range(len(chs))):
            for _ in range(cfg.blocks):
                dec.append(_Res(cur, chs[lvl], g))
                cur = chs[lvl]
            if lvl > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(cur, chs[lvl - 1], 3, padding=1)]
                cur = chs[lvl - 1]
        dec += [_norm(cur, g), nn.SiLU(), nn.Conv1d(cur, cfg.n_mels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.post = PostNet(cfg.post_channels, cfg.post_dilations) if cfg.post_channels > 0 else None
        self.texture_net = (TextureNet(cfg.texture_channels, cfg.texture_noise, cfg.texture_dilations)
                            if cfg.texture_channels > 0 else None)
        self.texture_std: torch.Tensor | None
        if cfg.texture_edges:
            self.register_buffer("texture_std", torch.zeros(cfg.n_mels, len(cfg.texture_edges) + 1))
        else:
            self.texture_std = None

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        mel = self.decoder(z)
        return mel if self.post is None else self.post(mel)

    def last_layer(self) -> torch.Tensor:
        """The weight that produces the mel (the adversarial loss balances its gradients there)."""
        return self.decoder[-1].weight if self.post is None else self.post.out.weight

    def check_mel(self, mel: torch.Tensor) -> None:
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels or mel.shape[-1] % self.cfg.downsample:
            raise ValueError(f"expected a mel [B, {self.cfg.n_mels}, frames] with frames divisible by "
                             f"{self.cfg.downsample}, got {tuple(mel.shape)}")

    def posterior(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | mel), unscaled, [B, latent_channels, frames / downsample]."""
        self.check_mel(mel)
        mean, logvar = self.encoder(mel).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel -> the scaled latent the diffusion model works in (posterior mean, deterministic)."""
        return self.posterior(mel)[0] * self.cfg.latent_scale

    def decode(self, z: torch.Tensor, generator: torch.Generator | None = None, texture: bool = True) -> torch.Tensor:
        """Scaled latent -> mel (differentiable; controls backpropagate through it), with the texture
        noise drawn from `generator` (None: a fixed seed) unless texture=False or there is none."""
        mel = self._decode(z / self.cfg.latent_scale)
        return self.add_texture(mel, generator) if texture else mel

    def add_texture(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.texture_net is not None:
            g = generator if generator is not None else torch.Generator().manual_seed(0)
            b, f, t = mel.shape
            eps = torch.randn((b, self.texture_net.noise_channels, f, t), generator=g, device=g.device).to(mel)
            return mel + self.texture_net(mel.detach(), eps)
        if self.texture_std is None:
            return mel
        return add_texture_noise(mel, self.texture_std, self.cfg.texture_edges, generator)

    def forward(self, mel: torch.Tensor, noise: torch.Tensor | None = None):
        """Training pass: reconstruction from a posterior sample (or the mean if noise is None), and the KL."""
        mean, logvar = self.posterior(mel)
        z = mean if noise is None else mean + (0.5 * logvar).exp() * noise
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()
        return self._decode(z), kl


def reconstruction_loss(rec: torch.Tensor, mel: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 on the mel plus L1 on its time and frequency differences (onsets and harmonic peaks are
    edges; a plain L1/L2 decoder blurs them first)."""
    l1 = F.l1_loss(rec, mel)
    dt = F.l1_loss(rec.diff(dim=-1), mel.diff(dim=-1))
    df = F.l1_loss(rec.diff(dim=-2), mel.diff(dim=-2))
    return {"l1": l1, "dt": dt, "df": df}
