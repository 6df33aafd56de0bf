"""`dittomusic eval student`: a distilled student's 1/2/4/8-step samples against its teacher's
20-step guided DDIM, from the same noise and the same tags, plus its model card.

Per row: classifier collection accuracy and family F1, FAD against all real test clips (every
row has the same number of clips, so their FAD bias is the same), MSE to the teacher's sample
from the same x_T (how faithfully the student maps noise to music: what DITTO-2's surrogate relies
on), seconds per clip, and the realism yardstick of `eval model` (C2ST against the picked test
clips, grain and mean flatness against theirs, the blown-out share). A latent student's samples are
decoded by its teacher's autoencoder, with the texture noise the teacher's row used.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_write_text


def card_clips(test, clf, device, per_collection: int, seed: int) -> dict:
    """The student card's clips: per_collection test clips of each collection (n, their collection and
    family labels, tags, mels and piece ids) and the FAD reference (classifier embeddings of all test clips)."""
    from dittomusic.eval.base_model import pick_clips, stack_clips
    from dittomusic.eval.classifier import predict
    from dittomusic.generate import Tags

    idx = pick_clips(test, per_collection, seed)
    rows = [test.rows[i] for i in idx]
    return {"n": len(idx), "coll": stack_clips(test, idx, "collection"), "fams": stack_clips(test, idx, "families"),
            "tags": [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"]) for r in rows],
            "ref": predict(clf, stack_clips(test, list(range(len(test))), "mel").to(device))["embedding"].cpu().numpy(),
            "real": stack_clips(test, idx, "mel"), "groups": [r.get("piece_id", i) for i, r in zip(idx, rows)]}


def evaluate_student(student: str | Path | None, data: str | Path, classifier: str | Path | None = None, *,
                     teacher: str | Path | None = None, per_collection: int = 40, steps: tuple[int, ...] = (1, 2, 4, 8), teacher_steps: int = 20,
                     seed: int = 0, batch: int = 16, device: str | None = None, progress: bool = True,
                     realism: bool = True, c2st_repeats: int = 5, samples_png: str | Path | None = None,
                     fad_boot: int = 500, fad_limit: float = 1.3) -> dict:
    """The card's table: the teacher's 20-step DDIM and the student at each step count on the same
    x_T and tags. samples_png: also draw the first clips of two collections, real beside every row.
    Each student row's FAD / teacher carries a paired-bootstrap 95 % interval over the clips (fad_boot
    resamples; 0: none) and the share of resamples within fad_limit (the issue's 1.3x target). Resampled
    sets repeat clips, which adds about the same to both FADs and pulls each ratio toward 1: the interval
    is a little narrow and slightly favourable, a sense of the noise rather than a test."""
    from tqdm.auto import tqdm

    from dittomusic.distill.student import get_student, student_sampler
    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.base_model import generate_mels
    from dittomusic.eval.classifier import load_classifier, predict, tag_metrics
    from dittomusic.eval.fad import fad, frechet_distance, gaussian_stats, paired_ratio_ci
    from dittomusic.eval.realism import measures, realism_report
    from dittomusic.generate import Pipeline
    from dittomusic.models.loading import bundled_path

    if not steps or min(steps) < 1:
        raise DittoError(f"--steps needs positive step counts, got {steps}")
    pipe = Pipeline(teacher, device)
    st, meta = get_student(student, pipe.device)
    if st.cfg.vocab != pipe.model.cfg.vocab:
        raise DittoError("the student was distilled from a model with a different tag vocabulary than the teacher")
    clf, _ = load_classifier(classifier or bundled_path("classifier"), pipe.device)
    test = MelDataset(data, "test", random_crop=False)
    names = test.vocab.collections
    cs = card_clips(test, clf, pipe.device, per_collection, seed)
    n, coll, fams, tags, ref, real, groups = (cs[k] for k in ("n", "coll", "fams", "tags", "ref", "real", "groups"))
    real_m = measures(real) if realism else None

    def yardstick(mels: torch.Tensor) -> dict:
        if not realism:
            return {}
        r = realism_report(real, mels, seed=seed, device=pipe.device, real_measures=real_m,
                           c2st_kwargs={"groups": (groups, None), "repeats": c2st_repeats})
        return {"c2st": r["c2st"]["accuracy"], "grain_ratio": r["ratio"]["grain"],
                "flatness_ratio": r["ratio"]["flatness_mean"], "blown_out": r["outliers"]["saturated"]}

    def score(mels: torch.Tensor, seconds: float, label: dict, teacher: torch.Tensor | None) -> dict:
        p = predict(clf, mels.to(pipe.device))
        p = {k: v.cpu() for k, v in p.items()}
        e = p["embedding"].numpy()
        embs.append(e)
        m = tag_metrics(p, coll, fams, names)
        return {**label, "collection_accuracy": m["collection_accuracy"], "family_micro_f1": m["family_micro_f1"],
                "fad": fad(e, ref), "seconds_per_clip": seconds / n,
                "mse_to_teacher": None if teacher is None else float(((mels - teacher) ** 2).mean()), **yardstick(mels)}

    embs = []  # classifier embeddings per row, for the FAD ratio's interval
    t0 = time.perf_counter()
    teacher = generate_mels(pipe, tags, n, seed, batch, progress, sampler="ddim", steps=teacher_steps,
                        guidance=meta["guidance"])
    rows = [score(teacher, time.perf_counter() - t0,
                  {"sampler": f"teacher DDIM, CFG {meta['guidance']:g}", "steps": teacher_steps,
                   "passes_per_clip": 2 * teacher_steps}, None)]
    sample = student_sampler(st, meta)
    firsts = sorted({coll[i].item(): i for i in reversed(range(n))}.values())[:2]  # first clip of two collections
    shown = [("real", real[firsts]), (f"teacher {teacher_steps}-step DDIM", teacher[firsts])]
    for k in steps:
        t0 = time.perf_counter()
        out = []
        for s in tqdm(range(0, n, batch), desc=f"student {k}-step", disable=not progress):
            b = min(batch, n - s)
            x_T = pipe.noise(b, pipe.model.cfg.clip_frames, seed + s)  # the teacher's noise, batch for batch
            with torch.no_grad():
                x0 = sample(x_T, pipe.cond(tags[s:s + b], b), k)
                out.append(pipe.backend.decode(x0, torch.Generator().manual_seed(seed + s + 1)).cpu())
        mels = torch.cat(out)
        shown.append((f"student ({meta['kind']}) {k}-step", mels[firsts]))
        rows.append(score(mels, time.perf_counter() - t0,
                          {"sampler": f"student ({meta['kind']})", "steps": k, "passes_per_clip": k}, teacher))
    if samples_png is not None:
        from dittomusic.spectrogram import plot_mels

        titles = [f"{label}: {names[coll[i].item()]}" for label, _ in shown for i in firsts]
        Path(samples_png).parent.mkdir(parents=True, exist_ok=True)
        plot_mels([m.numpy() for _, ms in shown for m in ms], titles, samples_png, pipe.mel_cfg)
    base = rows[0]
    for r in rows:
        r["fad_over_teacher"] = r["fad"] / base["fad"]
        r["accuracy_over_teacher"] = r["collection_accuracy"] / max(base["collection_accuracy"], 1e-9)
    if fad_boot > 0:
        ref_stats = gaussian_stats(ref)  # once: each resample then costs one covariance and one sqrtm

        def ref_distance(x):
            return frechet_distance(*gaussian_stats(x), *ref_stats)
        for r, e in zip(rows[1:], embs[1:]):
            ci = paired_ratio_ci(e, embs[0], ref_distance, boot=fad_boot, seed=seed, limit=fad_limit)
            r["fad_ratio_ci95"], r["fad_ratio_share_within"] = ci["ci95"], ci["share_within_limit"]
    return {"student": str(student or "bundled"), "kind": meta["kind"], "guidance": meta["guidance"],
            "grid": meta["grid"], "train": meta.get("train", {}), "train_config": meta.get("train_config", {}),
            "distill": meta.get("distill", {}),
            "teacher_sha1": meta.get("distill", {}).get("teacher_sha1"),
            "settings": {"per_collection": per_collection, "n": n, "seed": seed, "teacher_steps": teacher_steps,
                         "c2st_repeats": c2st_repeats if realism else None,
                         "fad_boot": fad_boot, "fad_limit": fad_limit,
                         "fad_reference": f"all {len(test)} test clips", "device": str(pipe.device)},
            "rows": rows}


def report_markdown(r: dict) -> str:
    tr = r["train"]
    real = "c2st" in r["rows"][0]
    lines = [f"Student: {r['student']} ({r['kind'].upper()}, guidance {r['guidance']:g} baked in, "
             f"{tr.get('steps', '?')} distillation steps, {tr.get('cpu_hours', '?')} CPU-h); "
             f"{r['settings']['n']} clips per row, the same x_T and tags in every row; FAD vs "
             f"{r['settings']['fad_reference']}"
             + (f" (FAD / teacher's interval: paired bootstrap over the clips, {r['settings']['fad_boot']} resamples)"
                if r["settings"].get("fad_boot") else "")
             + (f"; C2ST ({r['settings'].get('c2st_repeats')} splits), grain and flatness against the "
                f"{r['settings']['n']} test clips whose tags the rows use" if real else "") + ".", "",
             "| sampler | steps | network passes / clip | s / clip | collection acc ↑ | family F1 ↑ | FAD ↓ | "
             "FAD / teacher (95 %) | MSE to teacher ↓ |" + (" C2ST ↓ | grain ×real | flatness ×real | blown out |" if real else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if real else "")]
    for x in r["rows"]:
        mse = "–" if x["mse_to_teacher"] is None else f"{x['mse_to_teacher']:.4f}"
        line = (f"| {x['sampler']} | {x['steps']} | {x['passes_per_clip']} | {x['seconds_per_clip']:.3f} | "
                f"{x['collection_accuracy']:.3f} | {x['family_micro_f1']:.3f} | {x['fad']:.2f} | "
                f"{x['fad_over_teacher']:.2f}{_ci(x)} | {mse} |")
        if real:
            line += (f" {x['c2st']:.3f} | {x['grain_ratio']:.2f} | {x['flatness_ratio']:.2f} | "
                     f"{100 * x['blown_out']:.1f} % |")
        lines.append(line)
    return "\n".join(lines)


def _ci(row: dict) -> str:
    ci = row.get("fad_ratio_ci95")
    return f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""


def write_student_card(student: str | Path, report: dict, out_dir: str | Path, loss_png: str | Path | None = None,
                       notes: list[str] | None = None) -> Path:
    """README.md (+ report.json, loss.png) describing a student release."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1))
    d, tr = {**report.get("train_config", {}), **report["distill"]}, report["train"]
    solver = ("one step between adjacent grid points" if report["kind"] == "cd" else
              f"1 to {d.get('teacher_steps', '?')} steps from t to u (drawn per step); the EMA "
              "target's jump from u to an earlier s is what the student's jump from t to s must match")
    lines = [f"# Distilled student: {report['kind'].upper()}", "",
             f"`{Path(student).name}`: a one-pass-per-step student of the bundled base model for DITTO-2 "
             "(`dittomusic control TASK --method ditto2`)"
             + (f", distilled from the teacher file with sha1 `{report['teacher_sha1'][:12]}`"
                if report.get("teacher_sha1") else "") + ".", "",
             "## Training", "",
             f"- Kind: {'consistency distillation' if report['kind'] == 'cd' else 'consistency trajectory distillation'}; "
             f"student initialised from {'an earlier student (below)' if tr.get('continued_from') else 'the teacher'}, EMA target (decay {d.get('target_decay', '?')}), "
             f"exported weights: {d.get('weights', 'ema')} (decay {d.get('ema_decay', '?')}).",
             f"- Teacher solver: CFG DDIM (guidance {report['guidance']:g}, baked in) on a "
             f"{len(report['grid']) - 1}-interval grid ending at the clean end; {solver}.",
             f"- {tr.get('steps', '?')} steps at batch {tr.get('batch_size', '?')} on {tr.get('processes', '?')} "
             f"CPU processes: **{tr.get('cpu_hours', '?')} CPU-hours** ({tr.get('wall_hours', '?')} h wall). "
             f"Final loss {tr.get('final_loss') or float('nan'):.2e}; validation (1-jump MSE to the teacher's "
             f"sample) {tr.get('final_val_loss') or float('nan'):.4f}."]
    prev = tr.get("continued_from")
    if prev:
        lines += [f"- Continued (`distill --init`) from a student of {prev.get('steps', '?')} steps "
                  f"({prev.get('total_cpu_hours', prev.get('cpu_hours', '?'))} CPU-h): with a fresh optimizer and LR "
                  f"schedule (peak {d.get('lr', '?')}); **{tr.get('total_cpu_hours', '?')} CPU-hours in all**."]
    lines += [""]
    if loss_png and Path(loss_png).exists():
        if Path(loss_png).resolve() != (out_dir / "loss.png").resolve():
            shutil.copyfile(loss_png, out_dir / "loss.png")
        lines += ["![loss](loss.png)", ""]
    lines += ["## Samples against the teacher", "", report_markdown(report), ""]
    if (out_dir / "samples.png").exists():
        lines += ["Spectrograms: the first test clip of two collections, real, then the teacher and each student row "
                  "from the same x_T and tags (samples.png).", "", "![samples](samples.png)", ""]
    lines += [
              f"Reproduce: `dittomusic eval student --student {report['kind']} --data DATA --out DIR` (the bundled "
              "release; `--student FILE` for another).", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {x}" for x in notes] + [""]
    path = out_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def best_decode_steps(report: dict, max_fad_ratio: float = 1.5) -> int | None:
    """Fewest student steps whose FAD is within max_fad_ratio of the teacher's (None if none is)."""
    ok = [x["steps"] for x in report["rows"][1:] if x["fad_over_teacher"] <= max_fad_ratio]
    return min(ok) if ok else None


__all__ = ["card_clips", "evaluate_student", "report_markdown", "write_student_card", "best_decode_steps"]
