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

Optimizing one CLAP can fool that CLAP, so a run's report (`report`) also gives measures the
optimizer never saw, before (the unsteered sample of the same x_T) and after: the tag classifier
on the prompt's collection and instrument families, a second CLAP, and the realism measures
(eval/text.py; `dittomusic eval text` runs them over held-out prompts).
"""

from __future__ import annotations

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
                 frames: int | None = None, terms: str = "collection"):
        super().__init__(cfg)
        if frames is not None and (not isinstance(frames, int) or frames < 1):
            raise DittoError(f"text: the clip length must be a positive number of frames, got {frames!r}")
        self._frames = frames
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
        if not self.terms:
            return 1.0 - self.feature(mel)
        mel = self._check_mel(mel)
        self._follow(mel)
        return 1.0 - self.scorer.score(mel.float(), [self.prompt, *self.terms]).mean(1).to(mel.device)

    def metric(self, audio, sr: int, item: int = 0) -> float:
        from dittomusic.audio.mel import mel_spectrogram

        from .. import features as feat

        mel = torch.from_numpy(mel_spectrogram(feat.audio_array(audio, sr, self.cfg), self.cfg))
        with torch.no_grad():
            return float(self.feature(mel[None]).cpu()[0])

    def __repr__(self) -> str:
        terms = f", terms={self.terms!r}" if self.terms else ""
        return f"TextControl(prompt={self.prompt!r}{terms}, clap={getattr(self.scorer, 'name', '?')})"


def build(frames: int, o, cfg: MelConfig, multiple: int = 1) -> Control:
    return get_control("text", prompt=check_prompt(o.prompt), clap=o.clap, cfg=cfg, frames=frames,
                       terms=o.prompt_terms or "collection")


# for `eval control --tasks text` (the full text eval, `eval text`, draws held-out prompts from the data)
EVAL_PROMPTS = ["a slow chorale on church organ", "a lively Irish jig on tin whistle and fiddle",
                "a folk song for acoustic guitar", "a classical string quartet movement",
                "renaissance polyphony sung by a choir", "a medieval piece on recorders"]


def eval_targets(n: int, frames: int, ref_mels, cfg: MelConfig):
    from dittomusic.clap.scorer import load_scorer

    scorer = load_scorer(mel_cfg=cfg)
    picks = EVAL_PROMPTS[:n]
    return [get_control("text", prompt=p, cfg=cfg, scorer=scorer, frames=frames) for p in picks], picks


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
        TaskOption("--judge-clap", "judge_clap", None, "Text: the second-opinion CLAP the report judges the result "
                   "with (never optimized) [default: the bundled second CLAP, if installed]."),
    )))
