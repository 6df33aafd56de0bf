"""The Backend protocol: all that control methods and controls see of a diffusion model.

A backend denoises some tensor x (a mel, or a latent of one) and knows how to turn its samples
into the mel the controls read:

    x_T = backend.noise(n, frames, seed)                 # [n, *backend.latent_shape(frames)]
    cond = backend.make_cond(prompt, n)                   # tags for dittomusic's models, text for others
    fn = backend.model_fn(cond, guidance)                 # ModelFn for the samplers (CFG inside)
    x0 = sample_ddim(fn, x_T, backend.schedule, steps, prediction=backend.prediction,
                     thresholding=backend.thresholding)
    mel = backend.decode(x0)                              # [n, mel_cfg.n_mels, frames], differentiable

`frames` always counts mel frames (what targets and masks are built on); `latent_shape` and
`frames_to_latent` map them to the denoised tensor, whose time axis is `time_dim`. `decode`
returns the scaled log-mel of `mel_cfg` (dB window [db_min, db_max] mapped to [-1, 1]), so the
features read the backend's own sample rate, mel bins and dB range. A mel-space model has the
identity (plus clamping) as decode/encode and frames_to_latent.

A diffusers AudioLDM-style pipeline fits as: latent [8, T/4, 16] with time_dim -2 and
frames_per_step 4, parse_prompt = the caption text, make_cond = its text-encoder embeddings (and
the negative prompt's), model_fn = CFG around UNet2DConditionModel, schedule / prediction from its
scheduler, decode = VAE decode, then its log-mel mapped to mel_cfg's dB scale and transposed to
[n_mels, T] (encode the reverse), thresholding False, vocoder = its HiFi-GAN. It registers itself
in backends/ (register_backend) and the CLI opens it with --backend NAME:PATH.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError
from dittomusic.sampling.names import STOCHASTIC_SAMPLERS, THRESHOLDING_SAMPLERS
from dittomusic.sampling.samplers import ModelFn
from dittomusic.sampling.schedule import NoiseSchedule



def sampler_kwargs(name: str, thresholding: bool = True) -> dict:
    """DITTO samples with DDIM + dynamic thresholding; the sigma-space samplers have no thresholding."""
    return {"thresholding": thresholding} if name in THRESHOLDING_SAMPLERS else {}


@runtime_checkable
class Backend(Protocol):
    """What a diffusion model must offer to be steered (see the module docstring)."""

    mel_cfg: MelConfig  # the mel decode() returns: sample rate, hop, n_mels, dB window
    schedule: NoiseSchedule
    prediction: str  # "v_prediction" or "epsilon"
    thresholding: bool  # dynamic thresholding applies: samples live in [-1, 1] (a mel, not a latent)
    time_dim: int  # the time axis of a denoised tensor x [B, ...] (negative)
    clip_frames: int  # default clip length, mel frames
    frame_multiple: int  # clip lengths (mel frames) must be a multiple of this
    device: torch.device
    vocoder: Callable[[Tensor], Tensor]  # mel [B, n_mels, F] -> audio [B, samples]

    def frames_for(self, seconds: float | None) -> int: ...  # a clip length in mel frames the model can make

    def latent_shape(self, frames: int) -> tuple[int, ...]: ...  # one item's x_T for `frames` mel frames

    def noise(self, n: int, frames: int, seed: int) -> Tensor: ...

    def parse_prompt(self, caption: str | None = None, **tags) -> Any: ...  # the CLI's caption/tag options -> prompt

    def describe_prompt(self, prompt: Any) -> str: ...  # one line for the log

    def make_cond(self, prompt: Any, n: int) -> Any: ...

    def model_fn(self, cond: Any, guidance: float) -> ModelFn: ...

    def decode(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor: ...  # denoised tensor ->
    # scaled log-mel, differentiable; generator: any noise the decoder draws (None: a fixed seed)

    def encode(self, mel: Tensor) -> Tensor: ...  # scaled log-mel -> denoised tensor

    def frames_to_latent(self, idx: Tensor) -> Tensor: ...  # mel frame indices -> latent time indices

    def sample(self, x_T: Tensor, cond: Any, *, sampler: str = "ddim", steps: int = 20, guidance: float = 3.0,
               checkpoint: bool = False, callback=None,
               generator: torch.Generator | None = None) -> Tensor: ...  # x_T -> decoded mel


class BackendBase:
    """Shared parts of a Backend whose latent frames each cover `frames_per_step` mel frames."""

    mel_cfg: MelConfig
    schedule: NoiseSchedule
    prediction: str = "v_prediction"
    thresholding: bool = True
    time_dim: int = -1
    frames_per_step: int = 1
    frame_multiple: int = 1

    def frames_to_latent(self, idx: Tensor) -> Tensor:
        """Latent frames all of whose mel frames are in idx (sorted): a latent frame is painted
        only where the whole of it is matched, so a mask never reaches into new material."""
        d = self.frames_per_step
        if d == 1:
            return idx
        idx = torch.as_tensor(idx).long()
        lat, counts = torch.unique(torch.div(idx, d, rounding_mode="floor"), return_counts=True)
        return lat[counts == d]

    def latent_frames(self, frames: int) -> int:
        if frames % self.frames_per_step:
            raise DittoError(f"{frames} mel frames do not fill whole latent frames of {self.frames_per_step}")
        if frames % self.frame_multiple:
            raise DittoError(f"a clip of {frames} mel frames: this model takes multiples of {self.frame_multiple}")
        return frames // self.frames_per_step

    def sample(self, x_T: Tensor, cond: Any, *, sampler: str = "ddim", steps: int = 20, guidance: float = 3.0,
               checkpoint: bool = False, callback=None, generator: torch.Generator | None = None) -> Tensor:
        """x_T -> generated mel (decoded, for a latent model). Differentiable in x_T: the caller
        chooses no_grad or not. generator: a stochastic sampler's (ddpm) noise, then the decoder's
        (texture noise); None: the global RNG for ddpm (only a seeded generator repeats a ddpm
        sample) and a fixed seed for the decoder."""
        from dittomusic.sampling.samplers import get_sampler

        kw = sampler_kwargs(sampler, thresholding=self.thresholding)
        if generator is not None and sampler in STOCHASTIC_SAMPLERS:
            kw["generator"] = generator
        x0 = get_sampler(sampler)(self.model_fn(cond, guidance), x_T, self.schedule, steps,
                                  prediction=self.prediction, checkpoint=checkpoint, callback=callback, **kw)
        return self.decode(x0, generator)


def along_time(backend: Backend, x: Tensor) -> Tensor:
    """A view of x with the backend's time axis last: index it with [..., latent_idx] (writes
    go through to x)."""
    return x if backend.time_dim == -1 else x.movedim(backend.time_dim, -1)
