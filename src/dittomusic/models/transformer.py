"""MelDiT: a diffusion transformer over frame patches of a log-mel clip.

Each token is `patch_frames` consecutive frames with all mel bins (a 4 x 160 patch).
A transformer over such tokens measured far faster per training step on this CPU than
a 2-D conv UNet of similar size, and it attends over the whole clip at once.
Conditioning (diffusion time + tags) enters every block through adaLN-Zero (DiT,
Peebles & Xie 2023). Positions use rotary embeddings, so clips of other lengths can
be sampled.

Parameterization: a token packs 4 x 160 = 640 values into a 256-wide embedding, so
the network cannot pass full-rank noise from input to output. A plain v or eps
target, which contains that noise, stalls it above even a per-timestep linear fit. So
the network F is wrapped in EDM preconditioning (Karras et al. 2022):
    x0 = c_skip * x_t / sqrt(a) + c_out * F(c_in * x_t / sqrt(a), t)
The analytic skip carries the noise and F only predicts musical structure. The
module still returns the configured prediction type (v by default), so the samplers
and the diffusers schedulers see an ordinary v-prediction model.

Tags: collection (one of N), instruments (multi-hot), tempo bucket, mode. Each tag has
a learned "null" embedding. Training drops each tag (and sometimes all of them) so the
same network serves conditional, partially conditional and unconditional generation,
which classifier-free guidance needs.

Consistency-trajectory students (dittomusic.distill) set ModelConfig.target_time: an
embedding of the jump's target time s is added to the conditioning vector. Its output
layer starts at zero, so such a student initialised from a teacher is that teacher.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dittomusic.errors import DittoError

MAX_DIM = 1 << 20  # any size in a model config; far above any real model, far below overflow


@dataclass
class ModelConfig:
    n_mels: int = 160
    clip_frames: int = 512
    patch_frames: int = 4
    width: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    # tag vocabulary sizes (from the dataset's vocab.json; kept in the checkpoint)
    n_collections: int = 6
    n_instruments: int = 28
    n_tempos: int = 4
    n_modes: int = 2
    prediction: str = "v_prediction"  # what forward() returns: "v_prediction" or "epsilon"
    sigma_data: float = 0.3  # RMS of the training mels in [-1, 1] (EDM's sigma_data)
    denoise_head: int = 1024  # hidden size of the per-token denoising MLP (0: none)
    vocab: dict = field(default_factory=dict)
    # consistency-trajectory students: also embed the jump's target time s (older configs lack the key)
    target_time: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """A config from a checkpoint's metadata (unknown keys ignored), checked field by field: a
        file handed to us may hold anything, and a bad value would otherwise fail deep in torch."""
        if not isinstance(d, dict):
            raise DittoError(f"the model config is a {type(d).__name__}, not a JSON object")
        cfg = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        cfg.check()
        return cfg

    def check(self) -> "ModelConfig":
        def bad(name, want):
            raise DittoError(f"model config {name} = {getattr(self, name)!r}: expected {want}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("n_mels", "clip_frames", "patch_frames", "width", "depth", "heads"):
            if not (is_int(getattr(self, name)) and 1 <= getattr(self, name) <= MAX_DIM):
                bad(name, f"an integer from 1 to {MAX_DIM}")
        for name in ("n_collections", "n_instruments", "n_tempos", "n_modes", "denoise_head"):
            if not (is_int(getattr(self, name)) and 0 <= getattr(self, name) <= MAX_DIM):
                bad(name, f"an integer from 0 to {MAX_DIM}")
        for name in ("mlp_ratio", "sigma_data"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1e3 and math.isfinite(v)):
                bad(name, "a positive number")
        if self.width % (2 * self.heads):  # rotary embeddings rotate pairs of each head's channels
            bad("width", f"a multiple of 2 x heads ({self.heads})")
        if int(self.width * self.mlp_ratio) < 1:
            bad("mlp_ratio", "at least 1 / width")
        if self.clip_frames % self.patch_frames:
            bad("clip_frames", f"a multiple of patch_frames ({self.patch_frames})")
        if self.prediction not in ("v_prediction", "epsilon"):
            bad("prediction", "v_prediction or epsilon")
        if not isinstance(self.target_time, bool):
            bad("target_time", "true or false")
        if not isinstance(self.vocab, dict):
            bad("vocab", "a JSON object of tag lists")
        # a tag's index must exist in its embedding; instruments are a multi-hot of exactly n_instruments
        for key, n, exact in (("collections", "n_collections", False), ("instruments", "n_instruments", True),
                              ("tempo_buckets", "n_tempos", False), ("modes", "n_modes", False)):
            names, size = self.vocab.get(key), getattr(self, n)
            if names is not None and not (isinstance(names, list) and all(isinstance(x, str) for x in names)
                                          and (len(names) == size if exact else len(names) <= size)):
                raise DittoError(f"model config vocab[{key!r}] = {names!r}: expected {'' if exact else 'at most '}"
                                 f"{size} names ({n})")
        return self

    @classmethod
    def for_vocab(cls, vocab: dict, **kw) -> "ModelConfig":
        return cls(n_collections=len(vocab["collections"]), n_instruments=len(vocab["instruments"]),
                   n_tempos=len(vocab["tempo_buckets"]), n_modes=len(vocab["modes"]), vocab=vocab, **kw)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _rope(n: int, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv[None]
    return ang.cos(), ang.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, c, rope):
        b, n, d = x.shape
        s1, g1, a1, s2, g2, a2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        h = _modulate(self.norm1(x), s1, g1)
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _apply_rope(q, *rope), _apply_rope(k, *rope)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + a1[:, None] * self.proj(h)
        x = x + a2[:, None] * self.mlp(_modulate(self.norm2(x), s2, g2))
        return x


class MelDiT(nn.Module):
    """net(x, t, cond, drop) -> model output (v or eps), all shaped [B, n_mels, frames]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.width, cfg.patch_frames
        self.patch_in = nn.Linear(cfg.n_mels * p, d)
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.collection = nn.Embedding(cfg.n_collections + 1, d)  # last index = null
        self.tempo = nn.Embedding(cfg.n_tempos + 1, d)
        self.mode = nn.Embedding(cfg.n_modes + 1, d)
        self.instruments = nn.Linear(cfg.n_instruments, d, bias=False)
        self.instruments_null = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        self.patch_out = nn.Linear(d, cfg.n_mels * p)
        zero = [self.ada_out, self.patch_out]
        if cfg.denoise_head:
            # sees the token's own noisy input at full rank, which the width-d stream cannot carry
            self.head = nn.Sequential(nn.Linear(d + cfg.n_mels * p, cfg.denoise_head), nn.GELU(approximate="tanh"),
                                      nn.Linear(cfg.denoise_head, cfg.n_mels * p))
            zero.append(self.head[-1])
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        if cfg.target_time:
            # created last so the other modules draw the same init as without it; zero output, so
            # a student initialised from a teacher starts out as exactly that teacher
            self.s_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
            nn.init.zeros_(self.s_mlp[-1].weight)
            nn.init.zeros_(self.s_mlp[-1].bias)
        from dittomusic.sampling.schedule import NoiseSchedule

        self.register_buffer("sigmas", NoiseSchedule.cosine().sigmas.float(), persistent=False)

    def sigma_at(self, t: torch.Tensor) -> torch.Tensor:
        """sigma = sqrt((1-a)/a), linearly interpolated for fractional timesteps (as diffusers' Euler does)."""
        n = self.sigmas.shape[0]
        t = t.clamp(0, n - 1)
        lo = t.floor().long().clamp(max=n - 2)
        w = t - lo
        return self.sigmas[lo] * (1 - w) + self.sigmas[lo + 1] * w

    # -- conditioning ---------------------------------------------------------
    def null_cond(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        c = self.cfg
        dev = device or self.patch_in.weight.device
        return {"collection": torch.full((batch,), c.n_collections, dtype=torch.long, device=dev),
                "instruments": torch.zeros(batch, c.n_instruments, device=dev),
                "tempo": torch.full((batch,), c.n_tempos, dtype=torch.long, device=dev),
                "mode": torch.full((batch,), c.n_modes, dtype=torch.long, device=dev),
                "instruments_null": torch.ones(batch, dtype=torch.bool, device=dev)}

    def embed_cond(self, cond: dict | None, drop: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        c = self.cfg
        null = self.null_cond(batch, device)
        if cond is None:
            cond = null
        keep = torch.ones(batch, dtype=torch.bool, device=device) if drop is None else ~drop.to(device)
        # a missing tag (None, or index -1) means "not specified": use its null embedding
        def idx(name, n_null):
            v = cond.get(name)
            if v is None:
                return null[name]
            v = v.to(device).long()
            return torch.where(keep & (v >= 0), v, torch.full_like(v, n_null))

        e = self.collection(idx("collection", c.n_collections))
        e = e + self.tempo(idx("tempo", c.n_tempos)) + self.mode(idx("mode", c.n_modes))
        inst = cond.get("instruments")
        inst_null = ~keep
        if inst is None:
            inst_null = torch.ones(batch, dtype=torch.bool, device=device)
            inst = null["instruments"]
        else:
            inst = inst.to(device=device, dtype=self.instruments.weight.dtype)
            inst_null = inst_null | (inst.sum(-1) == 0)
        if "instruments_null" in cond and cond is not null:
            inst_null = inst_null | cond["instruments_null"].to(device)
        e_inst = torch.where(inst_null[:, None], self.instruments_null.expand(batch, -1), self.instruments(inst))
        return e + e_inst

    # -- forward ---------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None = None,
                drop: torch.Tensor | None = None, s: torch.Tensor | None = None) -> torch.Tensor:
        """s: target time of a consistency-trajectory jump (needs cfg.target_time); None = -1, the clean end."""
        cfg = self.cfg
        b, m, f = x.shape
        p = cfg.patch_frames
        if m != cfg.n_mels or f % p:
            raise ValueError(f"expected [B, {cfg.n_mels}, frames] with frames divisible by {p}, got {tuple(x.shape)}")
        t = t.to(x.device).float().expand(b) if t.dim() == 0 or t.numel() == 1 else t.to(x.device).float()
        sigma = self.sigma_at(t).to(x.dtype).view(b, 1, 1)
        sd = cfg.sigma_data
        root = (sigma**2 + sd**2).sqrt()
        y = x * (1 + sigma**2).sqrt()  # x_t / sqrt(a): x0 + sigma * eps
        c_in, c_skip, c_out = 1 / root, sd**2 / root**2, sigma * sd / root
        f_out = self._net(c_in * y, t, cond, drop, self._target_time(s, b, x.device))
        x0 = c_skip * y + c_out * f_out
        a = 1 / (1 + sigma**2)
        if cfg.prediction == "v_prediction":  # v = (sqrt(a) x_t - x0) / sqrt(1 - a)
            return (a.sqrt() * x - x0) / (1 - a).sqrt()
        return (x - a.sqrt() * x0) / (1 - a).sqrt()  # epsilon

    def _target_time(self, s, b: int, device) -> torch.Tensor | None:
        if not self.cfg.target_time:
            if s is not None:
                raise ValueError("this model has no target-time embedding (ModelConfig.target_time is False)")
            return None
        s = torch.as_tensor(-1.0 if s is None else s, device=device).float()
        return s.expand(b) if s.dim() == 0 or s.numel() == 1 else s

    def _net(self, x: torch.Tensor, t: torch.Tensor, cond, drop, s: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        b, m, f = x.shape
        p = cfg.patch_frames
        tokens = x.transpose(1, 2).reshape(b, f // p, p * m)
        h = self.patch_in(tokens)
        c = self.t_mlp(timestep_embedding(t, cfg.width).to(x.dtype)) + self.embed_cond(cond, drop, b, x.device).to(x.dtype)
        if s is not None:
            c = c + self.s_mlp(timestep_embedding(s, cfg.width).to(x.dtype))
        rope = _rope(f // p, cfg.width // cfg.heads, x.device)
        for blk in self.blocks:
            h = blk(h, c, rope)
        s, g = self.ada_out(F.silu(c)).chunk(2, dim=-1)
        h = _modulate(self.norm_out(h), s, g)
        out = self.patch_out(h)
        if self.cfg.denoise_head:
            out = out + self.head(torch.cat([h, tokens], dim=-1))
        return out.reshape(b, f, m).transpose(1, 2)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
