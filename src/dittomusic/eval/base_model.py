"""`dittomusic eval model`: tag adherence and FAD of the base model, against real clips.

Generated clips are conditioned on the tags of real test clips (collection, instruments,
tempo, mode), so the classifier sees the same tag distribution in both sets. FAD sets
all have the same size, since FAD is biased by the sample count, and are measured
against all test clips.
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


def _pick(ds: MelDataset, per_collection: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    by = defaultdict(list)
    for i, r in enumerate(ds.rows):
        by[r["collection"]].append(i)
    out = []
    for c in sorted(by):
        idx = by[c]
        out += [idx[j] for j in sorted(rng.choice(len(idx), min(per_collection, len(idx)), replace=False))]
    return out


def _stack(ds: MelDataset, idx: list[int], key: str) -> torch.Tensor:
    return torch.stack([ds[i][key] for i in idx])


def _generate(pipe: Pipeline, tags: list[Tags] | None, n: int, seed: int, batch: int, progress: bool, **kw):
    from tqdm.auto import tqdm

    mels = []
    bar = tqdm(total=n, desc="generating" if tags else "generating (unconditional)", disable=not progress)
    for s in range(0, n, batch):
        k = min(batch, n - s)
        x_T = pipe.noise(k, pipe.model.cfg.clip_frames, seed + s)
        with torch.no_grad():
            mels.append(pipe.sample(x_T, tags[s:s + k] if tags else None, **kw).cpu())
        bar.update(k)
    bar.close()
    return torch.cat(mels)


def evaluate_model(model: str | Path | None, data: str | Path, classifier: str | Path, *, per_collection: int = 40,
                   sampler: str = "ddim", steps: int = 20, guidance: float = 3.0, seed: int = 0, batch: int = 16,
                   device: str | None = None, progress: bool = True) -> dict:
    t0 = time.time()
    pipe = Pipeline(model, device)
    clf, clf_meta = load_classifier(classifier, pipe.device)
    test = MelDataset(data, "test", random_crop=False)
    val = MelDataset(data, "val", random_crop=False)
    names = test.vocab.collections
    idx = _pick(test, per_collection, seed)
    n = len(idx)
    test_all = list(range(len(test)))
    real = _stack(test, idx, "mel")
    coll, fams = _stack(test, idx, "collection"), _stack(test, idx, "families")
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"])
            for r in (test.rows[i] for i in idx)]
    kw = dict(sampler=sampler, steps=steps, guidance=guidance)
    gen = _generate(pipe, tags, n, seed, batch, progress, **kw)
    t_gen = time.time() - t0
    uncond = _generate(pipe, None, n, seed + 10**6, batch, progress, **kw)
    val_idx = _pick(val, per_collection, seed)[:n]

    emb = lambda m: predict(clf, m)["embedding"].numpy()  # noqa: E731
    ref = emb(_stack(test, test_all, "mel"))
    p_real, p_gen = predict(clf, real), predict(clf, gen)
    m_real, m_gen = tag_metrics(p_real, coll, fams, names), tag_metrics(p_gen, coll, fams, names)
    fads = {"generated": fad(p_gen["embedding"].numpy(), ref),
            "validation": fad(emb(_stack(val, val_idx, "mel")), ref),
            "unconditional": fad(emb(uncond), ref)}
    report = {
        "model": str(model or "bundled"), "model_train": pipe.meta.get("train", {}),
        "settings": {"per_collection": per_collection, "n": n, "sampler": sampler, "steps": steps,
                     "guidance": guidance, "seed": seed, "fad_reference": f"all {len(test_all)} test clips"},
        "classifier": {"path": str(classifier), "test": clf_meta.get("test")},
        "real": m_real, "generated": m_gen,
        "accuracy_ratio": m_gen["collection_accuracy"] / max(m_real["collection_accuracy"], 1e-9),
        "fad": fads, "fad_ratio_generated_over_validation": fads["generated"] / max(fads["validation"], 1e-12),
        "seconds": {"total": round(time.time() - t0, 1), "conditional_generation": round(t_gen, 1)},
    }
    return report


def report_markdown(r: dict) -> str:
    lines = [f"Model: {r['model']} ({r['model_train'].get('steps', '?')} steps, "
             f"{r['model_train'].get('cpu_hours', '?')} CPU-h); {r['settings']['n']} clips per set, "
             f"{r['settings']['sampler']} {r['settings']['steps']} steps, guidance {r['settings']['guidance']}",
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
    return "\n".join(lines)
