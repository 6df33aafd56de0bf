"""dittomusic's own networks as a Backend: a tag-conditioned `Denoiser` over mels (the bundled
MelDiT) or over the latents of an attached MelAutoencoder (a latent diffusion model)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

from .base import BackendBase


class DenoiserBackend(BackendBase):
    """model: a loaded Denoiser (eval mode, no grad), with or without an autoencoder."""

    def __init__(self, model, vocoder: Callable[[Tensor], Tensor] | None = None, schedule=None,
                 model_file: Path | None = None):
        from dittomusic.sampling.schedule import NoiseSchedule

        self.model = model
        self.model_file = model_file  # what a distilled student records as its teacher
        self._digest: str | None = None
        self.device = next(model.parameters()).device
        self.vocab = model.cfg.vocab
        self.schedule = schedule or NoiseSchedule.cosine()
        self.prediction = model.cfg.prediction
        self.frames_per_step = model.frames_per_step
        self.frame_multiple = model.frames_per_step * model.cfg.frame_multiple
        # dynamic thresholding assumes data in [-1, 1]: a mel, not a latent
        self.thresholding = model.ae is None
        self.mel_cfg = MelConfig(n_mels=model.mel_bins, clip_frames=model.cfg.clip_frames * model.frames_per_step)
        self.clip_frames = self.mel_cfg.clip_frames
        self.vocoder = vocoder
        # "bf16": the network and decoder run under bfloat16 autocast (outputs back in fp32, sampler arithmetic
        # fp32): generation on hardware with native bf16 (`Pipeline(precision=)`); controls keep fp32
        self.precision = "fp32"

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @property
    def model_digest(self) -> str:
        """sha1 of the model file: what a distilled student records as its teacher."""
        if self._digest is None:
            from dittomusic.utils import file_sha1

            if self.model_file is None:
                raise DittoError("this model was not loaded from a file, so it has no digest to match a student to")
            self._digest = file_sha1(self.model_file)
        return self._digest

    @property
    def is_latent(self) -> bool:
        return self.frames_per_step > 1 or self.model.ae is not None

    def frames_for(self, seconds: float | None) -> int:
        """Mel frames of a clip of about `seconds` that the model can denoise (whole latent frames,
        a multiple of the architecture's frame multiple)."""
        if seconds is None:
            return self.clip_frames
        p = self.model.cfg.frame_multiple
        if not 1.0 <= seconds <= 60.0:
            raise DittoError(f"--seconds {seconds:g} is out of range; give 1-60 s (the model was trained on "
                             f"{self.mel_cfg.clip_seconds:.2f} s clips)")
        per = self.mel_cfg.frame_rate / self.frames_per_step
        return max(p, int(round(seconds * per / p)) * p) * self.frames_per_step

    def latent_shape(self, frames: int) -> tuple[int, int]:
        return self.model.cfg.n_mels, self.latent_frames(frames)

    def noise(self, n: int, frames: int, seed: int) -> Tensor:
        # drawn on the CPU so a seed gives the same x_T on every device
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, *self.latent_shape(frames), generator=g).to(self.device)

    def parse_prompt(self, caption: str | None = None, collection=None, instruments=None, tempo=None, mode=None,
                     unconditional: bool = False):
        """Tags from a caption's keywords, explicit tag options overriding them (None: unconditional)."""
        from dittomusic.generate import tags_from_options

        return tags_from_options(self.vocab, caption, collection, instruments, tempo, mode, unconditional)

    def describe_prompt(self, tags) -> str:
        return f"tags: {tags.describe() if tags else 'unconditional'}"

    def make_cond(self, tags, n: int) -> dict[str, Tensor] | None:
        """Batched tag tensors; None when no row has any tag (the unconditional pass).
        tags: one Tags for the whole batch, one per row, or None."""
        from dittomusic.generate import Tags, cond_tensors

        rows = tags if isinstance(tags, list) else [tags] * n
        if len(rows) != n:
            raise DittoError(f"got {len(rows)} tag sets for a batch of {n}")
        if all(t is None or not (t.collection or t.instruments or t.tempo or t.mode) for t in rows):
            return None
        per_row = [cond_tensors(t or Tags(), self.vocab, 1, self.device) for t in rows]
        return {k: torch.cat([c[k] for c in per_row]) for k in per_row[0]}

    def model_fn(self, cond, guidance: float):
        from dittomusic.sampling.guidance import cfg_model_fn

        fn = cfg_model_fn(self.model, cond, guidance)
        if self.precision == "fp32":
            return fn

        def model_fn(x: Tensor, t: Tensor) -> Tensor:
            with self._autocast():
                return fn(x, t).float()
        return model_fn

    def decode(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with self._autocast():
            return self.model.decode(x0, generator).float()

    def encode(self, mel: Tensor) -> Tensor:
        return self.model.encode(mel)
