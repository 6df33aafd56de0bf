"""`dittomusic clap eval` and `clap card`: retrieval and zero-shot numbers for a domain CLAP.

- Retrieval on test pieces: one clip per render (clips of one render share every caption
  attribute but the loudness trend, so keeping them all would make most "misses" ties),
  text->audio and audio->text R@1 and R@10 against chance (K / N), with captions in training
  phrasings ("seen") and in held-out templates with held-out synonyms ("held-out"). A relaxed
  variant counts a retrieved clip as right when the caption truthfully describes it.
- Zero-shot on every test clip: collection (argmax over prompt-ensembled collection prompts) and
  instrument family (the top family prompt is one of the clip's families), beside the tag
  classifier's accuracy on the same clips (its argmax collection; its top family logit).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dittomusic.clap.captions import COLLECTION_WORDS, FAMILY_WORDS, matches, read_captions
from dittomusic.utils import atomic_write_text

COLLECTION_PROMPTS = ("A recording of a {}.", "{} music.", "This is a {}.")
FAMILY_PROMPTS = ("Music played on {}.", "A piece for {}.")


@torch.no_grad()
def embed_mels(model, mels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([model.embed_audio(mels[i:i + batch].float()) for i in range(0, len(mels), batch)])


def recall(sim: torch.Tensor, ks=(1, 10), ok: torch.Tensor | None = None) -> dict:
    """sim [N text, N audio], pair i = (text i, audio i). ok [N, N]: also-right answers (relaxed)."""
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    right = eye if ok is None else (ok | eye)
    out = {}
    for name, s, r in (("text_to_audio", sim, right), ("audio_to_text", sim.T, right.T)):
        order = s.argsort(dim=1, descending=True)
        hits = torch.gather(r, 1, order)
        for k in ks:
            out[f"{name}_R@{k}"] = float(hits[:, :k].any(1).float().mean())
    out.update({f"chance_R@{k}": min(1.0, k / n) for k in ks})
    return out


def prompt_classes(model, encoder, words: dict, prompts: tuple[str, ...], names: list[str]) -> torch.Tensor:
    """One unit embedding per class: the mean over prompts x synonyms (training and held-out ones)."""
    out = []
    for n in names:
        train, held = words.get(n, ((n,), ()))
        texts = [p.format(w) for p in prompts for w in (*train, *held)]
        texts = [t[0].upper() + t[1:] for t in texts]
        e = model.embed_text(sentence_embeddings(encoder, texts, model.cfg.text_encoder))
        out.append(torch.nn.functional.normalize(e.mean(0), dim=0))
    return torch.stack(out)


def sentence_embeddings(encoder, texts: list[str], expected: str) -> torch.Tensor:
    from dittomusic.errors import DittoError

    if getattr(encoder, "name", None) != expected:
        raise DittoError(f"this CLAP was trained on {expected} sentence embeddings, not {encoder.name}")
    # fp16-rounded like the training cache, so a prompt scores as its cached caption did
    return encoder.encode(texts).half().float()


@torch.no_grad()
def evaluate_clap(weights: str | Path, data: str | Path, captions: str | Path, classifier: str | Path | None = None,
                  encoder=None, split: str = "test", progress: bool = True) -> dict:
    from dittomusic.clap.model import load_clap
    from dittomusic.clap.text import SentenceEncoder
    from dittomusic.clap.train import ClipBatches, load_text_embeddings
    from dittomusic.errors import DittoError

    model, meta = load_clap(weights)
    table = read_captions(captions)
    text_emb, enc_name = load_text_embeddings(captions, table)
    if enc_name != model.cfg.text_encoder:
        raise DittoError(f"the captions in {captions} were embedded with {enc_name}, the CLAP with "
                         f"{model.cfg.text_encoder}")
    encoder = encoder or SentenceEncoder()
    clips = ClipBatches(data, table, split, 0, 10 ** 9)
    s = table["splits"][split]
    if "heldout" not in s:
        raise DittoError(f"the {split} split has no evaluation captions")
    mels = torch.stack([clips.ds[i]["mel"] for i in range(len(clips))])
    audio = embed_mels(model, mels)
    cons = np.asarray(table["constraints"], dtype=np.int64)
    attrs = clips.attrs

    # retrieval: the first clip of each render
    seen_render, pick = set(), []
    for i, r in enumerate(clips.ds.rows):
        key = (r["piece_id"], r.get("variant", 0))
        if key not in seen_render:
            seen_render.add(key)
            pick.append(i)
    pick_t = torch.tensor(pick)
    report: dict = {"weights": str(weights), "data": str(data), "split": split, "clips": len(clips),
                    "pieces": len({r["piece_id"] for r in clips.ds.rows}), "retrieval_clips": len(pick),
                    "retrieval": {}}
    for kind in ("seen", "heldout"):
        tids = np.array([s[kind][i][0] for i in pick])
        t = model.embed_text(text_emb[tids])
        sim = t @ audio[pick_t].T
        ok = torch.from_numpy(matches(cons[tids], attrs[pick]))
        report["retrieval"][kind] = {**recall(sim), "relaxed": recall(sim, ok=ok),
                                     "example_caption": table["texts"][int(tids[0])]}

    # zero-shot collection and family on every clip
    vocab = table["vocab"]
    coll_e = prompt_classes(model, encoder, COLLECTION_WORDS, COLLECTION_PROMPTS, vocab["collections"])
    fam_e = prompt_classes(model, encoder, FAMILY_WORDS, FAMILY_PROMPTS, vocab["families"])
    coll_true = torch.from_numpy(attrs[:, 0])
    fam_mask = torch.from_numpy(attrs[:, 7])
    coll_pred = (audio @ coll_e.T).argmax(1)
    fam_top = (audio @ fam_e.T).argmax(1)
    fam_hit = ((fam_mask >> fam_top) & 1).bool()
    zs = {"collection_accuracy": float((coll_pred == coll_true).float().mean()),
          "collection_accuracy_per": {n: float((coll_pred == coll_true)[coll_true == i].float().mean())
                                      for i, n in enumerate(vocab["collections"]) if (coll_true == i).any()},
          "family_top1_accuracy": float(fam_hit.float().mean()),
          "chance_collection": 1 / len(vocab["collections"]),
          "prompts": {"collection": list(COLLECTION_PROMPTS), "family": list(FAMILY_PROMPTS)}}
    report["zero_shot"] = zs
    if classifier is not False:
        report["classifier"] = classifier_baseline(classifier, mels, coll_true, fam_mask, vocab)
        c = report["classifier"]
        report["zero_shot_vs_classifier"] = {
            "collection": zs["collection_accuracy"] / max(c["collection_accuracy"], 1e-9),
            "family_top1": zs["family_top1_accuracy"] / max(c["family_top1_accuracy"], 1e-9)}
    report["model"] = {"clap_config": meta["clap_config"], "train": meta.get("train", {}),
                       "parameters": sum(p.numel() for p in model.parameters())}
    return report


def classifier_baseline(path, mels: torch.Tensor, coll_true: torch.Tensor, fam_mask: torch.Tensor, vocab: dict) -> dict:
    from dittomusic.errors import DittoError
    from dittomusic.eval.classifier import load_classifier, predict
    from dittomusic.models.loading import bundled_path

    path = path or bundled_path("classifier")
    clf, _ = load_classifier(path)
    if list(clf.cfg.collections) != list(vocab["collections"]) or list(clf.cfg.families) != list(vocab["families"]):
        raise DittoError(f"the tag classifier {path} was trained on other collections or families than the captions")
    pred = predict(clf, mels)
    top = pred["family_logits"].argmax(1)
    return {"path": str(path), "collection_accuracy": float((pred["collection"] == coll_true).float().mean()),
            "family_top1_accuracy": float(((fam_mask >> top) & 1).float().mean())}


def _num(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def report_markdown(report: dict) -> list[str]:
    lines = [f"Test split: {report['clips']} clips from {report['pieces']} pieces; retrieval over "
             f"{report['retrieval_clips']} clips (one per render).", "",
             "| captions | T→A R@1 | T→A R@10 | A→T R@1 | A→T R@10 | chance R@1 / R@10 | T→A R@10 relaxed |",
             "|---|---|---|---|---|---|---|"]
    for kind, label in (("seen", "training phrasings"), ("heldout", "held-out phrasings")):
        r = report["retrieval"][kind]
        lines.append(f"| {label} | {_pct(r['text_to_audio_R@1'])} | {_pct(r['text_to_audio_R@10'])} | "
                     f"{_pct(r['audio_to_text_R@1'])} | {_pct(r['audio_to_text_R@10'])} | "
                     f"{_pct(r['chance_R@1'])} / {_pct(r['chance_R@10'])} | "
                     f"{_pct(r['relaxed']['text_to_audio_R@10'])} |")
    r = report["retrieval"]["heldout"]
    lines += ["", f"R@10 text→audio with held-out phrasings is **{r['text_to_audio_R@10'] / r['chance_R@10']:.1f}x "
                  f"chance** (target: 5x). Example held-out caption: “{r['example_caption']}”", ""]
    zs, c = report["zero_shot"], report.get("classifier")
    lines += ["| zero-shot from text prompts | CLAP | tag classifier (supervised) | ratio |", "|---|---|---|---|"]
    for key, label, ck in (("collection_accuracy", "collection accuracy", "collection"),
                           ("family_top1_accuracy", "instrument family (top-1 in the clip's families)", "family_top1")):
        if c:
            lines.append(f"| {label} | {_pct(zs[key])} | {_pct(c[key])} | "
                         f"{report['zero_shot_vs_classifier'][ck]:.2f} |")
        else:
            lines.append(f"| {label} | {_pct(zs[key])} | – | – |")
    lines += ["", f"Chance for collection: {_pct(zs['chance_collection'])}. Target: zero-shot collection accuracy at "
                  "least 0.7 of the classifier's. Per collection: " +
              ", ".join(f"{k} {_pct(v)}" for k, v in zs["collection_accuracy_per"].items()) + "."]
    return lines


def _tower(cc: dict) -> str:
    c = cc["channels"]
    if cc.get("audio_tower", "conv1d") == "conv2d":
        return (f"4 strided 3x3 conv layers over mel bins x frames ({max(8, c // 4)}–{c} channels), then mean and "
                f"max over the remaining bins")
    return f"4 strided conv layers ({c}–{2 * c} channels, the {cc['n_mels']} mel bins as input channels)"


def write_clap_card(report: dict, out_dir: str | Path, loss_png: str | Path | None = None) -> Path:
    """docs/clap/README.md (+ report.json and the loss curve) for a CLAP release."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1))
    m = report["model"]
    cc, tr = m["clap_config"], m.get("train", {})
    lines = ["# Domain CLAP", "",
             "A text–audio contrastive model trained on this project's dataset, the scorer for text control "
             "(issue #21): the cosine between a caption and a clip's log-mel, differentiable in the mel. "
             "`dittomusic clap score --clap FILE --prompt TEXT AUDIO` scores a file.", "",
             "## Model", "",
             f"- Audio tower: {_tower(cc)}, {cc['layers']} transformer layers, mean+max pooling → "
             f"{cc['embed_dim']}-d. Text tower: frozen {cc['text_encoder']} sentence embeddings → a trained 2-layer "
             f"MLP. {m['parameters'] / 1e6:.2f} M trained parameters.",
             "- Captions: several phrasings per clip generated from its metadata (collection, instruments and "
             "families with synonyms, tempo words and BPM, key and mode, the clip's loudness trend, partial "
             "descriptions). 4 templates and some synonyms are held out of training (`dittomusic.clap.captions`).",
             "- Loss: symmetric InfoNCE with a learnable temperature; every clip of the batch that a caption "
             "truthfully describes counts as a positive.", ""]
    if tr:
        lines += ["## Training", "",
                  f"{tr.get('steps')} steps at batch {tr.get('batch_size')} on {tr.get('train_clips')} train clips, "
                  f"{tr.get('cpu_hours')} CPU-hours ({tr.get('wall_hours')} h wall, {tr.get('processes')} "
                  f"process{'es' if tr.get('processes', 1) > 1 else ''}); final loss {_num(tr.get('final_loss'))}, "
                  f"validation loss {_num(tr.get('final_val_loss'))}.", ""]
    if loss_png and Path(loss_png).is_file():
        shutil.copyfile(loss_png, out_dir / "loss.png")
        lines += ["![loss](loss.png)", ""]
    lines += ["## Numbers", "", *report_markdown(report), ""]
    atomic_write_text(out_dir / "README.md", "\n".join(lines))
    return out_dir / "README.md"
