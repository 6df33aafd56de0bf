"""A diffusers text-to-audio pipeline as a Backend: AudioLDM, MusicLDM and AudioLDM2.

These pipelines share one design: a UNet2DConditionModel denoises the AutoencoderKL latent of a
log-mel image [1, T, n_mels] (time is the image's height), text conditions it, and a
SpeechT5HifiGan vocoder turns the log-mel into audio. DITTO needs none of the pipeline's
`__call__`: dittomusic's own samplers (pure, differentiable, checkpointed) run the UNet through
`model_fn`, with the noise schedule read off the pipeline's scheduler (its betas'
alphas_cumprod) and its prediction type.

    backend = open_backend("diffusers:/models/musicldm", device="cuda")  # or DiffusersBackend.from_pretrained
    cond = backend.make_cond(backend.parse_prompt("solo piano, slow"), n=1)  # or make_cond("solo piano, slow", 1)
    mel = backend.sample(backend.noise(1, backend.clip_frames, seed=0), cond, steps=50, guidance=2.5)
    audio = backend.vocoder(mel)                          # [1, samples] at backend.mel_cfg.sample_rate

Shapes: x_T is [n, C, frames / f, n_mels / f] (f = the VAE's downsampling, 4 on the released
models), so `time_dim` is -2. `decode` returns [n, n_mels, frames] on dittomusic's scaled-mel
convention (dB window mapped to [-1, 1]), so the controls' features read the pipeline's own
sample rate, hop and mel bins from `mel_cfg`.

The mel scale. The pipelines' mel is ln(max(mel_basis @ |STFT|, 1e-5)): the natural log of a
Slaney *magnitude* mel (AudioLDM's `spectral_normalize`), 16 kHz, n_fft 1024, hop 160, 64 bins up
to 8 kHz on the released models. dittomusic's mel is 10 log10 of a Slaney *power* mel. No exact
map exists (a band's summed magnitudes, squared, are not its summed powers), so decode takes
v -> 20 log10(e^v) + DB_OFFSET dB, with DB_OFFSET = 14 dB calibrated on AudioLDM's STFT: on
synthetic music (harmonic notes, a crescendo, 0-10 % noise, tests/backends) the intensity
feature of the mapped mel is within +-1 dB of the waveform's RMS curve (sd 0.3-1.1 dB over time),
as the intensity metric measures it. Pure tones read 1-8 dB low (more at high frequencies),
brown noise 14 dB low. Chroma and the MFCC self-similarity ignore a constant dB offset, so only
intensity's absolute level depends on it; pass db_offset= for a model with another STFT. The dB
window is the pipelines' own floor (ln 1e-5 = -100 dB) to ln-mel 4.6 (+40 dB), both shifted by
the offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dittomusic.audio.mel import MelConfig, db_to_unit, unit_to_db
from dittomusic.errors import DittoError
from dittomusic.sampling.schedule import PREDICTIONS, NoiseSchedule

from . import register_backend
from .base import BackendBase

FAMILIES = ("audioldm", "musicldm", "audioldm2")
LN_TO_DB = 20.0 / math.log(10.0)  # ln(magnitude) -> dB of power (magnitude squared)
DB_FLOOR = 20.0 * math.log10(1e-5)  # the pipelines' clamp of the magnitude mel: -100 dB
DB_MAX = 40.0  # ln-mel 4.6: released models' mels stay well below
DB_OFFSET = 14.0  # magnitude-mel dB -> power-mel dB, calibrated on AudioLDM's 16 kHz STFT (module docstring)
MODEL_HELP = ("Download the model on a machine with internet, e.g.\n"
              "    huggingface-cli download cvssp/audioldm-s-full-v2 --local-dir /models/audioldm\n"
              "    huggingface-cli download ucsd-reach/musicldm --local-dir /models/musicldm\n"
              "    huggingface-cli download cvssp/audioldm2-music --local-dir /models/audioldm2-music\n"
              "copy the folder here and pass --backend diffusers:/models/musicldm. dittomusic never downloads "
              "weights; the folder needs model_index.json and .safetensors weights.")


def pipeline_mel_config(sample_rate: int, hop: int, n_mels: int, clip_frames: int,
                        db_offset: float = DB_OFFSET) -> MelConfig:
    """dittomusic's MelConfig for a pipeline's mel: its rate, hop and bins; AudioLDM's STFT (n_fft
    1024 at hop 160, 2048 at hop 480 for the 48 kHz models, else the power of two nearest 6.4 hops)."""
    n_fft = {160: 1024, 480: 2048}.get(hop, 2 ** round(math.log2(hop * 6.4)))
    return MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=0.0, fmax=None,
                     db_max=DB_MAX + db_offset, db_range=DB_MAX - DB_FLOOR, clip_frames=clip_frames)


def ln_mel_to_unit(ln: Tensor, cfg: MelConfig, db_offset: float = DB_OFFSET) -> Tensor:
    """The pipeline's ln magnitude mel -> dittomusic's scaled power mel (same layout)."""
    return db_to_unit(ln * LN_TO_DB + db_offset, cfg)


def unit_to_ln_mel(mel: Tensor, cfg: MelConfig, db_offset: float = DB_OFFSET) -> Tensor:
    return (unit_to_db(mel, cfg) - db_offset) / LN_TO_DB


def family_of(pipe) -> str:
    """Which conditioning a pipeline uses: "audioldm2" (CLAP + T5/VITS through a GPT-2 language model,
    cross-attention), "audioldm" (ClapTextModelWithProjection) or "musicldm" (ClapModel): the
    latter two feed the L2-normalized CLAP text embedding to the UNet as its class embedding."""
    comps = getattr(pipe, "components", {})
    needed = ("unet", "vae", "vocoder", "text_encoder", "tokenizer", "scheduler")
    missing = [k for k in needed if comps.get(k) is None]
    if missing:
        raise DittoError(f"{type(pipe).__name__} is not an AudioLDM/MusicLDM/AudioLDM2-style pipeline "
                         f"(no {', '.join(missing)})")
    if comps.get("language_model") is not None and hasattr(pipe, "encode_prompt"):
        if type(comps.get("text_encoder_2")).__name__ == "VitsModel":
            raise DittoError("AudioLDM2 text-to-speech pipelines (VITS text encoder, conditioned on a transcription) "
                             "are not supported; use a text-to-audio/music AudioLDM2 (T5 text encoder)")
        return "audioldm2"
    enc = type(comps["text_encoder"]).__name__
    if enc == "ClapTextModelWithProjection":
        return "audioldm"
    if enc == "ClapModel":
        return "musicldm"
    raise DittoError(f"{type(pipe).__name__} has a {enc} text encoder; the diffusers backend knows AudioLDM "
                     "(ClapTextModelWithProjection), MusicLDM (ClapModel) and AudioLDM2 pipelines")


@dataclass(frozen=True)
class Prompt:
    """A prompt with its negative prompt, as one value (what run_control hands make_cond)."""

    text: str | list[str] | None
    negative: str | list[str] | None = None


@dataclass
class TextCond:
    """make_cond's result: UNet keyword arguments for the prompt (cond, None for an unconditional
    run) and for the negative/empty prompt (uncond), each batched [n, ...]."""

    n: int
    uncond: dict[str, Any]
    cond: dict[str, Any] | None = None
    prompts: list[str] = field(default_factory=list)


def _rows(kw: dict[str, Any], n: int) -> dict[str, Any]:
    """Every tensor of kw with batch n (a batch-1 cond is broadcast to n rows)."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, Tensor):
            if v.shape[0] == 1 and n > 1:
                v = v.expand(n, *v.shape[1:])
            elif v.shape[0] != n:
                raise DittoError(f"the text condition has {v.shape[0]} rows, the latent batch {n}: call "
                                 "make_cond(prompt, n) with n the batch size")
        out[k] = v
    return out


