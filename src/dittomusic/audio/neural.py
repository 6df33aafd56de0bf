"""A neural vocoder trained here: ConvNeXt over mel frames with an iSTFT head (the Vocos design).

The network never upsamples in time: it stays at the mel frame rate and predicts, per frame, an
STFT row at the same hop (256), which an inverse STFT turns into audio. That keeps it cheap on a
CPU (no transposed convolutions at audio rate) and differentiable from the waveform back to the mel.

Phase (measured on val renders, docs/vocoder/training_log.md). A learned phase did not come within
this project's CPU budget: trained through the waveform (session 28's recurrent head), the head
predicted magnitudes with spectral convergence 0.99 against the truth whose phases cancelled in the
overlap-add; with its spectrum supervised directly (`SpectrumLoss`), its phase steps across bins stayed
uniformly random (a partial's true steps concentrate at pi, resultant 0.81; the net's 0.005). With the
*true* magnitude, phase locking (audio/phase.py) plus 16 Griffin-Lim projections gives a mel spectral
convergence of 0.042, against 0.114 for the shipped Griffin-Lim from the mel. So the default head
(`phase="locked"`) learns only the magnitude, a well-posed regression from the mel (trained on the
magnitude alone, no inverse STFT in the loop), and takes its phase from the predicted magnitude's
partials. The learned heads remain for comparison: `phase="direct"` (Vocos: per frame; it can only
sustain tones whose advance per hop is a whole turn, multiples of sr/hop = 86 Hz) and
`phase="recurrent"` (the phase carried frame to frame, z_t = normalize(g_t * exp(i * 2*pi*hop/n_fft *
(k + u_t)) * z_{t-1} + (1 - g_t) * exp(i * phi_t)) per bin k, with a predicted frequency offset u,
local phase phi and gate g).

Magnitude. The head predicts log-magnitude as a correction to the mel's pseudo-inverse at its own
resolution (`magnitude_prior`, as FreeV starts from it): training begins with the right spectral
envelope instead of learning it. A small model (width 64, 3 blocks) trained 150 steps ended with a
45 % lower loss (mel L1 0.51 vs 1.20, spectral convergence 0.44 vs 0.90) than one learning it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from dittomusic.audio.mel import MelConfig
from dittomusic.audio.phase import griffin_lim, locked_phase, to_stft_phase
from dittomusic.errors import DittoError

PHASES = ("locked", "recurrent", "direct")
PRIORS = ("spread", "pinv")
# mel settings a vocoder must share with the mels it is given
MEL_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "db_max", "db_range")


@dataclass
class VocoderConfig:
    n_mels: int = 160
    sample_rate: int = 22050
    hop_length: int = 256
    n_fft: int = 2048  # of the iSTFT head: the mel's own window (8x overlap at hop 256)
    dim: int = 256
    intermediate: int = 768
    layers: int = 8
    kernel: int = 7
    layer_scale: float | None = None  # None: 1 / layers, as Vocos
    phase: str = "locked"  # "locked": from the predicted magnitude (audio/phase.py); "recurrent"; "direct" (Vocos)
    gl_iters: int = 16  # "locked": Griffin-Lim projections after phase locking
    # "locked": each projection also moves the magnitude this far (0-1) towards the input mel's band
    # energies (audio/phase.griffin_lim's mel_match); 0 keeps the magnitudes fixed, as files before session 32.
    # None: 0.5 when the head's STFT is the mel's own, else 0 (measured on a rendered chorale with an untrained
    # head: at n_fft 2048 and 1024 it halves the mel error, at 512 it makes it worse, 0.44 -> 0.50)
    mel_match: float | None = None
    # "locked": fast Griffin-Lim's momentum (Perraudin et al. 2013) in those projections; 0 is plain Griffin-Lim
    gl_momentum: float = 0.0
    magnitude_prior: bool = True  # predict log-magnitude as a correction to a magnitude estimated from the mel
    # that estimate: "spread" (each band's power density spread over its bins, never negative) or "pinv"
    # (the mel basis's pseudo-inverse; files from before session 32, whose config names no prior)
    prior: str = "spread"
    mel: dict | None = None  # the MelConfig the input mels follow (MEL_KEYS)

    def __post_init__(self):
        # a Hann window needs at least 2x overlap for the inverse STFT to be defined everywhere
        if self.n_fft < 2 * self.hop_length:
            raise DittoError(f"the vocoder's n_fft {self.n_fft} must be at least twice the hop ({self.hop_length})")
        if self.phase not in PHASES:
            raise DittoError(f"the vocoder's phase head is one of {', '.join(PHASES)}, not {self.phase!r}")
        if self.mel_match is not None and not 0.0 <= self.mel_match <= 1.0:
            raise DittoError(f"the vocoder's mel_match step is between 0 and 1, not {self.mel_match}")
        if not 0.0 <= self.gl_momentum < 1.0:
            raise DittoError(f"the vocoder's gl_momentum is at least 0 and below 1, not {self.gl_momentum}")
        if self.prior not in PRIORS:
            raise DittoError(f"the vocoder's magnitude prior is one of {', '.join(PRIORS)}, not {self.prior!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VocoderConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DittoError(f"unknown vocoder config keys {sorted(unknown)}: a checkpoint from a newer dittomusic?")
        # files from before session 32 name neither: the pseudo-inverse prior and fixed magnitudes
        return cls(**{"prior": "pinv", "mel_match": 0.0, **d})

    @classmethod
    def for_mel(cls, mel: MelConfig, **kw) -> "VocoderConfig":
        return cls(n_mels=mel.n_mels, sample_rate=mel.sample_rate, hop_length=mel.hop_length,
                   mel={k: getattr(mel, k) for k in MEL_KEYS}, **kw)

    def check_mel(self, mel: MelConfig) -> None:
        """Refuse mels this vocoder was not trained on (another rate, hop, bin count or dB window)."""
        mine = self.mel or {"n_mels": self.n_mels, "sample_rate": self.sample_rate, "hop_length": self.hop_length}
        diff = [k for k, v in mine.items() if getattr(mel, k) != v]
        if diff:
            raise DittoError("the vocoder was trained on other mels (" + ", ".join(
                f"{k} {mine[k]} vs {getattr(mel, k)}" for k in diff) + "); use --vocoder griffinlim or retrain it")


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int, kernel: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C]
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        return x + self.gamma * self.pw2(self.act(self.pw1(self.norm(h))))


class ISTFTHead(nn.Module):
    """Per frame: log-magnitude and phase of an STFT bin row -> audio by inverse STFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, phase: str = "locked", gl_iters: int = 16,
                 gl_momentum: float = 0.0):
        super().__init__()
        self.n_fft, self.hop, self.phase, self.gl_iters, self.gl_momentum = n_fft, hop_length, phase, gl_iters, gl_momentum
        bins = n_fft // 2 + 1
        self.parts = {"locked": 1, "recurrent": 4, "direct": 2}[phase]
        self.proj = nn.Linear(dim, bins * self.parts)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # phase advance per frame of each bin's centre frequency
        self.register_buffer("bin_advance", torch.arange(bins) * (2 * torch.pi * hop_length / n_fft),
                             persistent=False)

    def _carry(self, u: torch.Tensor, phi: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The recurrence over frames: unit phasors [B, bins, T]."""
        adv = self.bin_advance[:, None] + u * (2 * torch.pi * self.hop / self.n_fft)
        g = torch.sigmoid(gate)
        # time-major, so each step reads a contiguous slice; complex ops keep the loop to two per frame
        a = torch.polar(g, adv).permute(2, 0, 1).contiguous()
        b = torch.polar(1 - g, phi).permute(2, 0, 1).contiguous()
        z = torch.polar(torch.ones_like(phi[..., 0]), phi[..., 0])  # frame 0 starts from its local phase
        out = [z]
        for t in range(1, a.shape[0]):
            z = torch.sgn(torch.addcmul(b[t], a[t], z))  # back to the unit circle every frame
            out.append(z)
        return torch.stack(out, -1)

    def magnitude(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, dim] (+ prior log-magnitude [B, bins, T]) -> linear magnitude [B, bins, T]."""
        logmag = self.proj(x).transpose(1, 2)[:, : self.n_fft // 2 + 1]
        logmag = logmag if prior is None else logmag + prior
        # a full-scale sine peaks at n_fft / 4: the clamp leaves 4x headroom and stops an untrained net's overflow
        return logmag.exp().clamp(max=float(self.n_fft))

    def spectrum(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, dim] (+ prior log-magnitude [B, bins, T]) -> complex STFT [B, n_fft//2+1, T]
        ("locked": before the Griffin-Lim refinement, which `forward` applies)."""
        if self.phase == "locked":
            mag = self.magnitude(x, prior)
            return torch.polar(mag, to_stft_phase(locked_phase(mag, self.n_fft, self.hop)))
        parts = self.proj(x).transpose(1, 2).chunk(self.parts, dim=1)
        logmag = parts[0] if prior is None else parts[0] + prior
        mag = logmag.exp().clamp(max=float(self.n_fft))
        if self.phase == "recurrent":
            return mag * self._carry(parts[2], parts[1], parts[3])
        return torch.complex(mag * torch.cos(parts[1]), mag * torch.sin(parts[1]))

    def synthesize(self, spec: torch.Tensor, mel_match: tuple | None = None) -> torch.Tensor:
        """The spectrum -> audio. center=True: output sample 0 sits at frame 0's centre, (T - 1) * hop samples
        in all, the same length and alignment as Griffin-Lim and as the mels' own STFT. `mel_match`: see
        `griffin_lim` (locked heads only)."""
        if self.phase == "locked" and self.gl_iters:
            return griffin_lim(spec.abs(), spec.angle(), self.n_fft, self.hop, self.gl_iters, self.gl_momentum,
                               window=self.window, mel_match=mel_match)
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesize(self.spectrum(x, prior))


class ConvNeXtVocoder(nn.Module):
    """Scaled log-mel [B, n_mels, T] in [-1, 1] -> audio [B, (T - 1) * hop]."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        scale = cfg.layer_scale if cfg.layer_scale is not None else 1.0 / cfg.layers
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel, padding=cfg.kernel // 2)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.intermediate, cfg.kernel, scale)
                                    for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, cfg.hop_length, cfg.phase, cfg.gl_iters, cfg.gl_momentum)
        self.apply(self._init)
        if cfg.phase == "recurrent":
            with torch.no_grad():  # start by carrying the phase (g = 0.95): coherent bin-centre tones
                self.head.proj.bias[3 * (cfg.n_fft // 2 + 1):] = 3.0
        if cfg.magnitude_prior:
            self.register_buffer("prior_matrix", self._prior_matrix(cfg), persistent=False)
        mel = self._mel_config(cfg)
        own_stft = (cfg.n_fft, cfg.hop_length) == (mel.n_fft, mel.hop_length)
        self.mel_step = cfg.mel_match if cfg.mel_match is not None else (0.5 if own_stft else 0.0)
        self.matches_mel = cfg.phase == "locked" and cfg.gl_iters > 0 and self.mel_step > 0
        if self.matches_mel:
            self.mel_stft = None if own_stft else mel
            basis = torch.from_numpy(mel.mel_basis())
            self.register_buffer("mel_basis", basis, persistent=False)
            # head bin <- the bands that cover its frequency (weights normalised; bins no band covers: none)
            weight = self._at_head_bins(basis.T.double(), cfg, mel)
            self.register_buffer("mel_spread", (weight / weight.sum(1, keepdim=True).clamp_min(1e-12)).float(),
                                 persistent=False)

    @staticmethod
    def _at_head_bins(per_bin: torch.Tensor, cfg: VocoderConfig, mel: MelConfig) -> torch.Tensor:
        """Rows indexed by the mel's STFT bins -> rows at the head's bin frequencies (linear interpolation)."""
        pos = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * (mel.n_fft / cfg.n_fft)
        lo = pos.floor().long().clamp(max=per_bin.shape[0] - 1)
        hi = (lo + 1).clamp(max=per_bin.shape[0] - 1)
        w = (pos - lo)[:, None]
        return (1 - w) * per_bin[lo] + w * per_bin[hi]

    def _mel_of(self, wav: torch.Tensor, rebuilt: torch.Tensor) -> torch.Tensor:
        if self.mel_stft is not None:  # the head's STFT is not the mel's: take the audio's own
            m = self.mel_stft
            rebuilt = torch.stft(wav, m.n_fft, m.hop_length, window=torch.hann_window(m.n_fft, device=wav.device),
                                 center=True, pad_mode="constant", return_complex=True)
        return torch.matmul(self.mel_basis, rebuilt.real.square() + rebuilt.imag.square())  # 5x faster than abs()^2

    @staticmethod
    def _prior_matrix(cfg: VocoderConfig) -> torch.Tensor:
        """Mel power -> the head's linear power, read at the head's bin frequencies and rescaled from the
        mel's window to the head's (per-bin power grows with the window length, so the scale is that of a
        power density: measured on rendered music it keeps the energy within 16 %).

        "spread": each bin gets the weighted mean of its bands' power densities (band power over the band's
        filter area). Never negative. "pinv": the pseudo-inverse, whose negative lobes clamp to the floor:
        on test renders 15 % of a trained head's bins sat at that floor (1e-5) where the render had energy,
        and a clamped log-magnitude loss gave them no gradient (docs/vocoder/training_log.md, session 32)."""
        mel = ConvNeXtVocoder._mel_config(cfg)
        basis = torch.from_numpy(mel.mel_basis()).double()  # [n_mels, mel bins' STFT]
        if cfg.prior == "pinv":
            inv = torch.linalg.pinv(basis)  # [mel bins' STFT, n_mels]
        else:
            density = 1.0 / basis.sum(1).clamp_min(1e-12)  # band power -> power per STFT bin
            weight = basis.T.clone()
            # bins no filter covers (DC, the top) borrow their nearest band
            empty = weight.sum(1) == 0
            if empty.any():
                centre = (basis * torch.arange(basis.shape[1], dtype=basis.dtype)).sum(1) / basis.sum(1).clamp_min(1e-12)
                near = (torch.arange(basis.shape[1], dtype=basis.dtype)[empty, None] - centre[None]).abs().argmin(1)
                weight[empty] = 0.0
                weight[empty.nonzero()[:, 0], near] = 1.0
            inv = weight / weight.sum(1, keepdim=True) * density[None]
        return (ConvNeXtVocoder._at_head_bins(inv, cfg, mel) * (cfg.n_fft / mel.n_fft)).float()

    @staticmethod
    def _mel_config(cfg: VocoderConfig) -> MelConfig:
        return MelConfig(**(cfg.mel or {"n_mels": cfg.n_mels, "sample_rate": cfg.sample_rate,
                                        "hop_length": cfg.hop_length}))

    def mel_power(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] scaled log-mel -> linear mel power."""
        m = self.cfg.mel or {}
        db_max, db_range = m.get("db_max", 40.0), m.get("db_range", 160.0)
        db = (mel.clamp(-1, 1) + 1) * 0.5 * db_range + db_max - db_range
        return torch.pow(10.0, db / 10)

    def prior_logmag(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] scaled log-mel -> [B, head bins, T] natural-log magnitude estimate."""
        power = torch.matmul(self.prior_matrix, self.mel_power(mel))
        return 0.5 * power.clamp_min(1e-10).log()

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.embed(mel).transpose(1, 2))
        for b in self.blocks:
            x = b(x)
        return self.norm_out(x)

    def _check(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.shape[-1] < 2:
            raise DittoError(f"the vocoder needs at least 2 mel frames, got {mel.shape[-1]}")
        return mel.reshape(-1, *mel.shape[-2:])

    def magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] -> the head's linear STFT magnitude [B, n_fft // 2 + 1, T] (what "locked" learns)."""
        mel = self._check(mel)
        return self.head.magnitude(self.features(mel), self.prior_logmag(mel) if self.cfg.magnitude_prior else None)

    def forward(self, mel: torch.Tensor, return_spectrum: bool = False, magnitude_only: bool = False):
        """Audio; with `return_spectrum`, (audio, the head's complex spectrum [B, n_fft//2+1, T]) for
        losses that supervise the spectrum before the inverse STFT; with `magnitude_only`, just the head's
        magnitude (what a "locked" head learns; through forward so that DDP syncs its gradients)."""
        if magnitude_only:
            return self.magnitude(mel)
        shape = mel.shape[:-2]
        mel = self._check(mel)
        prior = self.prior_logmag(mel) if self.cfg.magnitude_prior else None
        spec = self.head.spectrum(self.features(mel), prior)
        match = (self._mel_of, self.mel_spread, self.mel_power(mel), self.mel_step) if self.matches_mel else None
        wav = self.head.synthesize(spec, match)
        wav = wav.reshape(*shape, wav.shape[-1])
        return (wav, spec) if return_spectrum else wav


INFERENCE_KEYS = ("gl_iters", "mel_match", "gl_momentum")  # settings a trained vocoder may run with other values of


def with_synthesis(config: dict, synthesis: dict | None) -> VocoderConfig:
    """A trained vocoder's config with other values of the settings training never used (INFERENCE_KEYS)."""
    bad = sorted(set(synthesis or {}) - set(INFERENCE_KEYS))
    if bad:
        raise DittoError(f"a trained vocoder can only change {', '.join(INFERENCE_KEYS)}, not {bad}")
    return VocoderConfig.from_dict({**VocoderConfig.from_dict(config).to_dict(), **(synthesis or {})})


def load_vocoder(path: str | Path, device: str | torch.device | None = None,
                 **inference) -> tuple[ConvNeXtVocoder, dict]:
    """A ConvNeXtVocoder (fp32, eval, frozen) from a release file or a training run's checkpoint (its EMA).
    `inference`: other values of the synthesis settings that training never saw (INFERENCE_KEYS)."""
    from dittomusic.checkpoint import load_tensors
    from dittomusic.utils import resolve_device

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    tensors, meta = load_tensors(path)
    if "vocoder_config" not in meta:
        raise DittoError(f"{path} carries no vocoder config: not a dittomusic vocoder checkpoint")
    if any(k.startswith("ema.") for k in tensors):  # a training checkpoint
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    net = ConvNeXtVocoder(with_synthesis(meta["vocoder_config"], inference))
    try:
        net.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as e:
        raise DittoError(f"{path} does not match its own vocoder config: {str(e)[:300]}") from None
    return net.to(resolve_device(device)).eval().requires_grad_(False), meta
