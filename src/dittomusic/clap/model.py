"""The domain CLAP: an audio tower over our log-mel and a projection of frozen sentence embeddings
into one space where matching clip/caption pairs have high cosine similarity.

Audio tower: strided 1-D convs over time with the mel bins as channels (what the tag classifier
showed reads timbre and texture well and trains fast on CPU), a few transformer layers over the
downsampled frames, then mean+max pooling. Any clip length works, and it is differentiable from
the mel, so a control can backpropagate a CLAP score into the diffusion latents. GroupNorm, not
BatchNorm: no batch statistics, so train and eval agree and DDP equals one process exactly.

`audio_tower="conv2d"` is a second architecture, for a second-opinion CLAP (issue #21: a result
steered by one CLAP is judged by another with a different seed and tower): 2-D convs over
(mel bin, frame) that see a pitch shift as a translation, where the 1-D tower sees each bin as
its own channel, then the frequency axis pooled away and the same transformer and pooling.

Text tower: the frozen sentence encoder (clap/text.py) then a small trained MLP.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dittomusic.checkpoint import load_tensors
from dittomusic.errors import DittoError


@dataclass
class ClapModelConfig:
    n_mels: int = 160
    channels: int = 128  # conv width; conv1d: the last two layers use twice this; conv2d: c/4, c/2, c, c
    layers: int = 2  # transformer layers over the 16x-downsampled frames
    heads: int = 4
    text_dim: int = 384  # the sentence encoder's width
    text_hidden: int = 512
    embed_dim: int = 256
    init_temperature: float = 0.07
    text_encoder: str = "all-MiniLM-L6-v2"
    audio_tower: str = "conv1d"  # one of AUDIO_TOWERS
    mel: dict = field(default_factory=dict)  # the MelConfig the audio tower was trained on

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClapModelConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise DittoError(f"unknown CLAP config keys: {', '.join(bad)}")
        cfg = cls(**d)
        if cfg.audio_tower not in AUDIO_TOWERS:
            raise DittoError(f"unknown CLAP audio tower {cfg.audio_tower!r}; choose from {', '.join(AUDIO_TOWERS)}")
        return cfg


class AudioTower(nn.Module):
    def __init__(self, cfg: ClapModelConfig):
        super().__init__()
        c = cfg.channels
        layers, cin = [], cfg.n_mels
        for cout in (c, c, 2 * c, 2 * c):  # each halves time: 512 frames -> 32 tokens
            layers += [nn.Conv1d(cin, cout, 5, stride=2, padding=2), nn.GroupNorm(8, cout), nn.GELU()]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self._head(cfg, 2 * c)

    def _head(self, cfg: ClapModelConfig, d: int) -> None:
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, dropout=0.0, activation="gelu",
                                                               batch_first=True, norm_first=True)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(2 * d, cfg.embed_dim)

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:
        return self.convs(mel).transpose(1, 2)  # [B, T', d]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.tokens(mel)
        for b in self.blocks:
            h = b(h)
        h = self.norm(h)
        return self.out(torch.cat([h.mean(1), h.amax(1)], dim=-1))


class AudioTower2D(AudioTower):
    """3x3 convs over [1, n_mels, frames], widths c/4, c/2, c, c, each halving both axes (512
    frames -> 32 tokens, as the 1-D tower); per frame, mean and max over the remaining bins."""

    def __init__(self, cfg: ClapModelConfig):
        nn.Module.__init__(self)
        c = cfg.channels
        layers, cin = [], 1
        for cout in (max(8, c // 4), max(8, c // 2), c, c):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.GELU()]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self._head(cfg, 2 * c)

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.convs(mel.unsqueeze(1))  # [B, c, F', T']
        return torch.cat([h.mean(2), h.amax(2)], dim=1).transpose(1, 2)


AUDIO_TOWERS = {"conv1d": AudioTower, "conv2d": AudioTower2D}


class DomainClap(nn.Module):
    def __init__(self, cfg: ClapModelConfig):
        super().__init__()
        self.cfg = cfg
        self.audio = AUDIO_TOWERS[cfg.audio_tower](cfg)
        self.text = nn.Sequential(nn.Linear(cfg.text_dim, cfg.text_hidden), nn.GELU(),
                                  nn.Linear(cfg.text_hidden, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] scaled log-mel -> [B, embed_dim] unit vectors."""
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise DittoError(f"the CLAP audio tower takes [batch, {self.cfg.n_mels}, frames] mels, "
                             f"got shape {list(mel.shape)}")
        return F.normalize(self.audio(mel), dim=-1)

    def embed_text(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        """[N, text_dim] sentence-encoder embeddings -> [N, embed_dim] unit vectors."""
        return F.normalize(self.text(sentence_emb), dim=-1)

    def forward(self, mel: torch.Tensor, sentence_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio, text) unit embeddings; training calls this (DDP hooks in through forward)."""
        return self.embed_audio(mel), self.embed_text(sentence_emb)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap: temperature >= 0.01


def load_clap(path: str | Path, device="cpu") -> tuple[DomainClap, dict]:
    """A domain CLAP in eval mode, frozen: an export (fp16 ok) or a training run folder / checkpoint (its EMA)."""
    p = Path(path)
    if p.is_dir():
        from dittomusic.clap.train import CKPT

        if not (p / CKPT).is_file():
            raise DittoError(f"{p} is neither a CLAP file nor a CLAP training run (no {CKPT})")
        p = p / CKPT
    tensors, meta = load_tensors(p)
    if "clap_config" not in meta:
        raise DittoError(f"{p} carries no CLAP config: not a dittomusic CLAP checkpoint")
    if any(k.startswith("ema.") for k in tensors):
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    model = DomainClap(ClapModelConfig.from_dict(meta["clap_config"]))
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as e:
        raise DittoError(f"{p} does not match its own CLAP config: {str(e)[:300]}") from None
    return model.to(device).eval().requires_grad_(False), meta
