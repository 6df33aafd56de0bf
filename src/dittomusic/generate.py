"""Text/tag-conditioned generation with the base model: tags -> mel -> audio."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dittomusic.errors import DittoError

# caption words -> collection (with the CLAP captions' phrasings; the longest match wins)
COLLECTION_WORDS: dict[str, tuple[str, ...]] = {
    "Irish folk tune": ("irish", "reel", "jig", "hornpipe", "fiddle tune", "celtic"),
    "chorale": ("chorale", "bach", "hymn"),
    "renaissance polyphony": ("renaissance", "palestrina", "josquin", "madrigal", "motet", "mass"),
    "medieval polyphony": ("medieval", "trecento", "ars nova", "gothic"),
    "classical string quartet": ("string quartet", "quartet", "classical", "haydn", "mozart", "beethoven"),
    "folk song": ("folk", "song", "ballad"),
}
FAMILY_WORDS = {"strings": "string ensemble", "brass": "french horn", "woodwinds": "flute", "keyboard": "piano",
                "organ": "church organ", "choir": "choir", "mallets": "marimba", "plucked": "harp"}
TEMPO_WORDS = {"slow": "slow", "moderate": "moderate", "lively": "fast", "fast": "fast", "very fast": "very fast"}


@dataclass
class Tags:
    """What to generate; None leaves that tag unconditioned (its null embedding)."""

    collection: str | None = None
    instruments: list[str] = field(default_factory=list)
    tempo: str | None = None  # a tempo bucket name
    mode: str | None = None

    def describe(self) -> str:
        parts = [f"collection={self.collection or '*'}", f"instruments={','.join(self.instruments) or '*'}",
                 f"tempo={self.tempo or '*'}", f"mode={self.mode or '*'}"]
        return " ".join(parts)


def _match(name: str | None, options: list[str], what: str) -> str | None:
    if name is None:
        return None
    for o in options:
        if o.lower() == name.lower().strip():
            return o
    raise DittoError(f"unknown {what} {name!r}; choose from: {', '.join(options)}")


def tempo_to_bucket(tempo: str | int | float | None, vocab: dict) -> str | None:
    if tempo is None:
        return None
    s = str(tempo).strip().lower().removesuffix("bpm").strip()
    try:
        bpm = float(s)
    except ValueError:
        return _match(str(tempo), vocab["tempo_buckets"], "tempo")
    from dittomusic.data.arrange import tempo_bucket

    if not 20 <= bpm <= 400:
        raise DittoError(f"tempo {bpm:g} BPM is out of range; give 20-400 BPM or one of {vocab['tempo_buckets']}")
    return tempo_bucket(bpm)


def make_tags(vocab: dict, collection=None, instruments=None, tempo=None, mode=None) -> Tags:
    insts = []
    for i in instruments or []:
        i = FAMILY_WORDS.get(i.strip().lower(), i)
        insts.append(_match(i, vocab["instruments"], "instrument"))
    return Tags(_match(collection, vocab["collections"], "collection"), insts, tempo_to_bucket(tempo, vocab),
                _match(mode, vocab["modes"], "mode"))


def _caption_keywords(vocab: dict) -> dict[str, list[tuple[str, str]]]:
    """kind -> [(phrase, tag value)], longest phrase first: this module's keywords plus the training
    phrasings of the CLAP captions (clap.captions), so a caption in the captions' words maps to the
    same tags. Their held-out phrasings stay out, as they do in CLAP training."""
    from dittomusic.clap import captions as cap

    def train(table):
        return [(w.lower(), v) for v, (words, _held) in table.items() for w in words]

    kw = {
        "collection": [(w, c) for c, ws in COLLECTION_WORDS.items() for w in ws] + train(cap.COLLECTION_WORDS),
        "instrument": [(i.lower(), i) for i in vocab["instruments"]] + train(cap.INSTRUMENT_WORDS)
        + list(FAMILY_WORDS.items()) + [(w, FAMILY_WORDS[f]) for w, f in train(cap.FAMILY_WORDS)],
        "tempo": list(TEMPO_WORDS.items()) + train(cap.TEMPO_WORDS),
    }
    allowed = {"collection": vocab["collections"], "instrument": vocab["instruments"], "tempo": vocab["tempo_buckets"]}
    return {k: sorted({(w, v) for w, v in pairs if v in allowed[k]}, key=lambda p: (-len(p[0]), p))
            for k, pairs in kw.items()}


def caption_to_tags(caption: str, vocab: dict) -> Tags:
    """Keyword mapping from a free caption to tags (the model has no text encoder; the `text` control
    task steers by a CLAP score instead). Longer phrases win and consume their words, so "reed organ"
    is not also "organ" (a church organ), nor "very fast" also "fast"; plurals are allowed."""
    text = " " + re.sub(r"[^a-z0-9#\- ]+", " ", caption.lower()) + " "
    kw = _caption_keywords(vocab)

    def take(kind: str, many: bool = False):
        nonlocal text
        found = []
        for phrase, value in kw[kind]:
            rx = rf"\b{re.escape(phrase)}(?:e?s)?\b"
            if re.search(rx, text):
                text = re.sub(rx, " ", text)
                if value not in found:
                    found.append(value)
                if not many:
                    break
        return found if many else (found[0] if found else None)

    m = re.search(r"(\d{2,3})\s*bpm", text)
    tempo = tempo_to_bucket(m.group(1), vocab) if m else None
    coll = take("collection")
    insts = take("instrument", many=True)
    tempo = tempo or take("tempo")
    mode = next((md for md in vocab["modes"] if re.search(rf"\b{md}\b", text)), None)
    return Tags(coll, insts, tempo, mode)


def tags_from_options(vocab, caption, collection, instruments, tempo, mode, unconditional):
    """Caption keywords first, explicit tag options override them."""
    if unconditional:
        return None
    tags = caption_to_tags(caption, vocab) if caption else make_tags(vocab)
    explicit = make_tags(vocab, collection, instruments.split(",") if instruments else None, tempo, mode)
    tags.collection = explicit.collection or tags.collection
    tags.instruments = explicit.instruments or tags.instruments
    tags.tempo = explicit.tempo or tags.tempo
    tags.mode = explicit.mode or tags.mode
    return tags


def cond_tensors(tags: Tags, vocab: dict, n: int, device) -> dict[str, torch.Tensor]:
    inst = torch.zeros(n, len(vocab["instruments"]), device=device)
    for i in tags.instruments:
        inst[:, vocab["instruments"].index(i)] = 1.0

    def idx(v, options):
        return torch.full((n,), options.index(v) if v is not None else -1, dtype=torch.long, device=device)

    return {"collection": idx(tags.collection, vocab["collections"]), "tempo": idx(tags.tempo, vocab["tempo_buckets"]),
            "mode": idx(tags.mode, vocab["modes"]), "instruments": inst}


class Pipeline:
    """A loaded model plus everything needed to turn tags into audio. `backend` is the same model
    as a `Backend`, what control methods take; the methods here are its tag-level shorthands."""

    def __init__(self, model_path: str | Path | None = None, device: str | None = None, vocoder: str | None = None,
                 precision: str = "fp32"):
        """vocoder: a registered name ("neural", "griffinlim"), a neural vocoder .safetensors file, or None for
        the default (the bundled neural vocoder if installed, else Griffin-Lim). precision: the network's and
        decoder's, "fp32", "bf16" (autocast) or "auto" (bf16 where the device has it natively: `generate`'s
        default, up to 1.35x faster sampling on an AMX CPU); `self.precision` is the resolved one."""
        from dittomusic.audio.vocoder import get_vocoder
        from dittomusic.backends import DenoiserBackend
        from dittomusic.checkpoint import check_model_meta, sampling_defaults
        from dittomusic.models.loading import bundled_path, load_model
        from dittomusic.utils import resolve_precision

        self.model, self.meta = load_model(model_path, device)
        check_model_meta(self.meta, model_path, tags=str(model_path or "the bundled model"))
        self.sampling = sampling_defaults(self.meta)  # sampler and guidance when the caller names none
        self.backend = DenoiserBackend(self.model, model_file=Path(model_path) if model_path is not None
                                       else bundled_path())
        self.backend.vocoder = get_vocoder(vocoder, self.backend.mel_cfg, device=self.backend.device)
        self.backend.precision = self.precision = resolve_precision(precision, self.backend.device)
        b = self.backend
        self.model_file, self.device, self.vocab, self.schedule, self.mel_cfg, self.vocoder = (
            b.model_file, b.device, b.vocab, b.schedule, b.mel_cfg, b.vocoder)

    @property
    def model_digest(self) -> str:
        return self.backend.model_digest

    def frames_for(self, seconds: float | None) -> int:
        """Frames of the tensor the model denoises (latent frames for a latent model) for a clip length."""
        return self.backend.frames_for(seconds) // self.backend.frames_per_step

    def noise(self, n: int, frames: int, seed: int) -> torch.Tensor:
        """x_T for `frames` frames of the tensor the model denoises (see frames_for; latent frames for a
        latent model)."""
        return self.backend.noise(n, frames * self.backend.frames_per_step, seed)

    def cond(self, tags: Tags | list[Tags] | None, n: int) -> dict[str, torch.Tensor] | None:
        return self.backend.make_cond(tags, n)

    def model_fn(self, tags: Tags | list[Tags] | None, n: int, guidance: float):
        return self.backend.model_fn(self.cond(tags, n), guidance)

    def resolve(self, sampler: str | None, guidance: float | None) -> tuple[str, float]:
        """The sampler and guidance to use: the caller's, else the model's defaults (self.sampling)."""
        return (sampler or self.sampling["sampler"],
                self.sampling["guidance"] if guidance is None else guidance)

    def sample(self, x_T: torch.Tensor, tags: Tags | list[Tags] | None, *, sampler: str | None = None,
               steps: int = 20, guidance: float | None = None, checkpoint: bool = False, callback=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T -> generated mel (decoded, for a latent model). Differentiable in x_T: the caller chooses
        no_grad or not. sampler, guidance: None for the model's defaults. generator: a stochastic
        sampler's (ddpm) noise, then the decoder's texture noise."""
        sampler, guidance = self.resolve(sampler, guidance)
        return self.backend.sample(x_T, self.cond(tags, x_T.shape[0]), sampler=sampler, steps=steps,
                                   guidance=guidance, checkpoint=checkpoint, callback=callback, generator=generator)

    @torch.no_grad()
    def generate(self, tags: Tags | list[Tags] | None, *, n: int = 1, seconds: float | None = None, seed: int = 0,
                 sampler: str | None = None, steps: int = 20, guidance: float | None = None, progress: bool = False,
                 callback=None):
        """Returns (mel [n, n_mels, frames], audio [n, samples]). sampler, guidance: None for the model's
        defaults (self.sampling). callback: the sampler's per-step callback."""
        from tqdm.auto import tqdm

        if steps < 1 or steps > 1000:
            raise DittoError(f"--steps {steps} is out of range; give 1-1000")
        if n < 1:
            raise DittoError(f"--batch {n} must be at least 1")
        sampler, guidance = self.resolve(sampler, guidance)
        if not math.isfinite(guidance):
            raise DittoError(f"--guidance {guidance} must be a finite number")
        x_T = self.backend.noise(n, self.backend.frames_for(seconds), seed)
        bar = tqdm(total=steps, desc=f"{sampler} x{n}", disable=not progress, leave=False)
        # a ddpm sample's noise comes from the seed too, offset so it does not redraw x_T's values
        mel = self.sample(x_T, tags, sampler=sampler, steps=steps, guidance=guidance,
                          callback=lambda info: (bar.update(1), callback and callback(info)),
                          generator=torch.Generator().manual_seed(seed + 1))
        bar.close()
        return mel, self.vocoder(mel)
