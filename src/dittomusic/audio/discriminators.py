"""Optional adversarial training of the vocoder: multi-period (HiFi-GAN) and multi-resolution
spectrogram (UnivNet, Vocos) discriminators with hinge losses and feature matching.

Off by default: on 2 CPU cores they triple the cost of a step, and the spectral losses alone
already beat Griffin-Lim by a wide margin. Channel widths are a quarter of HiFi-GAN's so the
option stays affordable here (`width` scales them).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm


def _features(convs: nn.ModuleList, post: nn.Module, h: torch.Tensor) -> list[torch.Tensor]:
    """Each conv's leaky-ReLU activations (for feature matching), then the logits."""
    feats = []
    for c in convs:
        h = F.leaky_relu(c(h), 0.1)
        feats.append(h)
    feats.append(post(h))
    return feats


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, width: int = 16):
        super().__init__()
        self.period = period
        ch = [1, width, 4 * width, 16 * width, 16 * width]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(ch[i], ch[i + 1], (5, 1), (3 if i < 3 else 1, 1), padding=(2, 0)))
            for i in range(4))
        self.post = weight_norm(nn.Conv2d(ch[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return _features(self.convs, self.post, x.view(b, 1, -1, self.period))


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, width: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, width, (7, 5), (2, 2), padding=(3, 2))),
            weight_norm(nn.Conv2d(width, width, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(width, width, (5, 3), (2, 2), padding=(2, 1))),
            weight_norm(nn.Conv2d(width, width, 3, (2, 1), padding=1)),
            weight_norm(nn.Conv2d(width, width, 3, (2, 2), padding=1)),
        ])
        self.post = weight_norm(nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return _features(self.convs, self.post, (s.abs() + 1e-7).log().unsqueeze(1))  # [B, 1, freq, frames]


class Discriminators(nn.Module):
    """All sub-discriminators; forward gives one feature list per sub-discriminator."""

    def __init__(self, periods=(2, 3, 5, 7, 11), resolutions=((512, 128), (1024, 256), (2048, 512)), width: int = 16):
        super().__init__()
        self.subs = nn.ModuleList([*(PeriodDiscriminator(p, width) for p in periods),
                                   *(ResolutionDiscriminator(n, h, width) for n, h in resolutions)])

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        return [d(x) for d in self.subs]


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge: push real logits above 1 and fake logits below -1."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)) / len(real)


def adversarial_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """The generator's hinge loss, averaged over sub-discriminators (no real batch needed)."""
    return sum(F.relu(1 - f[-1]).mean() for f in fake) / len(fake)


def generator_losses(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge adversarial loss, feature-matching L1), each averaged over sub-discriminators."""
    adv = adversarial_loss(fake)
    fm = sum(sum((a.detach() - b).abs().mean() for a, b in zip(r[:-1], f[:-1])) / (len(r) - 1)
             for r, f in zip(real, fake)) / len(fake)
    return adv, fm


class MelPatchDiscriminator(nn.Module):
    """A PatchGAN over the log-mel image [B, C, mels, frames] (the latent autoencoder's decoder): its
    logits judge local patches, so it rewards sharp partials and onsets rather than global layout."""

    def __init__(self, width: int = 32, layers: int = 4, in_channels: int = 1):
        super().__init__()
        ch = [in_channels] + [width * min(2 ** i, 4) for i in range(layers)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(ch[i], ch[i + 1], (5, 5), (2 if i < layers - 1 else 1,) * 2, padding=2))
            for i in range(layers))
        self.post = weight_norm(nn.Conv2d(ch[-1], 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _features(self.convs, self.post, x)


def critic_view(mel: torch.Tensor, floor_db: float = 60.0, db_per_unit: float = 80.0) -> torch.Tensor:
    """What the realism C2ST reads (eval.realism._Critic): the mel floored at its peak - floor_db (the
    inaudible rest carries no gradient) and 4x its frame-to-frame change, as 2 channels [B, 2, F, T]."""
    x = torch.maximum(mel, mel.detach().amax((1, 2), keepdim=True) - floor_db / db_per_unit)
    dt = F.pad(x[..., 1:] - x[..., :-1], (0, 1))
    return torch.stack([x, 4 * dt], 1)


class MelDiscriminators(nn.Module):
    """Patch discriminators at full resolution and at half resolution in time and frequency.

    view "mel": the log-mel as it is; "critic": :func:`critic_view`, the realism yardstick's input."""

    VIEWS = ("mel", "critic")

    def __init__(self, width: int = 32, view: str = "mel"):
        super().__init__()
        if view not in self.VIEWS:
            raise ValueError(f"discriminator view {view!r}: expected one of {self.VIEWS}")
        self.view = view
        c = 2 if view == "critic" else 1
        self.subs = nn.ModuleList([MelPatchDiscriminator(width, in_channels=c), MelPatchDiscriminator(width, in_channels=c)])

    def forward(self, mel: torch.Tensor) -> list[list[torch.Tensor]]:
        x = critic_view(mel) if self.view == "critic" else mel.unsqueeze(1)
        return [self.subs[0](x), self.subs[1](F.avg_pool2d(x, 2))]
