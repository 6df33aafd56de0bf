"""`dittomusic eval control`: DITTO's Tables 1-3 on our model.

Fixed targets (5 per task by default): intensity presets, five melodies, five phrase patterns,
and real test clips as painting references (their own tags condition the generation; the
adherence tasks borrow the tags of the same clips). Every method sees the same targets, tags
and x_T seeds. Metrics are measured on the vocoded waveform; FAD uses the base-model yardstick
(tag-classifier embeddings) against all real test clips, so it compares rows within a table,
not with the paper's CLAP-based numbers. Results are written after every (task, method) and
finished pairs are skipped on a re-run, so an interrupted evaluation resumes. Several processes on one
machine may share --out: each (task, method) is claimed by one of them, and every save merges what the
others saved (re-run the whole command at the end for tables over every task).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dittomusic.control.spec import all_tasks, get_task, task_names, within_paper_scale
from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text

log = logging.getLogger("dittomusic.eval.control")

# the tasks and their eval targets, metrics and table titles come from the task registry (TaskSpec)
ALL_TASKS = task_names()
DEFAULT_TASKS = tuple(t.name for t in all_tasks() if t.control_eval)  # text and invert have their own
PAINT_SETTINGS = {t.name: t.eval_settings for t in all_tasks() if t.painting}
METRIC = {t.name: t.metric for t in all_tasks() if t.metric}
ADHERENCE_METHODS = ("default", "freedom", "ditto")
PAINT_METHODS = ("default", "naive", "multidiffusion", "multidiffusion50", "freedom", "ditto", "ditto_draft")
SEAM_PASS = 1.5  # issue #4: flux across a stitch within 1.5x the clip's median flux
MAX_TARGETS = 6


@dataclass
class ControlEvalConfig:
    data: str
    out: str
    tasks: tuple[str, ...] = DEFAULT_TASKS
    targets: int = 5
    methods: tuple[str, ...] | None = None  # None: the methods the paper compares on each task
    steps: int = 20
    guidance: float = 3.0
    iters: int | None = None  # None: 70, or 150 for melody and structure
    checkpoint: bool = True
    seed: int = 0
    model: str | None = None
    classifier: str | None = None
    device: str | None = None
    extra_methods: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("ditto2",)
    rescore_seams: bool = False  # re-stitch finished painting runs from their saved mels
    vocoder: str | None = None  # None: the default (the bundled neural vocoder if installed, else Griffin-Lim)

    def __post_init__(self):
        bad = [t for t in self.tasks if t not in ALL_TASKS]
        if bad:
            raise DittoError(f"unknown eval task(s) {bad}; choose from {', '.join(ALL_TASKS)}")
        if not 2 <= self.targets <= MAX_TARGETS:  # FAD compares sets of at least 2 clips
            raise DittoError(f"--targets must be 2-{MAX_TARGETS}, got {self.targets}")

    def methods_for(self, task: str) -> tuple[str, ...]:
        base = self.methods or (PAINT_METHODS if task in PAINT_SETTINGS else ADHERENCE_METHODS)
        return tuple(base) + tuple(m for m in self.extra_methods if m not in base)


@contextlib.contextmanager
def _locked(out: Path):
    """An exclusive lock on the eval folder, held across processes (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one process per folder
        yield
        return
    with open(out / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _merge_saved(res_path: Path, results: dict) -> None:
    """Take in the runs another process saved since we read the file (call under _locked)."""
    if res_path.exists():
        for k, v in json.loads(res_path.read_text()).get("runs", {}).items():
            results["runs"].setdefault(k, v)


def _save(res_path: Path, results: dict) -> None:
    with _locked(res_path.parent):
        _merge_saved(res_path, results)
        atomic_write_text(res_path, json.dumps(results, indent=1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _claim(out: Path, key: str, results: dict) -> int | None:
    """Claim (task, method) for this process: None if claimed now, else the pid of the live process
    running it. A claim whose process died (killed, or the session ended) is void."""
    path = out / "claims" / key.replace("/", "_")
    with _locked(out):
        _merge_saved(out / "control_eval.json", results)
        if key in results["runs"]:
            return 0
        if path.exists():
            try:
                pid = int(path.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                return pid
        path.parent.mkdir(exist_ok=True)
        atomic_write_text(path, str(os.getpid()))
    return None


def reference_clips(data: str, n: int, seed: int):
    """n test clips, one per collection in turn: (mels [n, M, F], tags list, clip ids)."""
    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.base_model import pick_clips
    from dittomusic.generate import Tags

    test = MelDataset(data, "test", random_crop=False)
    idx = pick_clips(test, 1 + (n - 1) // len(test.vocab.collections), seed)
    # interleave collections so the first n cover as many styles as possible
    by = {}
    for i in idx:
        by.setdefault(test.rows[i]["collection"], []).append(i)
    order = [lst[k] for k in range(max(map(len, by.values()))) for lst in by.values() if k < len(lst)][:n]
    mels = torch.stack([test[i]["mel"] for i in order])
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"])
            for r in (test.rows[i] for i in order)]
    return mels, tags, [test.rows[i].get("clip_id", i) for i in order], test


def real_seams(test, pipe, boundaries: int, n: int = 30, seed: int = 0, margin_s: float = 0.5) -> dict:
    """Seam ratio of unedited music: n vocoded real test clips (the vocoder the methods use), each
    scored at `boundaries` random positions (the max, as a stitched clip with that many seams is).
    The base rate a seamless method can hope for: note onsets alone push real music past 1.5."""
    from dittomusic.control import spectral_flux_seam_ratio

    rng = np.random.default_rng(seed + 1)
    idx = rng.choice(len(test), size=min(n, len(test)), replace=False)
    sr = pipe.mel_cfg.sample_rate
    with torch.no_grad():
        audio = pipe.vocoder(torch.stack([test[int(i)]["mel"] for i in idx]).to(pipe.device)).cpu().numpy()
    vals = []
    for a in audio:
        dur = len(a) / sr
        vals.append(spectral_flux_seam_ratio(a, sr, rng.uniform(margin_s, dur - margin_s, size=boundaries)))
    return seam_summary(vals)


def seam_summary(vals) -> dict:
    v = np.asarray(vals, dtype=np.float64)
    return {"n": int(v.size), "median": float(np.median(v)), "max": float(v.max()),
            "pass_rate": float(np.mean(v <= SEAM_PASS)), "values": [float(x) for x in v]}


def build_targets(task: str, n: int, frames: int, ref_mels: torch.Tensor, cfg) -> tuple[list, list[str]]:
    """-> (one control per target, target names): the task's own eval targets (TaskSpec.eval_targets)."""
    return get_task(task).eval_targets(n, frames, ref_mels, cfg)


def evaluate_control(cfg: ControlEvalConfig, progress: bool = True) -> dict:
    from dittomusic.audio import save_wav
    from dittomusic.control import BatchedControl
    from dittomusic.control.defaults import resolve
    from dittomusic.control.methods import Settings, get_method, run_control
    from dittomusic.eval.classifier import load_classifier, predict
    from dittomusic.eval.fad import fad, kid
    from dittomusic.audio.vocoder import vocoder_name
    from dittomusic.generate import Pipeline
    from dittomusic.models.loading import bundled_path

    for t in cfg.tasks:
        for m in cfg.methods_for(t):
            get_method(m)
    out = Path(cfg.out)
    (out / "png").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    res_path = out / "control_eval.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {"config": asdict(cfg), "runs": {}}
    model = cfg.model
    if model is None and any("ditto2" in cfg.methods_for(t) for t in cfg.tasks):
        from dittomusic.distill.student import bundled_teacher

        model = bundled_teacher()  # every row on the model the bundled student is a surrogate of
    pipe = Pipeline(model, cfg.device, cfg.vocoder)
    # every metric is measured on vocoded audio: one folder, one vocoder (older folders: Griffin-Lim)
    voc = vocoder_name(pipe.vocoder)
    had = results.setdefault("vocoder", "griffinlim" if results["runs"] else voc)
    if had != voc:
        raise DittoError(f"{out} holds runs measured with the {had} vocoder, not {voc}; use a new --out "
                         f"or the same --vocoder")
    clf, _ = load_classifier(cfg.classifier or bundled_path("classifier"), pipe.device)
    ref_mels, ref_tags, ref_ids, test = reference_clips(cfg.data, cfg.targets, cfg.seed)
    emb = lambda m: predict(clf, m.to(pipe.device))["embedding"].cpu().numpy()  # noqa: E731
    real_emb = emb(torch.stack([test[i]["mel"] for i in range(len(test))]))
    frames = pipe.backend.clip_frames  # mel frames (a latent model denoises fewer)
    sr = pipe.mel_cfg.sample_rate
    for task in cfg.tasks:
        ctrls, names = build_targets(task, cfg.targets, frames, ref_mels, pipe.mel_cfg)
        control = BatchedControl(ctrls)
        ran = False
        for method in cfg.methods_for(task):
            key = f"{task}/{method}"
            with _locked(out):
                _merge_saved(res_path, results)
            if key in results["runs"]:
                if cfg.rescore_seams and task in PAINT_SETTINGS:
                    _rescore(results["runs"][key], ctrls, pipe, out, task, method)
                    _save(res_path, results)
                    ran = True
                else:
                    log.info("skipping %s (done)", key)
                continue
            other = _claim(out, key, results)
            if other is not None:
                log.info("skipping %s (%s)", key, f"process {other} is running it" if other else "done")
                continue
            log.info("%s: %d targets", key, len(ctrls))
            t0 = time.perf_counter()
            settings = Settings(steps=cfg.steps, guidance=cfg.guidance,
                                optim=resolve(task, method, cfg.iters)[1], checkpoint=cfg.checkpoint,
                                progress=progress)
            o = run_control(pipe, method, control, ref_tags[:len(ctrls)], seed=cfg.seed, settings=settings, task=task)
            gen_emb = emb(o.mel)
            rep = o.report
            rep.pop("loss_history", None)
            rep.update(targets=names, fad=fad(gen_emb, real_emb), kid=kid(gen_emb, real_emb), n_clips=len(ctrls),
                       wall_per_clip_s=rep["method_wall_s"] / len(ctrls), total_s=time.perf_counter() - t0)
            for b, a in enumerate(o.audio):
                save_wav(out / "audio" / f"{task}_{b}_{method}.wav", a, sr)
                if task in PAINT_SETTINGS:  # the generated clip alone, for its metric panel
                    save_wav(out / "audio" / f"{task}_{b}_{method}_clip.wav", o.clip_audio[b], sr)
            np.save(out / "audio" / f"{task}_{method}_emb.npy", gen_emb)
            # the generated mels too: stitching and seam scoring can be redone without regenerating
            np.save(out / "audio" / f"{task}_{method}_mel.npy", o.mel.float().cpu().numpy())
            results["runs"][key] = rep
            _save(res_path, results)
            (out / "claims" / key.replace("/", "_")).unlink(missing_ok=True)
            ran = True
        if ran:
            _plots(task, control, cfg, out, sr, names)
    with _locked(out):  # the tables cover what other processes sharing the folder saved
        _merge_saved(res_path, results)
    for key, r in results["runs"].items():  # cheap, so recomputed: runs may predate the current KID
        p = out / "audio" / f"{key.replace('/', '_')}_emb.npy"
        if p.exists():
            r["kid"] = kid(np.load(p), real_emb)
    seams = results.setdefault("real_seams", {})
    for task in cfg.tasks:
        if task in PAINT_SETTINGS and task not in seams and f"{task}/default" in results["runs"]:
            k = len(_boundaries(results["runs"][f"{task}/default"]))
            seams[task] = dict(real_seams(test, pipe, k, seed=cfg.seed), boundaries=k)
    results["pooled"] = {}
    for m in sorted({k.split("/")[1] for k in results["runs"]}):
        embs = [np.load(p) for t in cfg.tasks
                if f"{t}/{m}" in results["runs"] and (p := out / "audio" / f"{t}_{m}_emb.npy").exists()]
        if len(embs) > 1:
            e = np.unique(np.concatenate(embs), axis=0)  # default sampling is the same clips for every task
            results["pooled"][m] = {"tasks": len(embs), "n_clips": len(e), "fad": fad(e, real_emb), "kid": kid(e, real_emb)}
    results["tables"] = tables(results, cfg)
    _save(res_path, results)
    atomic_write_text(out / "README.md", report_markdown(results, cfg))
    return results


def saved_mels(out: Path, task: str, method: str) -> np.ndarray:
    """The generated mels [targets, n_mels, F] a finished eval saved for task/method."""
    p = Path(out) / "audio" / f"{task}_{method}_mel.npy"
    if not p.exists():
        raise DittoError(f"{p} not found: run the eval for {task}/{method} first (evaluations before the mels "
                         "were saved need that task/method rerun: delete its entry from control_eval.json)")
    return np.load(p)


def reopen(out: str | Path, data: str):
    """A finished `dittomusic eval control` folder, reopened to re-stitch its painted clips:
    (its results dict, a Pipeline on the eval's model and device, its reference mels)."""
    from dittomusic.generate import Pipeline

    res = Path(out) / "control_eval.json"
    if not res.is_file():
        raise DittoError(f"{res} not found: expected the --out folder of `dittomusic eval control`")
    results = json.loads(res.read_text())
    cfg = results["config"]
    # the vocoder the runs were measured with (folders from before the neural vocoder: Griffin-Lim)
    voc = "griffinlim" if results.get("vocoder", "griffinlim") == "griffinlim" else cfg.get("vocoder")
    pipe = Pipeline(cfg.get("model"), cfg.get("device"), voc)
    ref_mels, _, _, _ = reference_clips(data, cfg["targets"], cfg["seed"])
    return results, pipe, ref_mels


def _rescore(run: dict, ctrls, pipe, out: Path, task: str, method: str) -> None:
    """Stitch a finished painting run again from its saved mels with the current `stitch` and
    replace its seam scores, boundaries and stitched audio (the generation itself is unchanged)."""
    from dittomusic.audio import save_wav
    from dittomusic.control.methods import stitch_and_score

    mels = torch.from_numpy(saved_mels(out, task, method)).to(pipe.device)
    sr = pipe.mel_cfg.sample_rate
    bounds = []
    for b, c in enumerate(ctrls):
        a, run["items"][b]["seam_ratio"], bd = stitch_and_score(pipe, c.masks, mels[b:b + 1])
        bounds.append(bd)
        save_wav(out / "audio" / f"{task}_{b}_{method}.wav", a, sr)
    run["metrics"]["seam_ratio"] = float(np.mean([it["seam_ratio"] for it in run["items"]]))
    run["stitch_boundaries_s"] = bounds[0] if len(bounds) == 1 else bounds
    log.info("%s/%s: seams rescored", task, method)


def _boundaries(run: dict) -> list[float]:
    sb = run.get("stitch_boundaries_s") or []
    return sb[0] if sb and isinstance(sb[0], list) else sb


def _plots(task, control, cfg, out: Path, sr: int, names: list[str]) -> None:
    """One PNG per target with every finished method, read back from the saved audio."""
    import soundfile as sf

    from dittomusic.control.plots import plot_control

    res = json.loads((out / "control_eval.json").read_text())["runs"]
    for b, name in enumerate(names):
        runs, bounds = {}, None
        for m in cfg.methods_for(task):
            r = res.get(f"{task}/{m}")
            p = out / "audio" / f"{task}_{b}_{m}.wav"
            if r is None or not p.exists():
                continue
            a, _ = sf.read(p, dtype="float32")
            if task in PAINT_SETTINGS:
                clip, _ = sf.read(out / "audio" / f"{task}_{b}_{m}_clip.wav", dtype="float32")
                runs[m] = (clip, a)
                sb = r.get("stitch_boundaries_s")
                bounds = sb[b] if sb and isinstance(sb[0], list) else sb
            else:
                runs[m] = (a, None)
        if runs:
            plot_control(control.for_item(b), runs, sr, out / "png" / f"{task}_{b}.png", title=f"{task}: {name}",
                         boundaries=bounds)


def tables(results: dict, cfg: ControlEvalConfig) -> dict:
    runs = results["runs"]
    t = {}
    for task in cfg.tasks:
        rows = {}
        for m in cfg.methods_for(task):
            r = runs.get(f"{task}/{m}")
            if r is None:
                continue
            vals = {"fad": r["fad"], "kid": r.get("kid"), "wall_per_clip_s": r["wall_per_clip_s"],
                    "model_calls_per_clip": r["model_calls"], "final_loss": float(np.mean(r["final_loss"]))}
            for k in r["items"][0]:
                if k in ("seed", "item", "final_loss"):
                    continue
                xs = [it[k] for it in r["items"]]
                vals[k] = float(np.mean(xs))
                vals[k + "_median"] = float(np.median(xs))
            if task in METRIC and get_task(task).paper_scale is not None:
                ins = [within_paper_scale(task, it[METRIC[task]]) for it in r["items"]]
                vals["within_paper_scale"] = [sum(ins), len(ins)]
            rows[m] = vals
        t[task] = rows
    return t


def _per_method(results: dict, field: str, fmt: str = "{:g}") -> str:
    """The values of `field` (lr, iterations) each optimizing method's runs recorded, e.g. "ditto 70/150"."""
    vals = {}
    for key, r in results["runs"].items():
        if r.get(field):
            vals.setdefault(key.split("/")[1], set()).add(r[field])
    return ", ".join(f"{m} {'/'.join(fmt.format(v) for v in sorted(v))}" for m, v in sorted(vals.items())) or "–"


def _lrs(results: dict) -> str:
    return _per_method(results, "lr")


def _f(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def report_markdown(results: dict, cfg: ControlEvalConfig) -> str:
    t = results["tables"]
    lines = ["# Control evaluation (DITTO Tables 1-3 on the dittomusic base model)", "",
             f"{cfg.targets} targets per task, seed {cfg.seed}, DDIM {cfg.steps} steps, CFG {cfg.guidance}, "
             f"K = {_per_method(results, 'iterations')} (by task), Adam lr {_lrs(results)}. Metrics on the vocoded "
             "waveform. "
             "FAD: tag-classifier embeddings vs all real test clips, over the "
             f"{cfg.targets} clips of each row; at this size it is strongly biased upward (compare rows, not "
             "with the paper). The last table pools each method's distinct clips over all tasks and adds KID "
             "(unbiased; features z-scored by the real set; 0 = indistinguishable from real; per-task KID is in "
             "the JSON, too noisy at 5 clips to tabulate). "
             "Wall: seconds per clip on this machine, all targets of a task optimized as one batch. "
             "In parentheses: the clips within the paper's DITTO-2 figure (intensity ≤ 3.3 dB², melody ≥ 85 %, "
             "structure ≤ 0.018), adherence at the scale the paper's listeners heard.", ""]
    adh = [k for k in METRIC if k in t]
    if adh:
        lines += ["## Table 3 form: intensity, melody, structure", ""]
        head = "| Method | " + " | ".join(
            f"{k[:3].title()} {get_task(k).metric_label} | {k[:3].title()} FAD ↓ | "
            f"{k[:3].title()} s/clip"
            for k in adh) + " |"
        lines += [head, "|" + "---|" * (1 + 3 * len(adh))]
        methods = [m for m in ("default", "freedom", "ditto", "ditto2") if any(m in t[k] for k in adh)]
        methods += [m for k in adh for m in t[k] if m not in methods]
        for m in methods:
            cells = []
            for k in adh:
                r = t[k].get(m)
                if r is None:
                    cells += ["–"] * 3
                    continue
                metric = r[METRIC[k]]
                med = r[METRIC[k] + "_median"]
                cell = get_task(k).metric_cell(metric, med)
                if r.get("within_paper_scale"):
                    spec = get_task(k)
                    cell += (f" ({r['within_paper_scale'][0]}/{r['within_paper_scale'][1]} "
                             f"{'≥' if spec.higher_better else '≤'} {spec.paper_scale:g})")
                cells += [cell,
                          _f(r["fad"], 1), _f(r["wall_per_clip_s"], 1)]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    for task, title in ((p, get_task(p).table.format(**s)) for p, s in PAINT_SETTINGS.items()):
        if task not in t or not t[task]:
            continue
        lines += [f"## {title}", "",
                  f"| Method | FAD ↓ | masked mel MSE ↓ | seam ratio median / max ↓ | seams ≤ {SEAM_PASS:g} | s/clip |",
                  "|---|---|---|---|---|---|"]
        for m, r in t[task].items():
            mk = next(k for k in r if k.endswith("_mse") and not k.endswith("_median"))
            sm = seam_summary([it["seam_ratio"] for it in results["runs"][f"{task}/{m}"]["items"]])
            lines.append(f"| {m} | {_f(r['fad'], 1)} | {r[mk]:.4f} | {sm['median']:.2f} / {sm['max']:.2f} | "
                         f"{100 * sm['pass_rate']:.0f}% | {_f(r['wall_per_clip_s'], 1)} |")
        real = results.get("real_seams", {}).get(task)
        if real:
            lines.append(f"| *real music, no edit* ({real['n']} vocoded test clips, {real['boundaries']} random "
                         f"position{'s' if real['boundaries'] > 1 else ''} each) | | | {real['median']:.2f} / "
                         f"{real['max']:.2f} | {100 * real['pass_rate']:.0f}% | |")
        lines.append("")
    if results.get("pooled"):
        lines += ["## Audio quality pooled over tasks", "", "| Method | tasks | clips | FAD ↓ | KID×1e3 ↓ |",
                  "|---|---|---|---|---|"]
        for m, r in results["pooled"].items():
            lines.append(f"| {m} | {r['tasks']} | {r['n_clips']} | {r['fad']:.1f} | {1e3 * r['kid']:.1f} |")
        lines.append("")
    lines += ["Plots of each target against what each method achieved: `png/<task>_<i>.png`; audio: `audio/`.", ""]
    return "\n".join(lines)