def _cat(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: torch.cat([a[k], b[k]]) if isinstance(a[k], Tensor) else a[k] for k in a}


def _lm_generate(language_model, inputs_embeds: Tensor, max_new_tokens: int | None = 8, attention_mask=None,
                 **_) -> Tensor:
    """AudioLDM2's generate_language_model without transformers' generation utilities (GPT2Model has
    none since transformers 5): greedy hidden-state continuation, the whole prefix re-run each step
    (no KV cache; 8 tokens). Same positions and attention mask as the cached loop."""
    n = max_new_tokens if max_new_tokens is not None else language_model.config.max_new_tokens
    x = inputs_embeds
    for _ in range(n):
        out = language_model(inputs_embeds=x, attention_mask=attention_mask, use_cache=False,
                             output_hidden_states=True, return_dict=True)
        x = torch.cat([x, out.hidden_states[-1][:, -1:, :]], dim=1)
        if attention_mask is not None:
            ones = attention_mask.new_ones((attention_mask.shape[0], 1))
            attention_mask = torch.cat([attention_mask, ones], dim=-1)
    return x[:, -n:, :]


class DiffusersBackend(BackendBase):
    """pipe: a loaded AudioLDMPipeline / MusicLDMPipeline / AudioLDM2Pipeline (or one built from
    components). Its modules are put in eval mode with requires_grad off, so DITTO's gradients
    reach x_T only. mel_cfg: override the inferred mel configuration (n_fft, fmax) for a model
    trained on other STFT settings than AudioLDM's; db_offset: the magnitude-to-power calibration
    (module docstring)."""

    thresholding = False  # latents are not in [-1, 1]
    time_dim = -2
    takes_text = True  # conditioned on text: parse_prompt takes --caption (and a negative prompt), not tags

    def __init__(self, pipe, device: str | torch.device | None = None, *, mel_cfg: MelConfig | None = None,
                 db_offset: float = DB_OFFSET, source: str | None = None):
        from dittomusic.utils import resolve_device

        self.family = family_of(pipe)
        self.source = source
        self.device = resolve_device(device) if device is None or isinstance(device, str) else torch.device(device)
        pipe = pipe.to(self.device)
        for comp in pipe.components.values():
            if isinstance(comp, nn.Module):
                comp.eval().requires_grad_(False)
        if self.family == "audioldm2" and not hasattr(pipe.language_model, "_update_model_kwargs_for_generation"):
            from functools import partial

            # the pipeline's own generate_language_model needs GenerationMixin (gone from GPT2Model in transformers 5)
            pipe.generate_language_model = partial(_lm_generate, pipe.language_model)
        self.pipe = pipe
        self.unet, self.vae, self.hifigan = pipe.unet, pipe.vae, pipe.vocoder
        self.dtype = self.unet.dtype

        sched = pipe.scheduler
        ac = getattr(sched, "alphas_cumprod", None)
        if ac is None:
            raise DittoError(f"the pipeline's scheduler {type(sched).__name__} has no alphas_cumprod; dittomusic's "
                             "samplers need a DDPM-family (betas) scheduler")
        self.schedule = NoiseSchedule(ac)
        self.prediction = sched.config.get("prediction_type", "epsilon")
        if self.prediction not in PREDICTIONS:
            raise DittoError(f"the pipeline predicts {self.prediction!r}; dittomusic's samplers take {PREDICTIONS}")

        self.frames_per_step = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.latent_channels = int(self.unet.config.in_channels)
        # the UNet halves the latent len(blocks) - 1 times: clips in whole multiples of that
        self.frame_multiple = self.frames_per_step * 2 ** (len(self.unet.config.block_out_channels) - 1)
        voc = self.hifigan.config
        n_mels = int(voc.model_in_dim)
        if n_mels % self.frames_per_step:
            raise DittoError(f"the vocoder's {n_mels} mel bins are not a multiple of the VAE's downsampling "
                             f"{self.frames_per_step}")
        size = self.unet.config.sample_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        frames = int(size) * self.frames_per_step if size else 1024  # no sample_size: 10.24 s at 100 frames/s
        clip = max(self.frame_multiple, frames // self.frame_multiple * self.frame_multiple)
        self.db_offset = float(db_offset)
        if mel_cfg is None:
            mel_cfg = pipeline_mel_config(int(voc.sampling_rate), math.prod(voc.upsample_rates), n_mels, clip,
                                          self.db_offset)
        elif mel_cfg.n_mels != n_mels:
            raise DittoError(f"mel_cfg has {mel_cfg.n_mels} mel bins, the pipeline's vocoder takes {n_mels}")
        self.mel_cfg = mel_cfg
        self.clip_frames = mel_cfg.clip_frames
        self.vocoder = self._vocode

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, **kw) -> "DiffusersBackend":
        """A local diffusers model folder (model_index.json + safetensors). Never downloads."""
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise DittoError(f"no diffusers model folder at {folder}.\n{MODEL_HELP}")
        if not (folder / "model_index.json").is_file():
            raise DittoError(f"{folder} has no model_index.json: not a diffusers pipeline folder.\n{MODEL_HELP}")
        try:
            from diffusers import DiffusionPipeline
        except ImportError as e:
            raise DittoError("the diffusers backend needs the diffusers and transformers packages "
                             "(pip install diffusers transformers)") from e
        try:
            pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                     **({"torch_dtype": dtype} if dtype is not None else {}))
        except Exception as e:  # noqa: BLE001 - any loading failure becomes one clear message
            raise DittoError(f"could not load the diffusers pipeline in {folder} without downloading anything "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).\n{MODEL_HELP}") from e
        return cls(pipe, device, source=str(folder), **kw)

    # ------------------------------------------------------------------ shapes and noise

    def frames_for(self, seconds: float | None) -> int:
        """Mel frames of a clip of about `seconds` (whole multiples of the UNet's frame multiple)."""
        if seconds is None:
            return self.clip_frames
        if not 0.0 < seconds <= 60.0:
            raise DittoError(f"--seconds {seconds:g} is out of range; give 0-60 s (the model's default clip is "
                             f"{self.mel_cfg.clip_seconds:.2f} s)")
        p = self.frame_multiple
        return max(p, int(round(seconds * self.mel_cfg.frame_rate / p)) * p)

    def latent_shape(self, frames: int) -> tuple[int, int, int]:
        return self.latent_channels, self.latent_frames(frames), self.mel_cfg.n_mels // self.frames_per_step

    def noise(self, n: int, frames: int, seed: int) -> Tensor:
        # drawn on the CPU in float32, so a seed gives the same x_T on every device and dtype
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, *self.latent_shape(frames), generator=g).to(self.device)

    # ------------------------------------------------------------------ conditioning

    def parse_prompt(self, caption: str | None = None, collection=None, instruments=None, tempo=None, mode=None,
                     unconditional: bool = False, negative_prompt: str | None = None) -> Prompt:
        """The CLI's prompt options -> make_cond's input: the caption is the text prompt (None, or
        --unconditional: the empty prompt only). Tag options are refused: this model reads text."""
        given = [f"--{k}" for k, v in (("collection", collection), ("instruments", instruments), ("tempo", tempo),
                                      ("mode", mode)) if v is not None]
        if given:
            words = ", ".join(str(v) for v in (collection, instruments, tempo, mode) if v is not None)
            raise DittoError(f"this backend is conditioned on text: use --caption (e.g. --caption \"{words}\"), "
                             f"not the tag option{'s' if len(given) > 1 else ''} {', '.join(given)}")
        text = None if unconditional or not (caption or "").strip() else caption.strip()
        if text is None and negative_prompt:
            # the unconditional pass would then be the negative prompt itself
            raise DittoError("a negative prompt needs a prompt (--caption); an unconditional run uses the empty prompt")
        return Prompt(text, negative_prompt or None)

    def describe_prompt(self, prompt) -> str:
        if not isinstance(prompt, Prompt):
            prompt = Prompt(prompt)
        text = "unconditional" if prompt.text is None else repr(prompt.text)
        return f"prompt: {text}" + (f" (negative: {prompt.negative!r})" if prompt.negative else "")

    @torch.no_grad()
    def _clap(self, prompts: list[str]) -> Tensor:
        """AudioLDM / MusicLDM: the L2-normalized CLAP text embedding [n, D] (the pipelines'
        _encode_prompt, written out: MusicLDM's breaks on transformers 5's get_text_features)."""
        tok = self.pipe.tokenizer(prompts, padding="max_length", max_length=self.pipe.tokenizer.model_max_length,
                                  truncation=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        enc = self.pipe.text_encoder
        if self.family == "audioldm":
            emb = enc(ids, attention_mask=mask).text_embeds
        else:
            emb = enc.get_text_features(ids, attention_mask=mask)
            emb = getattr(emb, "pooler_output", emb)  # transformers 5 returns a model output
        return nn.functional.normalize(emb, dim=-1).to(self.dtype)

    def make_cond(self, prompt, n: int, negative_prompt: str | list[str] | None = None) -> TextCond:
        """Text embeddings for a batch of n: prompt is one string for all rows, a list of n, None
        (unconditional: the empty prompt only), or a Prompt (text and negative). negative_prompt
        (default "") is CFG's unconditional branch."""
        if isinstance(prompt, Prompt):
            prompt, negative_prompt = prompt.text, prompt.negative if negative_prompt is None else negative_prompt
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise DittoError(f"a diffusers backend is conditioned on a text prompt (--caption), not "
                             f"{type(prompt).__name__}")
        rows = None if prompt is None else ([prompt] * n if isinstance(prompt, str) else list(prompt))
        if rows is not None and len(rows) != n:
            raise DittoError(f"got {len(rows)} prompts for a batch of {n}")
        neg = [negative_prompt or ""] * n if not isinstance(negative_prompt, list) else list(negative_prompt)
        if len(neg) != n:
            raise DittoError(f"got {len(neg)} negative prompts for a batch of {n}")
        if self.family == "audioldm2":
            return self._audioldm2_cond(rows, neg, n)
        uncond = {"encoder_hidden_states": None, "class_labels": self._clap(neg)}
        cond = None if rows is None else {"encoder_hidden_states": None, "class_labels": self._clap(rows)}
        return TextCond(n, uncond, cond, rows or [])

    @torch.no_grad()
    def _audioldm2_cond(self, rows, neg, n: int) -> TextCond:
        # the pipeline's own encode_prompt: CLAP + T5, projection, then GPT-2 generating
        # the 8 "AudioMAE" tokens the UNet cross-attends to; returns [negative; prompt] rows
        pe, am, gen = self.pipe.encode_prompt(rows if rows is not None else [""] * n, self.device, 1, True,
                                              negative_prompt=neg)

        def kw(sl):
            return {"encoder_hidden_states": gen[sl].to(self.dtype), "encoder_hidden_states_1": pe[sl].to(self.dtype),
                    "encoder_attention_mask_1": am[sl]}

        return TextCond(n, kw(slice(0, n)), None if rows is None else kw(slice(n, 2 * n)), rows or [])

    def model_fn(self, cond: TextCond | None, guidance: float):
        """CFG around the UNet: uncond + guidance * (cond - uncond), both in one batched pass (the
        pipelines' order: unconditional rows first). guidance 1: the prompt only; 0 or an
        unconditional cond: the empty prompt only."""
        if cond is None:
            raise DittoError("a diffusers backend needs make_cond(prompt, n) (prompt None for unconditional)")
        g = float(guidance)
        unet, dtype = self.unet, self.dtype

        def call(x: Tensor, t: Tensor, kw: dict) -> Tensor:
            return unet(x.to(dtype), t, **kw, return_dict=False)[0].to(x.dtype)

        def fn(x: Tensor, t: Tensor) -> Tensor:
            B = x.shape[0]
            if cond.cond is None or g == 0.0:
                return call(x, t, _rows(cond.uncond, B))
            if g == 1.0:
                return call(x, t, _rows(cond.cond, B))
            both = _cat(_rows(cond.uncond, B), _rows(cond.cond, B))
            out_u, out_c = call(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
            return out_u + g * (out_c - out_u)

        return fn

    # ------------------------------------------------------------------ mel <-> latent <-> audio

    def _to_ln(self, mel: Tensor) -> Tensor:
        """dittomusic's scaled mel [B, n_mels, T] -> the pipeline's ln-mel image [B, 1, T, n_mels]."""
        return unit_to_ln_mel(mel, self.mel_cfg, self.db_offset).transpose(-1, -2).unsqueeze(-3)

    def decode(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Latent [B, C, T/f, n_mels/f] -> scaled mel [B, n_mels, T] (differentiable); the VAE's
        decoder is deterministic, so generator is unused."""
        img = self.vae.decode(x0.to(self.dtype) / self.scaling_factor, return_dict=False)[0]
        ln = img[:, 0].transpose(-1, -2).float()
        return ln_mel_to_unit(ln, self.mel_cfg, self.db_offset)

    def encode(self, mel: Tensor) -> Tensor:
        """Scaled mel [B, n_mels, T] -> latent (the VAE posterior's mean, times its scaling factor)."""
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        post = self.vae.encode(self._to_ln(mel.float()).to(self.dtype), return_dict=False)[0]
        return (post.mode() * self.scaling_factor).float()

    @torch.no_grad()
    def mel_from_audio(self, audio, sr: int | None = None) -> Tensor:
        """A waveform's mel as this pipeline computes it (ln magnitude mel: Hann STFT, reflect-padded,
        Slaney bands, 1e-5 floor) on the backend's scale: [n_mels, 1 + samples // hop], CPU float32.
        What a painting reference should be read with for this backend (its VAE was trained on
        these), rather than dittomusic's power mel (about 3.5 dB RMS apart per bin)."""
        from dittomusic.control.features import audio_array

        cfg = self.mel_cfg
        w = torch.from_numpy(audio_array(audio, sr, cfg))
        if len(w) <= cfg.n_fft // 2:
            raise DittoError(f"a reference of {len(w)} samples is shorter than half the STFT window ({cfg.n_fft})")
        mag = torch.stft(w, cfg.n_fft, cfg.hop_length, window=torch.hann_window(cfg.n_fft, dtype=w.dtype), center=True,
                         pad_mode="reflect", return_complex=True).abs()
        ln = (torch.from_numpy(cfg.mel_basis()).to(mag.dtype) @ mag).clamp_min(1e-5).log()
        return ln_mel_to_unit(ln, cfg, self.db_offset).float()

    def _vocode(self, mel: Tensor) -> Tensor:
        """Scaled mel [B, n_mels, T] (or [n_mels, T]) -> audio [B, (T) * hop] with the pipeline's HiFi-GAN."""
        squeeze = mel.dim() == 2
        spec = self._to_ln(mel.unsqueeze(0) if squeeze else mel)[:, 0]  # [B, T, n_mels]
        hifi_dtype = next(self.hifigan.parameters()).dtype
        audio = self.hifigan(spec.to(self.device, hifi_dtype)).float()
        audio = audio.reshape(spec.shape[0], -1)
        return audio[0] if squeeze else audio

    def describe(self) -> str:
        return (f"diffusers {self.family} ({type(self.pipe).__name__}) from {self.source or 'components'}: "
                f"{self.prediction}, {self.mel_cfg.n_mels} mels at {self.mel_cfg.sample_rate} Hz, hop "
                f"{self.mel_cfg.hop_length}, latent x{self.frames_per_step}, clip {self.mel_cfg.clip_seconds:.2f} s")


@register_backend("diffusers", usage="diffusers:DIR (a local AudioLDM / MusicLDM / AudioLDM2 pipeline folder)")
def _open_diffusers(arg: str | None, model=None, device=None, vocoder=None, **options) -> DiffusersBackend:
    """options: dtype=, mel_cfg=, db_offset= (DiffusersBackend.from_pretrained)."""
    if not arg:
        raise DittoError(f"--backend diffusers needs the model folder: diffusers:DIR.\n{MODEL_HELP}")
    if model is not None:
        raise DittoError("--model is for dittomusic's own models; a diffusers model is its folder: "
                         "--backend diffusers:DIR")
    if vocoder is not None:
        raise DittoError("--vocoder is for dittomusic's own models; a diffusers pipeline uses its own HiFi-GAN")
    return DiffusersBackend.from_pretrained(arg, device, **options)
