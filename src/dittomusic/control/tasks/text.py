"""Text: the clip matches a free-text prompt, as a CLAP judges it (DITTO-2's text adherence:
"maximizing text adherence (CLAP score)", which turns an unconditional model into a text-controlled one).

Loss: 1 - cos(CLAP audio embedding of the generated mel, CLAP text embedding of the prompt), the
negative CLAP cosine shifted by one so that it is >= 0 like every other control's (log-scaled loss
plots, --tol). With `--prompt-terms collection` (the default), the cosine is averaged with that of
"a <collection>" when the keyword parser (`generate --caption`'s) finds a collection in the prompt:
a long prompt's cosine says little about its collection on real clips (ROC AUC 0.79 against 0.96-1.0
for "a <collection>", benchmarks/clap_prompt_auc.py), and steering followed the rest of the prompt. Metric: the CLAP score (the cosine) of the vocoded waveform's mel. Any CLAP behind
clap/scorer.py's interface scores it: --clap FILE (a dittomusic CLAP, or a folder with a
transformers CLAP), by default the bundled one.

DITTO-2 steers each clip only until it scores like real music of its description (--tol, STEER_TOL).

Views (--views N): the loss's gradient is that of its mean over N crops of the clip (50-100 % of it),
as augmentations do in CLIP-guided image generation, so a step must raise the score of every view
rather than one texture that only the whole clip's CLAP embedding rewards; each view is also shifted
by up to VIEW_SHIFT mel bins, so the step cannot rest on one exact spectrum. Its value is always the
whole clip's, so everything that ranks, stops or reports reads the whole clip. The crops are placed by a hash of each
item's mel, so the loss stays a function of the clip: runs repeat and resume exactly.

Optimizing one CLAP can fool that CLAP, so a run's report (`report`) also gives measures the
optimizer never saw, before (the unsteered sample of the same x_T) and after: the tag classifier
on the prompt's collection and instrument families, a second CLAP, and the realism measures
(eval/text.py; `dittomusic eval text` runs them over held-out prompts).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch
from torch import Tensor

from dittomusic.audio.mel import MelConfig
from dittomusic.errors import DittoError

from ..base import BatchedControl, Control, MultiControl, get_control, register_control
from ..spec import TaskOption, TaskSpec, register_task

EXAMPLE = "a slow, sad chorale on church organ"
TERMS = ("collection", "none")
# The text task's --tol: 1 - 0.444, the median score (this task's loss, the bundled CLAP) of real
# validation clips against prompts about them in held-out phrasings (benchmarks/text_tol.py). A clip
# steered past what real music of its description scores gains little that the judges hear.
STEER_TOL = 0.556
# --views: on the 180-prompt eval, steering on 8 crops' gradient raised row c's collection hits from 82 to
# 86-92 of 136 and lowered its texture FAD from 1.00x to 0.93-0.95x row b's (`eval text`,
# benchmarks/text_loss_variants.py --views; issue #21)
VIEWS = 8
VIEW_MIN = 0.5  # the shortest view, as a fraction of the clip
# each view is also moved by up to VIEW_SHIFT mel bins and VIEW_GAIN_DB decibels, drawn per item and view,
# so a step cannot lean on one exact spectrum. On the 180 prompts (text_loss_variants.py --view-shift/--view-gain),
# row c's collection hits: 86 unmoved, 96 at +-1 bin, 94 at +-2 bins and 4 dB (texture FAD 1.08x (b)'s, against
# 1.01x at +-1), 86 at 4 dB alone; `eval text`: 91 of 136 at +-1 bin, 0.90x (b)'s
VIEW_SHIFT = 1
VIEW_GAIN_DB = 0.0
# the mel settings a CLAP must share with the model's mel to read it
MEL_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "db_max", "db_range")


def check_prompt(prompt) -> str:
    if prompt is None or not isinstance(prompt, str) or not prompt.strip():
        raise DittoError(f'the text task needs a prompt: --prompt "{EXAMPLE}"')
    if not re.search(r"[^\W\d_]", prompt):
        raise DittoError(f"--prompt {prompt!r} has no words to match audio to; describe the music, "
                         f'e.g. --prompt "{EXAMPLE}"')
    return " ".join(prompt.split())


def prompt_terms(prompt: str, terms: str = "collection") -> list[str]:
    """Phrases scored beside the prompt: "a <collection>" for the collection the caption keyword
    parser finds in it (terms "collection"), or none."""
    if terms not in TERMS:
        raise DittoError(f"--prompt-terms must be one of {', '.join(TERMS)}, got {terms!r}")
    if terms == "none":
        return []
    from dittomusic.clap.captions import COLLECTION_WORDS
    from dittomusic.generate import caption_to_tags

    vocab = {"collections": list(COLLECTION_WORDS), "instruments": [], "tempo_buckets": [], "modes": []}
    coll = caption_to_tags(prompt, vocab).collection
    return [f"{'an' if coll[0].lower() in 'aeiou' else 'a'} {coll}"] if coll else []


def scorer_mel(scorer) -> dict | None:
    """The mel settings a scorer reads (None: it does not say)."""
    cfg = getattr(scorer, "mel_cfg", None)
    if cfg is not None:
        return cfg.to_dict()
    model = getattr(scorer, "model", None)
    return getattr(getattr(model, "cfg", None), "mel", None) or None


def check_scorer_mel(scorer, cfg: MelConfig) -> None:
    want = scorer_mel(scorer)
    if not want:
        return
    have = cfg.to_dict()
    bad = [f"{k} {want[k]} (the model's mel: {have[k]})" for k in MEL_KEYS if k in want and want[k] != have[k]]
    if bad:
        raise DittoError(f"the CLAP {getattr(scorer, 'name', '')} reads another mel than this model makes: "
                         + ", ".join(bad))


@register_control("text")
class TextControl(Control):
    """1 - CLAP cosine between the generated mel and `prompt`; metric: the CLAP score of the audio.
    scorer: a ClapScorer (shared between controls: its prompt embeddings are cached), else loaded
    from `clap` (None: the bundled CLAP). frames: the clip length (None: the model's)."""

    name = task = "text"
    metric_name = "clap"
    higher_is_better = True

    def __init__(self, prompt: str, clap: str | None = None, cfg: MelConfig | None = None, scorer=None,
                 frames: int | None = None, terms: str = "collection", views: int = 1):
        super().__init__(cfg)
        if frames is not None and (not isinstance(frames, int) or frames < 1):
            raise DittoError(f"text: the clip length must be a positive number of frames, got {frames!r}")
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise DittoError(f"text: --views must be a whole number >= 1 (1: the whole clip only), got {views!r}")
        self._frames = frames
        self.views = views
        self.prompt = check_prompt(prompt)
        self.terms = prompt_terms(self.prompt, terms)
        if scorer is None:
            from dittomusic.clap.scorer import load_scorer

            scorer = load_scorer(clap, mel_cfg=self.cfg)
        check_scorer_mel(scorer, self.cfg)
        self.scorer = scorer
        self.target = None

    @property
    def frames(self) -> int | None:
        return self._frames

    def _follow(self, mel: Tensor) -> None:
        if getattr(self.scorer, "device", mel.device) != mel.device and hasattr(self.scorer, "to"):
            self.scorer.to(mel.device)

    def feature(self, mel: Tensor) -> Tensor:
        """The CLAP score [B], differentiable in the mel."""
        mel = self._check_mel(mel)
        self._follow(mel)
        return self.scorer.score(mel.float(), [self.prompt])[:, 0].to(mel.device)

    def loss(self, mel: Tensor) -> Tensor:
        mel = self._check_mel(mel)
        if self.views > 1 and torch.is_grad_enabled() and mel.requires_grad:
            # the value is the whole clip's (what ranks and stops, DITTO's best iterate too), the gradient the views'
            views = torch.stack([self._loss(v) for v in self.crops(mel)]).mean(0)
            with torch.no_grad():
                whole = self._loss(mel)
            return whole + (views - views.detach())
        return self._loss(mel)

    def _loss(self, mel: Tensor) -> Tensor:
        if not self.terms:
            return 1.0 - self.feature(mel)
        self._follow(mel)
        return 1.0 - self.scorer.score(mel.float(), [self.prompt, *self.terms]).mean(1).to(mel.device)

    def crops(self, mel: Tensor) -> list[Tensor]:
        """self.views crops of every item [B, n_mels, F] -> [B, n_mels, F_j]: view j keeps the fraction
        VIEW_MIN + (1 - VIEW_MIN) (j + 1/2) / views of the clip, at an offset drawn per item from a
        hash of that item's mel (the same clip, the same crops, whatever else is in the batch), shifted
        by up to VIEW_SHIFT mel bins (the edge bin repeated) and VIEW_GAIN_DB dB, drawn the same way."""
        F = mel.shape[-1]
        lengths = [max(1, round(F * (VIEW_MIN + (1 - VIEW_MIN) * (j + 0.5) / self.views))) for j in range(self.views)]
        offsets = []
        for item in mel.detach().float().cpu().numpy():
            rng = np.random.default_rng(int(hashlib.sha1(item.tobytes()).hexdigest()[:15], 16))
            starts = [int(rng.integers(0, F - n + 1)) for n in lengths]
            shifts = rng.integers(-VIEW_SHIFT, VIEW_SHIFT + 1, len(lengths)) if VIEW_SHIFT else [0] * len(lengths)
            gains = rng.uniform(-VIEW_GAIN_DB, VIEW_GAIN_DB, len(lengths)) if VIEW_GAIN_DB else [0.0] * len(lengths)
            offsets.append(list(zip(starts, map(int, shifts), map(float, gains))))
        out = []
        M = mel.shape[1]
        bins = torch.arange(M, device=mel.device)
        for j, n in enumerate(lengths):
            idx = torch.tensor([o[j][0] for o in offsets], device=mel.device)[:, None] + torch.arange(n, device=mel.device)
            view = torch.gather(mel, 2, idx[:, None, :].expand(-1, M, -1))
            if VIEW_SHIFT:  # bin i reads bin i - shift, the edge bin repeated
                src = (bins[None] - torch.tensor([o[j][1] for o in offsets], device=mel.device)[:, None]).clamp(0, M - 1)
                view = torch.gather(view, 1, src[:, :, None].expand(-1, -1, n))
            if VIEW_GAIN_DB:
                gain = torch.tensor([o[j][2] for o in offsets], device=mel.device, dtype=view.dtype)
                view = view + (2.0 * gain / self.cfg.db_range)[:, None, None]
            out.append(view)
        return out

    def metric(self, audio, sr: int, item: int = 0) -> float:
        from dittomusic.audio.mel import mel_spectrogram

        from .. import features as feat

        mel = torch.from_numpy(mel_spectrogram(feat.audio_array(audio, sr, self.cfg), self.cfg))
        with torch.no_grad():
            return float(self.feature(mel[None]).cpu()[0])

    def __repr__(self) -> str:
        terms = f", terms={self.terms!r}" if self.terms else ""
        views = f", views={self.views}" if self.views > 1 else ""
        return f"TextControl(prompt={self.prompt!r}{terms}{views}, clap={getattr(self.scorer, 'name', '?')})"


def build(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
    return get_control("text", prompt=check_prompt(o.prompt), clap=o.clap, cfg=cfg, frames=frames,
                       terms=o.prompt_terms or "collection", views=VIEWS if o.views is None else o.views)


# for `eval control --tasks text` (the full text eval, `eval text`, draws held-out prompts from the data)
EVAL_PROMPTS = ["a slow chorale on church organ", "a lively Irish jig on tin whistle and fiddle",
                "a folk song for acoustic guitar", "a classical string quartet movement",
                "renaissance polyphony sung by a choir", "a medieval piece on recorders"]


def eval_targets(n: int, frames: int, ref_mels, cfg: MelConfig):
    from dittomusic.clap.scorer import load_scorer

    scorer = load_scorer(mel_cfg=cfg)
    picks = EVAL_PROMPTS[:n]
    return [get_control("text", prompt=p, cfg=cfg, scorer=scorer, frames=frames, views=VIEWS) for p in picks], picks


def plot(ax, ctrl: TextControl, audio: np.ndarray, sr: int, item: int, label: str, stitched=None,
         boundaries=()) -> None:
    from dittomusic.audio.mel import mel_spectrogram

    from .. import features as feat

    cfg = ctrl.cfg
    mel = mel_spectrogram(feat.audio_array(audio, sr, cfg), cfg)
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1,
              extent=(0, mel.shape[1] / cfg.frame_rate, 0, mel.shape[0]))
    ax.set_ylabel("mel bin")
    ax.set_xlabel(f"s — {label}: “{ctrl.prompt}”")


def text_controls(control: Control) -> list[TextControl]:
    if isinstance(control, TextControl):
        return [control]
    if isinstance(control, MultiControl):
        return [t for c, _ in control.items for t in text_controls(c)]
    if isinstance(control, BatchedControl):
        return [t for c in control.controls for t in text_controls(c)]
    return []


def report(backend, control: Control, out, prompt, settings, o, x_T=None) -> dict:
    """The CLAP score before (the unsteered sample of the same x_T: the backend's DDIM with the run's
    steps, guidance and tags) and after, on the mel and on the vocoded audio, and the second
    opinions on both (eval/text.py)."""
    from dittomusic.eval.text import TextJudge, prompt_expectation

    ctrls = text_controls(control)
    if not ctrls:
        return {}
    ctrl = ctrls[0]
    after = out.mel
    n = after.shape[0]
    x0 = x_T if x_T is not None else backend.noise(n, after.shape[-1], out.report["seed"])
    with torch.no_grad():
        before = backend.sample(x0.to(backend.device), backend.make_cond(prompt, n), steps=settings.steps,
                                guidance=settings.guidance)
        before_audio = backend.vocoder(before).cpu().numpy()
        mel_score = {"before": ctrl.feature(before).cpu().tolist(), "after": ctrl.feature(after).cpu().tolist()}
    sr = backend.mel_cfg.sample_rate
    audio_score = {"before": [ctrl.metric(a, sr) for a in before_audio],
                   "after": [it[f"{ctrl.name}_{ctrl.metric_name}"] for it in out.report["items"]]}
    judge = TextJudge(judge_clap=o.judge_clap, mel_cfg=backend.mel_cfg, device=backend.device,
                      vocab=getattr(backend, "vocab", None))
    exp = prompt_expectation(ctrl.prompt, judge.vocab)
    second = judge.before_after(before, after, [ctrl.prompt] * n, [exp] * n)
    metrics = {"text_clap_before": float(np.mean(audio_score["before"]))}
    metrics.update({f"{k}_before": v for k, v in second["summary"]["before"].items()})
    metrics.update(second["summary"]["after"])
    out.report["metrics"].update(metrics)
    return {"text": {
        "prompt": ctrl.prompt, "terms": ctrl.terms, "clap": getattr(ctrl.scorer, "name", "?"),
        "before_is": f"the unsteered sample of the same x_T (DDIM {settings.steps} steps, guidance "
                     f"{settings.guidance:g}, the same tags)",
        "clap_score": audio_score, "clap_score_mel": mel_score, "second_opinion": second}}


def _bundled_clap_missing() -> str | None:
    from dittomusic.clap.scorer import TRAIN_COMMANDS
    from dittomusic.models.loading import bundled_path

    return None if bundled_path("clap").is_file() else f"no bundled CLAP: train it with `{TRAIN_COMMANDS['clap']}`"


register_task(TaskSpec(
    "text", build, eval_targets, plot, order=5, metric="text_clap", metric_label="CLAP ↑",
    metric_cell=lambda value, median: f"{value:.3f}", help="a free-text description, scored by a CLAP",
    # DITTO-2's application; its surrogate makes a clip cost seconds, not minutes (issue #21: <= 10 s)
    method="ditto2", control_eval=False, report=report, ready=_bundled_clap_missing,
    # CLAP's gradients alone found CLAP-pleasing textures the tag classifier did not read as the prompt's
    # collection; the best of 32 draws (scored without gradients) and 20 iterations from there kept
    # the collection (benchmarks/text_loss_variants.py, issue #21). The student's decode ranks, the teacher
    # renders the result: the student's unconditional decodes are cleaner than real (see ditto2's Render)
    # Each clip stops at the first decode that scores like real music of its description (STEER_TOL,
    # checked every 5 iterations): pushing CLAP further made the clips static (texture FAD 1.29x (b)'s)
    method_defaults={"ditto2": {"iters": 20, "search": 32, "render": "teacher", "tol": STEER_TOL, "refresh": 5}},
    options=(
        TaskOption("--prompt", "prompt", None, f'Text: what the clip should sound like, e.g. "{EXAMPLE}".'),
        TaskOption("--clap", "clap", None, "Text: the CLAP that scores it, a dittomusic CLAP .safetensors or a folder "
                   "with a transformers CLAP [default: the bundled CLAP]."),
        TaskOption("--prompt-terms", "prompt_terms", None, "Text: phrases scored beside the prompt: collection "
                   "(\"a <collection>\" when the prompt names one) or none [default: collection].", "choice",
                   choices=TERMS),
        TaskOption("--views", "views", None, "Text: steer on the mean score of N crops of the clip (50-100 % of it, "
                   "each shifted by up to one mel bin; 1: the whole clip only); what ranks, stops and reports reads "
                   "the whole clip [default: "
                   f"{VIEWS}].", "int", lo=1, hi=64),
        TaskOption("--judge-clap", "judge_clap", None, "Text: the second-opinion CLAP the report judges the result "
                   "with (never optimized) [default: the bundled second CLAP, if installed]."),
    )))
