"""Text control judged by a second opinion, and `dittomusic eval text`.

Optimizing one CLAP can fool that CLAP, so text results are judged by what the optimizer never saw
(`TextJudge`):
- the tag classifier (eval/classifier.py): is its collection the one the prompt names, is its top
  instrument family one the prompt names;
- a second CLAP (another seed and audio tower: scripts/clap.sh train2): its score for the prompt,
  and in the eval whether the prompt is the clip's best match among all eval prompts (R@1);
- the realism yardstick (eval/realism.py), so that any quality cost of steering shows.

The eval (`evaluate_text`) draws prompts from the test split's metadata in the captions' held-out
templates with held-out synonyms allowed (clap/captions.py), so the CLAP never trained on their
phrasing; the first prompts cover every collection and instrument family of the split. What a
prompt claims (its captions Constraint) is what it is judged on. Four rows, with the same x_T
seed per prompt: (a) unconditional sampling, (b) tag-conditioned CFG sampling with the tags the
keyword parser (generate.caption_to_tags) finds in the prompt, (c) unconditional + CLAP-steered
DITTO-2 (DITTO when the model has no student), (d) the tags of (b) + CLAP-steered.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text

log = logging.getLogger("dittomusic.eval.text")


@dataclass(frozen=True)
class Expectation:
    """What a prompt claims that the tag classifier can check (None / () : it does not say)."""

    collection: str | None = None
    families: tuple[str, ...] = ()


def full_vocab(vocab: dict | None = None, classifier_cfg=None) -> dict:
    """A tag vocabulary for the keyword parser: the model's if it has one, else the classifier's
    collections and families with every instrument, tempo bucket and mode."""
    from dittomusic.data.arrange import FAMILIES, INSTRUMENTS, TEMPO_BUCKETS

    out = {"collections": list(getattr(classifier_cfg, "collections", None) or []),
           "families": list(getattr(classifier_cfg, "families", None) or FAMILIES),
           "instruments": [i.name for i in INSTRUMENTS], "tempo_buckets": [b for b, _ in TEMPO_BUCKETS],
           "modes": ["major", "minor"]}
    for k, v in (vocab or {}).items():
        if isinstance(v, list) and v:
            out[k] = list(v)
    return out


def prompt_expectation(prompt: str, vocab: dict) -> Expectation:
    """The collection and families a free prompt names, by the keyword parser `--caption` uses."""
    from dittomusic.data.arrange import BY_NAME
    from dittomusic.generate import caption_to_tags

    tags = caption_to_tags(prompt, vocab)
    fams = tuple(dict.fromkeys(BY_NAME[i].family for i in tags.instruments if i in BY_NAME))
    return Expectation(tags.collection, fams)


class TextJudge:
    """The second opinions on generated mels. classifier / judge_clap: a path, None for the bundled
    one, or False for none; a missing bundled file or a model the measure cannot read leaves that
    measure out, with a note saying why (`notes`)."""

    def __init__(self, classifier=None, judge_clap=None, mel_cfg=None, device="cpu", vocab: dict | None = None):
        from dittomusic.audio.mel import MelConfig
        from dittomusic.models.loading import bundled_path

        self.mel_cfg = mel_cfg or MelConfig()
        self.device = torch.device(device)
        self.notes: list[str] = []
        self.clf = None
        if classifier is not False:
            path = classifier or bundled_path("classifier")
            if Path(path).is_file():
                from dittomusic.eval.classifier import load_classifier

                clf, _ = load_classifier(path, self.device)
                if clf.cfg.n_mels == self.mel_cfg.n_mels:
                    self.clf = clf
                else:
                    self.notes.append(f"tag classifier left out: it reads {clf.cfg.n_mels} mel bins, the model "
                                      f"makes {self.mel_cfg.n_mels}")
            elif classifier:
                raise DittoError(f"tag classifier not found: {path}")
            else:
                self.notes.append(f"tag classifier left out: no bundled classifier ({path})")
        self.clap2 = None
        if judge_clap is not False:
            from dittomusic.clap.scorer import load_scorer
            from dittomusic.control.tasks.text import check_scorer_mel

            if judge_clap is None and not bundled_path("clap2").is_file():
                from dittomusic.clap.scorer import TRAIN_COMMANDS

                self.notes.append(f"second CLAP left out: none bundled (train it with `{TRAIN_COMMANDS['clap2']}`, "
                                  "or pass --judge-clap PATH)")
            else:
                self.clap2 = judge_clap if hasattr(judge_clap, "score") else \
                    load_scorer(judge_clap, bundled="clap2", mel_cfg=self.mel_cfg)
                check_scorer_mel(self.clap2, self.mel_cfg)
                if hasattr(self.clap2, "to"):
                    self.clap2.to(self.device)
        self.vocab = full_vocab(vocab, self.clf.cfg if self.clf is not None else None)

    @torch.no_grad()
    def items(self, mels: torch.Tensor, prompts: list[str], expected: list[Expectation]) -> list[dict]:
        """Per clip: the second CLAP's score for its prompt; the classifier's collection and top
        family, and whether the prompt named them (None: the prompt names no collection / family
        the classifier knows)."""
        mels = mels.detach().float().to(self.device)
        out = [{} for _ in range(len(mels))]
        if self.clap2 is not None:
            uniq = list(dict.fromkeys(prompts))
            s = self.clap2.score(mels, uniq).float().cpu()
            for i, p in enumerate(prompts):
                out[i]["clap2"] = float(s[i, uniq.index(p)])
        if self.clf is not None:
            from dittomusic.eval.classifier import predict

            pred = predict(self.clf, mels)
            colls, fams = self.clf.cfg.collections, self.clf.cfg.families
            for i, e in enumerate(expected):
                c, f = colls[int(pred["collection"][i])], fams[int(pred["family_logits"][i].argmax())]
                named = [x for x in e.families if x in fams]
                out[i].update(collection=c, top_family=f,
                              collection_hit=(c == e.collection) if e.collection in colls else None,
                              family_hit=(f in named) if named else None)
        return out

    @staticmethod
    def summary(items: list[dict]) -> dict:
        """Means over clips, each over the clips it applies to (only measures that were taken)."""
        out = {}
        for key, name in (("clap2", "text_clap2"), ("collection_hit", "text_collection_acc"),
                          ("family_hit", "text_family_acc")):
            vals = [float(it[key]) for it in items if it.get(key) is not None]
            if vals:
                out[name] = float(np.mean(vals))
        return out

    def before_after(self, before: torch.Tensor, after: torch.Tensor, prompts: list[str],
                     expected: list[Expectation]) -> dict:
        """The run report's second opinions: each measure before and after steering, and the
        realism measures of the steered clips relative to the unsteered ones."""
        from dittomusic.eval.realism import compare, measures

        b, a = self.items(before, prompts, expected), self.items(after, prompts, expected)
        mb, ma = measures(before), measures(after)
        ratio, delta = compare(mb, ma)
        return {"expected": [asdict(e) for e in expected], "before": b, "after": a,
                "summary": {"before": self.summary(b), "after": self.summary(a)},
                "realism": {"ratio_after_over_before": ratio, "delta_after_minus_before": delta,
                            "before": mb, "after": ma},
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- the eval

HELDOUT_NAMING_COLLECTION = ("h_recording", "h_this_is", "h_arranged")
HELDOUT_ALL = ("h_recording", "h_this_is", "h_arranged", "h_want")
ROWS = {  # row -> (label, conditioned on the parsed tags, CLAP-steered)
    "a": ("unconditional", False, False),
    "b": ("tags parsed from the prompt, CFG", True, False),
    "c": ("unconditional + CLAP-steered", False, True),
    "d": ("parsed tags + CLAP-steered", True, True),
}
MIN_PROMPTS = 30  # issue #21


@dataclass
class EvalPrompt:
    text: str
    template: str
    clip_id: str
    expected: Expectation
    parsed: dict  # the keyword parser's tags (rows b and d condition on them)


def eval_prompts(data: str | Path, n: int, seed: int = 0, parse_vocab: dict | None = None,
                 split: str = "test") -> list[EvalPrompt]:
    """n prompts from test clips' metadata in held-out templates and synonyms. The first ones cover
    every collection and instrument family of the test split (named in the prompt), then one clip
    per piece, round-robin over collections; each clip's claims are its expectation. parse_vocab:
    the model's tag vocabulary, which the keyword parser maps each prompt to (default: the data's).
    split: whose clips (the eval's are the test split's; calibration uses val's)."""
    from dittomusic.clap.captions import BY_ID, fill, loudness_trend
    from dittomusic.data.arrange import BY_NAME
    from dittomusic.data.dataset import MelDataset
    from dittomusic.generate import caption_to_tags
    from dittomusic.utils import stable_hash

    test = MelDataset(data, split, random_crop=False)
    vocab, rows = test.vocab, test.rows
    if not rows:
        raise DittoError(f"{data} has no {split} clips to draw eval prompts from")
    rng = np.random.default_rng(stable_hash(seed, "text-eval"))
    order = [int(i) for i in rng.permutation(len(rows))]
    # one clip per piece first (more variety), then the rest
    seen, first, rest = set(), [], []
    for i in order:
        (rest if rows[i]["piece_id"] in seen else first).append(i)
        seen.add(rows[i]["piece_id"])
    order = first + rest
    need_c = {r["collection"] for r in rows}
    need_f = {f for r in rows for f in r["families"]}
    picks: list[tuple[int, bool]] = []  # (row, must name the collection)
    while need_c or need_f:
        gain = [len({rows[i]["collection"]} & need_c) * 2 + len(set(rows[i]["families"]) & need_f)
                for i in order]
        j = int(np.argmax(gain))
        if gain[j] == 0:
            break
        i = order.pop(j)
        picks.append((i, True))
        need_c.discard(rows[i]["collection"])
        need_f -= set(rows[i]["families"])
    by: dict[str, list[int]] = {}
    for i in order:
        by.setdefault(rows[i]["collection"], []).append(i)
    rr = [lst[k] for k in range(max(map(len, by.values()), default=0)) for lst in by.values() if k < len(lst)]
    picks += [(i, False) for i in rr]
    if len(picks) < n:
        raise DittoError(f"the {split} split of {data} has {len(picks)} clips, fewer than the {n} prompts asked for")
    model_vocab = parse_vocab or vocab.to_dict()
    out = []
    for k, (i, name_coll) in enumerate(picks[:n]):
        row = rows[i]
        tids = HELDOUT_NAMING_COLLECTION if name_coll else HELDOUT_ALL
        t = BY_ID[tids[k % len(tids)]]
        trend = loudness_trend(test[i]["mel"].numpy())
        text, cons = fill(t, row, trend, vocab, np.random.default_rng(stable_hash(seed, "text-eval", row["clip_id"])),
                          heldout_words=True)
        fams = {vocab.families[b] for b in range(len(vocab.families)) if cons.fam >> b & 1}
        fams |= {BY_NAME[vocab.instruments[b]].family for b in range(len(vocab.instruments))
                 if cons.inst >> b & 1 and vocab.instruments[b] in BY_NAME}
        exp = Expectation(vocab.collections[cons.coll] if cons.coll >= 0 else None,
                          tuple(f for f in vocab.families if f in fams))
        parsed = caption_to_tags(text, model_vocab)
        out.append(EvalPrompt(text, t.id, row["clip_id"], exp, asdict(parsed)))
    return out


@dataclass
class TextEvalConfig:
    data: str
    out: str
    prompts: int = MIN_PROMPTS
    clap: str | None = None  # the steering CLAP (None: bundled)
    judge_clap: str | None = None  # the second opinion (None: the bundled second CLAP)
    classifier: str | None = None
    model: str | None = None
    method: str = "ditto2"  # ditto when the model has no student
    student: str | None = None
    steps: int = 20
    uncond_steps: int | None = None  # rows a and c's DDIM steps (None: ditto2's UNCONDITIONAL_STEPS)
    guidance: float = 3.0
    render: str | None = None  # ditto2's --render in rows c and d (None: the text task's)
    iters: int | None = None  # None: the text task's default
    lr: float | None = None  # None: the method's
    search: int | None = None  # ditto2's noise draws per clip (None: the text task's default)
    steer: str | None = None  # ditto2's --steer (None: the text task's)
    tol: float | None = None  # the optimizer's --tol (None: the text task's)
    refresh: int | None = None  # ditto2's --refresh (None: the text task's)
    prompt_terms: str = "collection"  # phrases scored beside the prompt (control/tasks/text.py)
    views: int | None = None  # crops the steering gradient averages (None: the text task's VIEWS)
    seed: int = 0
    batch: int = 8
    seconds: float | None = None  # clip length (None: the model's)
    c2st: bool = True
    c2st_steps: int | None = None
    real_clips: int = 120  # real test clips the realism measures compare with
    device: str | None = None
    vocoder: str | None = None
    rows: tuple[str, ...] = tuple(ROWS)

    FIXED = ("data", "prompts", "clap", "judge_clap", "classifier", "model", "method", "student", "steps",
             "uncond_steps", "guidance", "render", "iters", "lr", "search", "steer", "tol", "refresh", "prompt_terms", "views", "seed", "seconds", "c2st", "c2st_steps", "real_clips", "vocoder")

    def __post_init__(self):
        if self.prompts < 1:
            raise DittoError(f"--prompts must be at least 1 (the issue's eval uses {MIN_PROMPTS}), got {self.prompts}")
        if self.batch < 1:
            raise DittoError(f"--batch must be at least 1, got {self.batch}")
        bad = [r for r in self.rows if r not in ROWS]
        if bad:
            raise DittoError(f"unknown eval row(s) {bad}; choose from {', '.join(ROWS)}")


def steering_method(pipe, method: str, student: str | None) -> tuple[str, str | None]:
    """(the method the steered rows use, why it is not the one asked for): ditto2 needs a student
    distilled from this model; without one, DITTO."""
    if method != "ditto2":
        return method, None
    from dittomusic.distill.student import check_teacher, get_student

    try:
        st, meta = get_student(student, pipe.device)
        check_teacher(meta, pipe.backend, st)
    except DittoError as e:
        return "ditto", f"ditto2 unavailable ({e}); the steered rows use ditto"
    return "ditto2", None


def _noise(backend, idx: list[int], frames: int, seed: int) -> torch.Tensor:
    """Prompt i's x_T from seed + i, whatever batch it runs in."""
    return torch.cat([backend.noise(1, frames, seed + i) for i in idx])


def evaluate_text(cfg: TextEvalConfig, progress: bool = True) -> dict:
    from dittomusic.control.base import BatchedControl
    from dittomusic.control.defaults import resolve
    from dittomusic.control.methods import Settings, get_method, run_control
    from dittomusic.control.tasks.text import TextControl
    from dittomusic.clap.scorer import load_scorer
    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.realism import measures, spread_indices
    from dittomusic.generate import Pipeline, Tags

    get_method(cfg.method)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "text_eval.json"
    fixed = {k: getattr(cfg, k) for k in TextEvalConfig.FIXED}
    results = json.loads(res_path.read_text()) if res_path.exists() else {"config": fixed, "rows": {}}
    if results["config"] != fixed:
        diff = [k for k in fixed if results["config"].get(k) != fixed[k]]
        raise DittoError(f"{out} holds an eval with other settings ({', '.join(diff)}); use a new --out")
    pipe = Pipeline(cfg.model, cfg.device, cfg.vocoder)
    backend = pipe.backend
    prompts = eval_prompts(cfg.data, cfg.prompts, cfg.seed, backend.vocab)
    texts = [p.text for p in prompts]
    results["prompts"] = [asdict(p) for p in prompts]
    method, note = steering_method(pipe, cfg.method, cfg.student)
    results["steering_method"] = method
    results["notes"] = [note] if note else []
    scorer = load_scorer(cfg.clap, backend.device, mel_cfg=backend.mel_cfg)
    judge = TextJudge(cfg.classifier, cfg.judge_clap, backend.mel_cfg, backend.device, backend.vocab)
    results["notes"] += judge.notes
    results["clap"] = getattr(scorer, "name", "?")
    results["judge_clap"] = getattr(judge.clap2, "name", None)
    exps = [p.expected for p in prompts]
    parsed = [Tags(**p.parsed) for p in prompts]
    results["parsed_nothing"] = sum(1 for t in parsed if not (t.collection or t.instruments or t.tempo or t.mode))

    test = MelDataset(cfg.data, "test", random_crop=False)
    ridx = spread_indices(len(test), cfg.real_clips)
    real = torch.stack([test[i]["mel"] for i in ridx])
    real_m = measures(real)
    groups = [test.rows[i]["piece_id"] for i in ridx]
    frames = backend.frames_for(cfg.seconds)
    optim = resolve("text", method, cfg.iters, cfg.lr, cfg.tol)[1]
    from dittomusic.control.spec import method_default

    from dittomusic.control.tasks import text as text_task

    views = text_task.VIEWS if cfg.views is None else cfg.views
    results["steering"] = {"iters": optim.iters, "lr": optim.lr, "tol": optim.tol, "prompt_terms": cfg.prompt_terms,
                           "views": views, "view_shift": text_task.VIEW_SHIFT, "view_gain_db": text_task.VIEW_GAIN_DB,
                           "search": (cfg.search or method_default("text", method, "search", 1)) if method == "ditto2" else 1,
                           "render": (cfg.render or method_default("text", method, "render", "decode"))
                           if method == "ditto2" else "decode",
                           "steer": (cfg.steer or method_default("text", method, "steer", "noise"))
                           if method == "ditto2" else "noise"}
    from dittomusic.control.methods.ditto2 import UNCONDITIONAL_STEPS

    uncond_steps = results["uncond_steps"] = cfg.uncond_steps or UNCONDITIONAL_STEPS
    for row in cfg.rows:
        if row in results["rows"]:
            log.info("row %s done, skipped", row)
            continue
        label, conditioned, steered = ROWS[row]
        log.info("row %s: %s, %d prompts", row, label, len(prompts))
        mels, wall, calls, renders = [], 0.0, 0, set()
        row_steps = cfg.steps if conditioned else uncond_steps
        for s in range(0, len(prompts), cfg.batch):
            idx = list(range(s, min(len(prompts), s + cfg.batch)))
            x_T = _noise(backend, idx, frames, cfg.seed)
            tags = [parsed[i] for i in idx] if conditioned else None
            if steered:
                ctrl = BatchedControl([TextControl(texts[i], cfg=backend.mel_cfg, scorer=scorer, frames=frames,
                                                   terms=cfg.prompt_terms, views=views)
                                       for i in idx])
                settings = Settings(steps=cfg.steps, guidance=cfg.guidance, optim=optim, progress=progress,
                                    student=cfg.student, search=cfg.search, render=cfg.render, steer=cfg.steer, refresh=cfg.refresh,
                                    teacher_steps=None if conditioned else cfg.uncond_steps)
                o = run_control(backend, method, ctrl, tags, seed=cfg.seed + s, x_T=x_T, settings=settings,
                                task="text")
                mels.append(o.mel.detach().cpu())
                wall += o.report["method_wall_s"]
                calls += o.report["model_calls"]
                renders.add(o.report.get("render", "decode"))
            else:
                t0 = time.perf_counter()
                with torch.no_grad():
                    mels.append(backend.sample(x_T, backend.make_cond(tags, len(idx)), steps=row_steps,
                                               guidance=cfg.guidance).cpu())
                wall += time.perf_counter() - t0
                calls += row_steps
        mel = torch.cat(mels)
        np.save(out / f"mels_{row}.npy", mel.float().numpy())
        results["rows"][row] = score_row(row, mel, texts, exps, scorer, judge, real, real_m, groups, cfg, wall,
                                         calls, method if steered else None)
        # how the row's clips were made: the sampler and steps, or the steering's returned audio
        results["rows"][row]["render"] = ", ".join(sorted(renders)) if steered else f"teacher ddim {row_steps}"
        atomic_write_text(res_path, json.dumps(results, indent=1))
    results["texture_fad_ci"] = texture_fad_intervals(out, results, real)
    results["targets"] = targets(results)
    atomic_write_text(res_path, json.dumps(results, indent=1))
    if spectrograms_png(out, results, backend.mel_cfg):
        results["spectrograms"] = "spectrograms.png"
    atomic_write_text(out / "README.md", report_markdown(results))
    return results


# (row, against): the comparison, and how far the unsteered unconditional model itself is from (b)
CI_PAIRS = (("c", "b"), ("a", "b"), ("c", "a"))


def texture_fad_intervals(out: Path, results: dict, real: torch.Tensor, boot: int = 1000) -> dict:
    """Paired-bootstrap 95 % intervals of texture-FAD ratios between rows (CI_PAIRS), from the saved mels."""
    from dittomusic.eval.realism import texture_embedding, texture_fad_ratio_ci

    have = {r for r in results["rows"] if (out / f"mels_{r}.npy").exists()}
    pairs = [p for p in CI_PAIRS if set(p) <= have]
    if not pairs:
        return {}
    emb = {r: texture_embedding(torch.from_numpy(np.load(out / f"mels_{r}.npy"))) for r in {r for p in pairs for r in p}}
    ref = texture_embedding(real)
    return {f"{x}/{y}": texture_fad_ratio_ci(ref, emb[x], emb[y], boot=boot, seed=results["config"]["seed"])
            for x, y in pairs}


def spectrograms_png(out: Path, results: dict, mel_cfg, prompts: int = 2) -> Path | None:
    """The first prompts' clips, every row of each beside the others (rows read from mels_<row>.npy)."""
    from dittomusic.spectrogram import plot_mels

    rows = [r for r in ROWS if r in results["rows"] and (out / f"mels_{r}.npy").exists()]
    if not rows:
        return None
    saved = {r: np.load(out / f"mels_{r}.npy", mmap_mode="r") for r in rows}
    mels, titles = [], []
    for i, p in enumerate(results["prompts"][:prompts]):
        for r in rows:
            mels.append(np.asarray(saved[r][i]))
            titles.append(f"({r}) {ROWS[r][0]}: {p['text'][:90]}")
    return plot_mels(mels, titles, out / "spectrograms.png", mel_cfg)


def score_row(row, mel, texts, exps, scorer, judge: TextJudge, real, real_m, groups, cfg: TextEvalConfig, wall: float,
              calls: int, method: str | None) -> dict:
    from dittomusic.eval.realism import realism_report

    items = judge.items(mel, texts, exps)
    uniq = list(dict.fromkeys(texts))
    with torch.no_grad():
        s1 = scorer.score(mel.to(getattr(scorer, "device", "cpu")), uniq).float().cpu()
    for i, t in enumerate(texts):
        items[i]["clap"] = float(s1[i, uniq.index(t)])
    summ = judge.summary(items)
    summ["text_clap"] = float(np.mean([it["clap"] for it in items]))
    if judge.clap2 is not None and len(uniq) > 1:
        # does the second CLAP pick the clip's own prompt among all eval prompts (chance 1 / prompts)
        with torch.no_grad():
            s2 = judge.clap2.score(mel.to(judge.device), uniq).float().cpu()
        own = torch.tensor([uniq.index(t) for t in texts])
        summ["text_clap2_r1"] = float((s2.argmax(1) == own).float().mean())
        summ["chance_r1"] = 1 / len(uniq)
    rr = realism_report(real, mel, seed=cfg.seed, device=judge.device, real_measures=real_m, with_c2st=cfg.c2st,
                        c2st_kwargs={"steps": cfg.c2st_steps, "groups": (groups, None)})
    label, conditioned, steered = ROWS[row]  # the C2ST trains its critic: not under no_grad
    return {"label": label, "conditioned": conditioned, "steered": steered, "method": method,
            "n": len(texts), "batch": cfg.batch, "wall_s": wall, "wall_per_clip_s": wall / len(texts),
            "model_calls": calls,
            "summary": summ, "items": items,
            "realism": {k: rr[k] for k in ("ratio", "delta", "texture_fad", "generated")}
            | ({"c2st": rr["c2st"]} if "c2st" in rr else {})}


def targets(results: dict) -> dict:
    """The issue's targets, where the rows they compare are there (None: a measure is missing)."""
    r = results["rows"]
    out: dict = {}

    def get(row, key):
        return r.get(row, {}).get("summary", {}).get(key)

    if "b" in r and "c" in r:
        b, c = get("b", "text_collection_acc"), get("c", "text_collection_acc")
        out["c_classifier_vs_b"] = None if b is None or c is None else (c / b if b else None)
        out["c_classifier_at_least_0.9x_b"] = None if out["c_classifier_vs_b"] is None else \
            out["c_classifier_vs_b"] >= 0.9
        worse = {"texture_fad": r["c"]["realism"]["texture_fad"] / max(r["b"]["realism"]["texture_fad"], 1e-9)}
        if "c2st" in r["c"]["realism"] and "c2st" in r["b"]["realism"]:
            worse["c2st"] = r["c"]["realism"]["c2st"]["accuracy"] / max(r["b"]["realism"]["c2st"]["accuracy"], 1e-9)
        out["c_realism_vs_b"] = worse
        out["c_realism_within_10pct_of_b"] = all(v <= 1.1 for v in worse.values())
        if ci := results.get("texture_fad_ci", {}).get("c/b"):
            out["c_texture_fad_vs_b_ci95"] = ci["ci95"]
            out["c_texture_fad_vs_b_share_within"] = ci["share_within_limit"]
    if "b" in r and "d" in r:
        b, d = get("b", "text_clap2"), get("d", "text_clap2")
        out["d_beats_b_on_second_clap"] = None if b is None or d is None else d > b
    steered = [r[k]["wall_per_clip_s"] for k in ("c", "d") if k in r and r[k].get("method") == "ditto2"]
    if steered:
        out["ditto2_wall_per_clip_s"] = max(steered)
        out["ditto2_within_10s"] = max(steered) <= 10.0
    return out


def _f(x, fmt="{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def _yes(x) -> str:
    return "–" if x is None else ("yes" if x else "no")


def _batches(results: dict) -> str:
    """The batch sizes the steered rows ran at (wall per clip depends on it)."""
    b = sorted({r["batch"] for k, r in results["rows"].items() if k in ("c", "d") and "batch" in r})
    return "/".join(map(str, b)) or "?"


def _steering(results: dict) -> str:
    st = results.get("steering")
    if not st:
        return ""
    terms = ', its loss averaging each prompt\'s cosine with "a <collection>"\'s where the prompt names one' \
        if st["prompt_terms"] == "collection" else ""
    search = f", from the best of {st['search']} noise draws per clip" if st["search"] > 1 else ""
    render = ", ranked on the student's decodes and rendered by the teacher's DDIM" \
        if st.get("render") == "teacher" else ""
    tol = f", each clip stopping once its decode's loss is within {st['tol']:g}" if st.get("tol") else ""
    views = f", its gradient the mean over {st['views']} crops of the clip" if st.get("views", 1) > 1 else ""
    moves = ([f"{st['view_shift']} mel bin{'s' if st['view_shift'] != 1 else ''}"] if st.get("view_shift") else []) \
        + ([f"{st['view_gain_db']:g} dB"] if st.get("view_gain_db") else [])
    if views and moves:
        views += f" (each moved by up to {' and '.join(moves)})"
    return f" (K = {st['iters']}, lr {st['lr']:g}{search}{terms}{views}{tol}{render})"


def _ci_note(results: dict) -> str:
    ci = results.get("texture_fad_ci") or {}
    if "c/b" not in ci:
        return ""
    def one(k):
        c = ci[k]
        return f"{c['ratio']:.2f}x (95 % interval {c['ci95'][0]:.2f}-{c['ci95'][1]:.2f})"
    note = (f"; texture FAD by a paired bootstrap over prompts: {one('c/b')}, "
            f"{100 * ci['c/b']['share_within_limit']:.0f} % of resamples within {ci['c/b']['limit']:.2f}x")
    if "a/b" in ci:
        note += f"; the unsteered unconditional row (a) against (b): {one('a/b')}"
    if "c/a" in ci:
        note += f"; (c) against (a): {one('c/a')}"
    return note


def report_markdown(results: dict) -> str:
    c = results["config"]
    n = len(results["prompts"])
    lines = ["# Text control evaluation", "",
             f"{n} prompts from test clips in held-out caption templates (the CLAP never trained on their phrasing), "
             f"{results['parsed_nothing']} of them with no tag the keyword parser knows; seed {c['seed']} per prompt "
             f"index in every row; DDIM {c['steps']} steps with tags, "
             f"{c.get('uncond_steps') or results.get('uncond_steps', c['steps'])} without, CFG {c['guidance']:g}; steering: "
             f"{results['steering_method']} with {results['clap']}{_steering(results)}. Judged by measures the optimizer never saw: the "
             f"tag classifier, the second CLAP ({results.get('judge_clap') or 'none'}), realism against real test "
             "clips. Collection / family accuracy: over the prompts that name one.", "",
             "| row | CLAP (steered by) ↑ | 2nd CLAP ↑ | 2nd CLAP R@1 ↑ | collection acc ↑ | family acc ↑ | "
             "texture FAD ↓ | C2ST ↓ | grain × | s/clip |", "|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in results["rows"].items():
        s, re_ = r["summary"], r["realism"]
        lines.append(f"| ({k}) {r['label']}{' — ' + r['method'] if r.get('method') else ''} | {_f(s.get('text_clap'))} "
                     f"| {_f(s.get('text_clap2'))} | {_f(s.get('text_clap2_r1'), '{:.2f}')} "
                     f"| {_f(s.get('text_collection_acc'), '{:.2f}')} | {_f(s.get('text_family_acc'), '{:.2f}')} "
                     f"| {_f(re_['texture_fad'], '{:.1f}')} | {_f(re_.get('c2st', {}).get('accuracy'))} "
                     f"| {_f(re_['ratio'].get('grain'), '{:.2f}')} | {_f(r['wall_per_clip_s'], '{:.1f}')} |")
    t = results.get("targets", {})
    lines += ["", "Targets (issue #21):", "",
              f"- (c) reaches ≥ 0.9x the collection accuracy of (b): {_yes(t.get('c_classifier_at_least_0.9x_b'))} "
              f"({_f(t.get('c_classifier_vs_b'), '{:.2f}x')})",
              f"- (c) realism within 10 % of (b): {_yes(t.get('c_realism_within_10pct_of_b'))} "
              f"({', '.join(f'{k} {v:.2f}x' for k, v in t.get('c_realism_vs_b', {}).items()) or '–'})"
              + _ci_note(results),
              f"- (d) beats (b) on the second CLAP: {_yes(t.get('d_beats_b_on_second_clap'))}",
              f"- DITTO-2 ≤ 10 s per clip: {_yes(t.get('ditto2_within_10s'))} "
              f"({_f(t.get('ditto2_wall_per_clip_s'), '{:.1f} s')}, batches of {_batches(results)})"
              if "ditto2_within_10s" in t else "- DITTO-2 ≤ 10 s per clip: – (no DITTO-2 row)"]
    if results.get("spectrograms"):
        lines += ["", f"![the first prompts, every row]({results['spectrograms']})"]
    if results.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {x}" for x in results["notes"]]
    lines += ["", "Prompts (template, what the judge expects, what the parser gave rows b and d):", ""]
    for p in results["prompts"]:
        e, t_ = p["expected"], p["parsed"]
        got = ", ".join(x for x in [t_["collection"], *t_["instruments"], t_["tempo"], t_["mode"]] if x) or "nothing"
        lines.append(f"- “{p['text']}” ({p['template']}; expects {e['collection'] or '–'} / "
                     f"{', '.join(e['families']) or '–'}; parsed: {got})")
    return "\n".join(lines) + "\n"


__all__ = ["Expectation", "EvalPrompt", "ROWS", "TextEvalConfig", "TextJudge", "eval_prompts", "evaluate_text",
           "full_vocab", "prompt_expectation", "report_markdown", "targets"]
