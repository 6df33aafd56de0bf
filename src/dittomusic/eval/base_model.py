"""`dittomusic eval model`: tag adherence, FAD and realism of the base model, against real clips.

Generated clips are conditioned on the tags of real test clips (collection, instruments,
tempo, mode), so the classifier sees the same tag distribution in both sets. FAD sets
all have the same size, since FAD is biased by the sample count, and are measured
against all test clips. The realism block (`eval/realism.py`: grain, spectral flatness,
harmonic prominence, background, onsets, texture FAD and a classifier two-sample test)
compares the same real test clips with the generated ones; validation clips against the
test clips give its reference values (what "as real as real" looks like).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dittomusic.data.dataset import MelDataset
from dittomusic.eval.classifier import load_classifier, predict, tag_metrics
from dittomusic.eval.fad import fad
from dittomusic.generate import Pipeline, Tags


def pick_clips(ds: MelDataset, per_collection: int, seed: int) -> list[int]:
    """Indices of up to per_collection random clips of each collection (seeded)."""
    rng = np.random.default_rng(seed)
    by = defaultdict(list)
    for i, r in enumerate(ds.rows):
        by[r["collection"]].append(i)
    out = []
    for c in sorted(by):
        idx = by[c]
        out += [idx[j] for j in sorted(rng.choice(len(idx), min(per_collection, len(idx)), replace=False))]
    return out


def stack_clips(ds: MelDataset, idx: list[int], key: str) -> torch.Tensor:
    """One field of the clips idx, stacked."""
    return torch.stack([ds[i][key] for i in idx])


def generate_mels(pipe: Pipeline, tags: list[Tags] | None, n: int, seed: int, batch: int, progress: bool, **kw):
    """n generated mels, batch by batch (seed + batch index); tags None: unconditional."""
    from tqdm.auto import tqdm

    mels = []
    bar = tqdm(total=n, desc="generating" if tags else "generating (unconditional)", disable=not progress)
    for s in range(0, n, batch):
        k = min(batch, n - s)
        x_T = pipe.noise(k, pipe.model.cfg.clip_frames, seed + s)
        with torch.no_grad():
            # a batch's own generator: ddpm's noise and the decoder's texture noise differ between batches
            mels.append(pipe.sample(x_T, tags[s:s + k] if tags else None, generator=torch.Generator().manual_seed(
                seed + s + 1), **kw).cpu())
        bar.update(k)
    bar.close()
    return torch.cat(mels)


def evaluate_model(model: str | Path | None, data: str | Path, classifier: str | Path, *, per_collection: int = 40,
                   sampler: str | None = None, steps: int = 20, guidance: float | None = None, seed: int = 0,
                   batch: int = 16,
                   device: str | None = None, progress: bool = True, realism: bool = True,
                   c2st_steps: int | None = None, c2st_repeats: int = 5, as_heard: bool = True,
                   precision: str = "auto") -> dict:
    """The report of `dittomusic eval model`; `realism=False` skips the realism block (and its C2ST
    training, ~1-2 min for 240 + 240 clips on 2 cores); `as_heard=False` skips its C2ST on the vocoded
    clips (`realism.as_heard_block`: two more C2STs and the vocoding of both sets). precision: generation's
    ("auto", as `generate` runs by default)."""
    t0 = time.time()
    pipe = Pipeline(model, device, precision=precision)
    sampler, guidance = pipe.resolve(sampler, guidance)  # None: the model's own defaults
    clf, clf_meta = load_classifier(classifier, pipe.device)
    test = MelDataset(data, "test", random_crop=False)
    val = MelDataset(data, "val", random_crop=False)
    names = test.vocab.collections
    idx = pick_clips(test, per_collection, seed)
    n = len(idx)
    test_all = list(range(len(test)))
    real = stack_clips(test, idx, "mel")
    coll, fams = stack_clips(test, idx, "collection"), stack_clips(test, idx, "families")
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"])
            for r in (test.rows[i] for i in idx)]
    kw = dict(sampler=sampler, steps=steps, guidance=guidance)
    gen = generate_mels(pipe, tags, n, seed, batch, progress, **kw)
    t_gen = time.time() - t0
    uncond = generate_mels(pipe, None, n, seed + 10**6, batch, progress, **kw)
    val_idx = pick_clips(val, per_collection, seed)[:n]

    emb = lambda m: predict(clf, m)["embedding"].numpy()  # noqa: E731
    ref = emb(stack_clips(test, test_all, "mel"))
    p_real, p_gen = predict(clf, real), predict(clf, gen)
    m_real, m_gen = tag_metrics(p_real, coll, fams, names), tag_metrics(p_gen, coll, fams, names)
    fads = {"generated": fad(p_gen["embedding"].numpy(), ref),
            "validation": fad(emb(stack_clips(val, val_idx, "mel")), ref),
            "unconditional": fad(emb(uncond), ref)}
    report = {
        "model": str(model or "bundled"), "model_train": pipe.meta.get("train", {}),
        "settings": {"per_collection": per_collection, "n": n, "sampler": sampler, "steps": steps,
                     "guidance": guidance, "seed": seed, "fad_reference": f"all {len(test_all)} test clips",
                     "precision": pipe.precision},
        "classifier": {"path": str(classifier), "test": clf_meta.get("test")},
        "real": m_real, "generated": m_gen,
        "accuracy_ratio": m_gen["collection_accuracy"] / max(m_real["collection_accuracy"], 1e-9),
        "fad": fads, "fad_ratio_generated_over_validation": fads["generated"] / max(fads["validation"], 1e-12),
    }
    if realism:
        report["realism"] = realism_block(real, gen, stack_clips(val, val_idx, "mel"), seed=seed, device=pipe.device,
                                          c2st_steps=c2st_steps, c2st_repeats=c2st_repeats,
                                          real_groups=[test.rows[i].get("piece_id", i) for i in idx])
        if as_heard:
            from dittomusic.eval.realism import as_heard_block

            groups = [test.rows[i].get("piece_id", i) for i in idx]
            report["realism"]["as_heard"] = as_heard_block(
                real, gen, pipe.vocoder, seed=seed, device=pipe.device,
                c2st_kwargs={"steps": c2st_steps, "groups": (groups, None), "repeats": c2st_repeats})
    report["seconds"] = {"total": round(time.time() - t0, 1), "conditional_generation": round(t_gen, 1)}
    return report


# the headline numbers of a report, read across several seeds' reports (None where a report lacks the block)
HEADLINES = {
    "c2st": lambda r: r.get("realism", {}).get("c2st", {}).get("accuracy"),
    "fad_ratio": lambda r: r["fad_ratio_generated_over_validation"],
    "accuracy_ratio": lambda r: r["accuracy_ratio"],
    "grain_ratio": lambda r: r.get("realism", {}).get("ratio", {}).get("grain"),
    "flatness_ratio": lambda r: r.get("realism", {}).get("ratio", {}).get("flatness_mean"),
    "blown_out": lambda r: r.get("realism", {}).get("outliers", {}).get("saturated"),
}


def across_seeds(reports: list[dict]) -> dict:
    """Per-seed headline numbers of `eval model` reports of one model at several --seed (other test clips, tags,
    validation clips and x_T each), with their mean, sd and range: one draw can sit far from another."""
    out = {"seeds": [r["settings"]["seed"] for r in reports]}
    for k, get in HEADLINES.items():
        vals = [get(r) for r in reports]
        if any(v is None for v in vals):
            continue
        t = torch.tensor(vals, dtype=torch.float64)
        out[k] = {"per_seed": [round(v, 4) for v in vals], "mean": round(float(t.mean()), 4),
                  "sd": round(float(t.std()), 4) if len(vals) > 1 else 0.0,
                  "min": round(float(t.min()), 4), "max": round(float(t.max()), 4)}
    return out


def realism_block(real: torch.Tensor, gen: torch.Tensor, val: torch.Tensor | None = None, *, seed: int = 0,
                  device=None, c2st_steps: int | None = None, real_groups: list | None = None,
                  c2st_repeats: int = 5) -> dict:
    """realism_report(real test clips, generated), plus the validation clips' ratios and texture
    FAD against the same test clips as a reference (no C2ST for them). `real_groups` (piece ids)
    keep each piece's clips on one side of the C2ST's train / held-out split."""
    from dittomusic.eval.realism import compare, measures, realism_report, texture_fad

    rm = measures(real)
    out = realism_report(real, gen, seed=seed, device=device, real_measures=rm,
                         c2st_kwargs={"steps": c2st_steps, "groups": (real_groups, None), "repeats": c2st_repeats})
    if val is not None and len(val) >= 2:
        vm = measures(val)
        ratio, delta = compare(rm, vm)
        out["reference_validation"] = {"measures": vm, "ratio": ratio, "delta": delta,
                                       "texture_fad": texture_fad(real, val)}
    return out


def report_markdown(r: dict) -> str:
    lines = [f"Model: {r['model']} ({r['model_train'].get('steps', '?')} steps, "
             f"{r['model_train'].get('cpu_hours', '?')} CPU-h); {r['settings']['n']} clips per set, "
             f"{r['settings']['sampler']} {r['settings']['steps']} steps, guidance {r['settings']['guidance']}"
             f"{', ' + r['settings']['precision'] if r['settings'].get('precision') else ''}",
             "", "| collection | real acc | generated acc |", "|---|---|---|"]
    for c, a in r["real"]["collection_accuracy_per"].items():
        lines.append(f"| {c} | {a:.3f} | {r['generated']['collection_accuracy_per'].get(c, float('nan')):.3f} |")
    lines.append(f"| **all** | **{r['real']['collection_accuracy']:.3f}** | **{r['generated']['collection_accuracy']:.3f}** |")
    lines += ["", f"Family micro-F1: real {r['real']['family_micro_f1']:.3f}, generated {r['generated']['family_micro_f1']:.3f}",
              f"Accuracy ratio generated/real: {r['accuracy_ratio']:.3f}", "",
              "| FAD vs test | value |", "|---|---|"]
    for k, v in r["fad"].items():
        lines.append(f"| {k} | {v:.3f} |")
    lines.append(f"\nFAD(generated)/FAD(validation): {r['fad_ratio_generated_over_validation']:.2f}")
    if r.get("realism"):
        from dittomusic.eval.realism import realism_markdown

        rr = r["realism"]
        lines += ["", realism_markdown(rr)]
        ref = rr.get("reference_validation")
        if ref:
            lines.append(f"Reference, validation vs test clips: grain {ref['ratio']['grain']:.2f}x, mean flatness "
                         f"{ref['ratio']['flatness_mean']:.2f}x, prominence {ref['ratio']['prominence_db_mean']:.2f}x, "
                         f"texture FAD {ref['texture_fad']:.2f}.")
    a = r.get("across_seeds")
    if a:
        names = {"c2st": "C2ST", "fad_ratio": "FAD/validation", "accuracy_ratio": "tag accuracy ratio",
                 "grain_ratio": "grain ×real", "flatness_ratio": "mean flatness ×real", "blown_out": "blown-out share"}
        lines += ["", f"**Across {len(a['seeds'])} seeds** ({', '.join(map(str, a['seeds']))}: each its own test clips, "
                  "tags, validation clips and x_T; the tables above are the first seed's)", "",
                  "| measure | per seed | mean | sd |", "|---|---|---|---|"]
        for k, name in names.items():
            if k in a:
                lines.append(f"| {name} | {', '.join(f'{v:.3f}' for v in a[k]['per_seed'])} | {a[k]['mean']:.3f} | "
                             f"{a[k]['sd']:.3f} |")
    return "\n".join(lines)
