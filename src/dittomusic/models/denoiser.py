"""What every dittomusic denoising network shares: tag conditioning and EDM preconditioning.

An architecture subclasses `Denoiser` and implements `_net(x, t, cond, drop, s)`, the raw
network F on the preconditioned input; `forward` wraps it so that it returns the configured
prediction type (v by default), and samplers, guidance, distillation and the diffusers
schedulers all see an ordinary v- (or eps-) prediction model:

    x0 = c_skip * x_t / sqrt(a) + c_out * F(c_in * x_t / sqrt(a), t)      (EDM, Karras et al. 2022)

The analytic skip carries the noise, so F only has to predict musical structure.

Tags: collection (one of N), instruments (multi-hot), tempo bucket, mode. Each tag has a learned
"null" embedding; training drops each tag (and sometimes all of them), so one network serves
conditional, partially conditional and unconditional generation, as classifier-free guidance needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from dittomusic.errors import DittoError

MAX_DIM = 1 << 20  # any size in a model config; far above any real model, far below overflow


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class DenoiserConfig:
    """Fields every architecture has. `n_mels` is the number of rows of the tensor the model
    denoises: mel bins for a mel model, latent channels for a latent one."""

    n_mels: int = 160
    clip_frames: int = 512
    # tag vocabulary sizes (from the dataset's vocab.json; kept in the checkpoint)
    n_collections: int = 6
    n_instruments: int = 28
    n_tempos: int = 4
    n_modes: int = 2
    prediction: str = "v_prediction"  # what forward() returns: "v_prediction" or "epsilon"
    sigma_data: float = 0.3  # RMS of the training data (EDM's sigma_data)
    vocab: dict = field(default_factory=dict)
    # consistency-trajectory students: also embed the jump's target time s (older configs lack the key)
    target_time: bool = False

    arch = "base"  # class attribute, written into to_dict()

    @property
    def frame_multiple(self) -> int:
        """Clip lengths (in frames) must be a multiple of this."""
        return 1

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict):
        """A config from a checkpoint's metadata (unknown keys ignored), checked field by field: a
        file handed to us may hold anything, and a bad value would otherwise fail deep in torch."""
        if not isinstance(d, dict):
            raise DittoError(f"the model config is a {type(d).__name__}, not a JSON object")
        cfg = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        cfg.check()
        return cfg

    def _bad(self, name: str, want: str):
        raise DittoError(f"model config {name} = {getattr(self, name)!r}: expected {want}")

    def _ints(self, names, lo: int) -> None:
        for name in names:
            if not (_is_int(getattr(self, name)) and lo <= getattr(self, name) <= MAX_DIM):
                self._bad(name, f"an integer from {lo} to {MAX_DIM}")

    def _positive(self, names) -> None:
        for name in names:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1e3 and math.isfinite(v)):
                self._bad(name, "a positive number")

    def check(self):
        self._ints(("n_mels", "clip_frames"), 1)
        self._ints(("n_collections", "n_instruments", "n_tempos", "n_modes"), 0)
        self._positive(("sigma_data",))
        if self.prediction not in ("v_prediction", "epsilon"):
            self._bad("prediction", "v_prediction or epsilon")
        if not isinstance(self.target_time, bool):
            self._bad("target_time", "true or false")
        if not isinstance(self.vocab, dict):
            self._bad("vocab", "a JSON object of tag lists")
        # a tag's index must exist in its embedding; instruments are a multi-hot of exactly n_instruments
        for key, n, exact in (("collections", "n_collections", False), ("instruments", "n_instruments", True),
                              ("tempo_buckets", "n_tempos", False), ("modes", "n_modes", False)):
            names, size = self.vocab.get(key), getattr(self, n)
            if names is not None and not (isinstance(names, list) and all(isinstance(x, str) for x in names)
                                          and (len(names) == size if exact else len(names) <= size)):
                raise DittoError(f"model config vocab[{key!r}] = {names!r}: expected {'' if exact else 'at most '}"
                                 f"{size} names ({n})")
        self._check_arch()
        if self.clip_frames % self.frame_multiple:
            self._bad("clip_frames", f"a multiple of {self.frame_multiple}")
        return self

    def _check_arch(self) -> None:
        """The architecture's own fields."""

    @classmethod
    def for_vocab(cls, vocab: dict, **kw):
        return cls(n_collections=len(vocab["collections"]), n_instruments=len(vocab["instruments"]),
                   n_tempos=len(vocab["tempo_buckets"]), n_modes=len(vocab["modes"]), vocab=vocab, **kw)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Denoiser(nn.Module):
    """net(x, t, cond, drop) -> model output (v or eps), shaped like x: [B, n_mels, frames]."""

    cfg: DenoiserConfig

    def _init_tags(self, d: int) -> None:
        c = self.cfg
        self.collection = nn.Embedding(c.n_collections + 1, d)  # last index = null
        self.tempo = nn.Embedding(c.n_tempos + 1, d)
        self.mode = nn.Embedding(c.n_modes + 1, d)
        self.instruments = nn.Linear(c.n_instruments, d, bias=False)
        self.instruments_null = nn.Parameter(torch.zeros(d))

    def _init_target_time(self, d: int) -> None:
        # created last so the other modules draw the same init as without it; zero output, so
        # a student initialised from a teacher starts out as exactly that teacher
        if self.cfg.target_time:
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
        dev = device or self.instruments.weight.device
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
    def check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        if x.dim() != 3 or x.shape[1] != cfg.n_mels or x.shape[-1] % cfg.frame_multiple:
            raise ValueError(f"expected [B, {cfg.n_mels}, frames] with frames divisible by {cfg.frame_multiple}, "
                             f"got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None = None,
                drop: torch.Tensor | None = None, s: torch.Tensor | None = None) -> torch.Tensor:
        """s: target time of a consistency-trajectory jump (needs cfg.target_time); None = -1, the clean end."""
        cfg = self.cfg
        self.check_input(x)
        b = x.shape[0]
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
                raise ValueError("this model has no target-time embedding (target_time is False)")
            return None
        s = torch.as_tensor(-1.0 if s is None else s, device=device).float()
        return s.expand(b) if s.dim() == 0 or s.numel() == 1 else s

    def _cond_vector(self, t, cond, drop, s, width: int, b: int, x: torch.Tensor) -> torch.Tensor:
        """Time + tags (+ CTD target time) -> one [B, width] conditioning vector."""
        c = self.t_mlp(timestep_embedding(t, width).to(x.dtype)) + self.embed_cond(cond, drop, b, x.device).to(x.dtype)
        if s is not None:
            c = c + self.s_mlp(timestep_embedding(s, width).to(x.dtype))
        return c

    def _net(self, x, t, cond, drop, s=None) -> torch.Tensor:
        raise NotImplementedError

    # -- latent models -----------------------------------------------------------
    # A latent diffusion model is a denoiser with a MelAutoencoder attached: it denoises latents,
    # and `decode` maps its samples to the mel that controls, vocoders and metrics read.
    def attach_autoencoder(self, ae: nn.Module) -> None:
        self.autoencoder = ae

    @property
    def ae(self):
        return self._modules.get("autoencoder")

    @property
    def frames_per_step(self) -> int:
        """Mel frames per frame of the denoised tensor (1 for a mel model)."""
        return 1 if self.ae is None else self.ae.cfg.downsample

    @property
    def mel_bins(self) -> int:
        return self.cfg.n_mels if self.ae is None else self.ae.cfg.n_mels

    def decode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample of this model -> scaled log-mel in [-1, 1] (differentiable). generator: the
        autoencoder's texture noise (None: a fixed seed)."""
        return (x if self.ae is None else self.ae.decode(x, generator)).clamp(-1, 1)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """A scaled log-mel -> what this model denoises (the identity for a mel model)."""
        return mel if self.ae is None else self.ae.encode(mel)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
