"""Any CLAP behind one interface: `score(mel, texts) -> cosine`, differentiable in the mel.

- `DomainClapScorer`: the CLAP trained here (clap/train.py), on our log-mel directly.
- `HFClapScorer`: a `transformers` ClapModel + ClapProcessor from a local folder (e.g. LAION CLAP
  weights a user has; `--clap PATH`). Nothing is downloaded: `local_files_only`, safetensors only.

`load_scorer(path)` picks the implementation: a folder holding a transformers config of model_type
"clap" -> HFClapScorer; a .safetensors file or training-run folder of ours -> DomainClapScorer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from dittomusic.audio.mel import MelConfig, unit_to_db
from dittomusic.errors import DittoError


@runtime_checkable
class ClapScorer(Protocol):
    name: str

    def score(self, mel: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """mel [B, n_mels, frames] (our scaled log-mel in [-1, 1]) -> [B, len(texts)] cosine similarities."""
        ...

    def to(self, device) -> "ClapScorer":
        """The scorer on `device` (where the mels it scores are)."""
        ...


def _batched(mel: torch.Tensor, n_mels: int) -> torch.Tensor:
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    if mel.dim() != 3 or mel.shape[1] != n_mels:
        raise DittoError(f"a CLAP scorer takes [batch, {n_mels}, frames] mels, got shape {list(mel.shape)}")
    return mel


class DomainClapScorer:
    """The domain CLAP. Prompt embeddings are cached (MiniLM runs once per distinct text)."""

    def __init__(self, path: str | Path, device="cpu", encoder=None):
        from dittomusic.clap.model import load_clap

        self.model, self.meta = load_clap(path, device)
        self.name = f"dittomusic-clap:{Path(path).name}"
        self.device = torch.device(device)
        self._encoder = encoder
        self._cache: dict[str, torch.Tensor] = {}

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        from dittomusic.clap.eval import sentence_embeddings
        from dittomusic.clap.text import SentenceEncoder

        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            if self._encoder is None:
                self._encoder = SentenceEncoder()
            emb = self.model.embed_text(sentence_embeddings(self._encoder, new, self.model.cfg.text_encoder)
                                        .to(self.device))
            self._cache.update(zip(new, emb))
        return torch.stack([self._cache[t] for t in texts]).to(self.device)

    def score(self, mel: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        mel = _batched(mel, self.model.cfg.n_mels)
        return self.model.embed_audio(mel.to(self.device)) @ self.text_embeddings(list(texts)).T

    def to(self, device) -> "DomainClapScorer":
        """Move the audio tower (prompt embeddings follow) to where the mels are."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self


class HFClapScorer:
    """A transformers CLAP (LAION weights, say) scoring our mels.

    Our mel is mapped to the CLAP feature extractor's log-mel without going through audio, by fixed
    linear maps, so it stays differentiable and cheap: scaled log-mel -> mel power -> linear power
    spectrum (each FFT bin spread from the mel bands that cover it) -> CLAP's FFT grid (nothing above
    our Nyquist, 11.025 kHz: our audio has nothing there) -> CLAP's mel filters -> dB; frames are
    resampled to CLAP's hop and repeat-padded to its input length, as its `repeatpad` does to audio.
    tests/clap check the result against the feature extractor run on the same audio (resampled).
    """

    def __init__(self, folder: str | Path, device="cpu", mel_cfg: MelConfig | None = None):
        import os

        folder = Path(folder)
        if not folder.is_dir():
            raise DittoError(f"CLAP folder not found: {folder}")
        cfg_file = folder / "config.json"
        try:
            model_type = json.loads(cfg_file.read_text()).get("model_type")
        except (OSError, ValueError):
            raise DittoError(f"{folder} has no readable config.json: not a transformers CLAP folder") from None
        if model_type != "clap":
            raise DittoError(f"{folder} holds a transformers {model_type!r} model, not a CLAP (model_type 'clap')")
        if not any(folder.glob("*.safetensors")):
            raise DittoError(f"{folder} has no .safetensors weights (pickled .bin weights are not loaded)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from dittomusic.clap.text import import_transformers

        ClapModel, ClapProcessor, hf_logging = import_transformers("ClapModel", "ClapProcessor", "utils.logging")

        hf_logging.disable_progress_bar()  # stderr stays for our own messages
        try:
            self.processor = ClapProcessor.from_pretrained(str(folder), local_files_only=True)
            self.model = ClapModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as e:
            raise DittoError(f"cannot load the CLAP in {folder}: {str(e)[:300]}") from None
        self.model.to(device).eval().requires_grad_(False)
        self.name = f"transformers-clap:{folder.name}"
        self.device = torch.device(device)
        self.mel_cfg = mel_cfg or MelConfig()
        fe = self.processor.feature_extractor
        self.fusion = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        filters = fe.mel_filters if self.fusion else fe.mel_filters_slaney  # what the extractor uses per mode
        self._map = torch.from_numpy(self._mel_map(fe, filters)).float().to(device)
        self.frames_per_ours = (self.mel_cfg.hop_length / self.mel_cfg.sample_rate) / (fe.hop_length / fe.sampling_rate)
        self.max_frames = int(fe.nb_max_samples // fe.hop_length + 1)
        self._cache: dict[str, torch.Tensor] = {}

    def _mel_map(self, fe, filters: np.ndarray) -> np.ndarray:
        """[n_clap_mels, our n_mels]: our mel power -> CLAP mel power (see the class doc)."""
        c = self.mel_cfg
        basis = c.mel_basis().astype(np.float64)  # [n_mels, n_fft/2+1]
        # mel band power -> power per FFT bin: a band of area A over a locally flat spectrum S holds S * A,
        # so each bin takes the mean of S = P / A over the bands that cover it, weighted by their filters
        area = basis.sum(1)
        spread = (basis / basis.sum(0).clip(1e-12)[None, :]).T  # [n_freq, n_mels]
        to_lin = spread / area.clip(1e-12)[None, :]
        # our FFT grid -> theirs: linear interpolation in frequency, zero above our Nyquist
        ours = np.fft.rfftfreq(c.n_fft, 1 / c.sample_rate)
        theirs = np.fft.rfftfreq(fe.fft_window_size, 1 / fe.sampling_rate)
        interp = np.zeros((len(theirs), len(ours)))
        for k, f in enumerate(theirs):
            if f > ours[-1]:
                break
            j = min(int(np.searchsorted(ours, f, side="right")) - 1, len(ours) - 2)
            w = (f - ours[j]) / (ours[j + 1] - ours[j])
            interp[k, j], interp[k, j + 1] = 1 - w, w
        # no level factor: P / A is power per bin of *our* FFT; re-read by their coarser bins with their
        # Hz-normalised filters, a partial's band power shrinks by the ratio of FFT lengths, as it does
        # in their own STFT (measured: within 0.5 dB of the extractor on rendered music, tests/clap)
        return (filters.T @ interp @ to_lin).astype(np.float32)

    def input_features(self, mel: torch.Tensor) -> torch.Tensor:
        """Our scaled log-mel [B, n_mels, T] -> CLAP input_features [B, 1 (4 with fusion), frames, n_clap_mels]."""
        mel = _batched(mel, self.mel_cfg.n_mels).to(self.device).float()
        power = torch.pow(10.0, unit_to_db(mel, self.mel_cfg) / 10)
        theirs = torch.einsum("cm,bmt->bct", self._map, power)
        t = max(1, round(mel.shape[-1] * self.frames_per_ours))
        theirs = F.interpolate(theirs, size=t, mode="linear", align_corners=False)
        db = 10 * torch.log10(theirs.clamp_min(1e-10))
        reps = max(1, self.max_frames // t)  # repeatpad: whole repeats, then silence
        db = db.repeat(1, 1, reps)[..., :self.max_frames]
        db = F.pad(db, (0, self.max_frames - db.shape[-1]), value=-100.0)  # 10 log10(1e-10): the extractor's floor
        x = db.transpose(1, 2).unsqueeze(1)
        return x.repeat(1, 4, 1, 1) if self.fusion else x

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            tok = self.processor.tokenizer(new, padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()})
            self._cache.update(zip(new, F.normalize(_pooled(out), dim=-1)))
        return torch.stack([self._cache[t] for t in texts]).to(self.device)

    def to(self, device) -> "HFClapScorer":
        self.device = torch.device(device)
        self.model.to(self.device)
        self._map = self._map.to(self.device)
        return self

    def score(self, mel: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        x = self.input_features(mel)
        longer = torch.zeros(len(x), 1, dtype=torch.bool, device=self.device)
        a = F.normalize(_pooled(self.model.get_audio_features(input_features=x, is_longer=longer)), dim=-1)
        return a @ self.text_embeddings(list(texts)).T


def _pooled(out) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 an output object with them as pooler_output."""
    return out if torch.is_tensor(out) else out.pooler_output


# what trains and installs each bundled CLAP (scripts/clap.sh)
TRAIN_COMMANDS = {"clap": "scripts/clap.sh all && scripts/clap.sh install",
                  "clap2": "scripts/clap.sh all2 && scripts/clap.sh install2"}


def load_scorer(path: str | Path | None = None, device="cpu", bundled: str = "clap",
                mel_cfg: MelConfig | None = None) -> ClapScorer:
    """path=None: a bundled domain CLAP, `bundled` = "clap" (assets/clap.safetensors, the text-control
    scorer) or "clap2" (assets/clap2.safetensors, the second opinion that judges it). mel_cfg: the mel
    a transformers CLAP is fed (a domain CLAP reads the mel it was trained on only)."""
    if path is None:
        from dittomusic.models.loading import bundled_path

        path = bundled_path(bundled)
        if not path.is_file():
            what = "CLAP" if bundled == "clap" else "second-opinion CLAP"
            flag = "--clap" if bundled == "clap" else "--judge-clap"
            raise DittoError(f"no bundled {what} ({path}): train it with `{TRAIN_COMMANDS[bundled]}`, "
                             f"or pass {flag} PATH")
    p = Path(path)
    if not p.exists():
        raise DittoError(f"CLAP not found: {p}")
    if p.is_dir() and (p / "config.json").is_file():
        return HFClapScorer(p, device, mel_cfg)
    if p.is_dir() or p.suffix == ".safetensors":
        return DomainClapScorer(p, device)
    raise DittoError(f"{p} is neither a dittomusic CLAP (.safetensors) nor a folder with a transformers CLAP")


