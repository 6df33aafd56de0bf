"""Model card and training-curve reports, written from measured files only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dittomusic.utils import atomic_path, atomic_write_text


def plot_curve(points: list[dict], out_png: str | Path) -> Path:
    """FAD and tag accuracy of training snapshots against training CPU-hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(points, key=lambda p: p["cpu_hours"])
    h = [p["cpu_hours"] for p in pts]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    a1.plot(h, [p["fad"]["generated"] for p in pts], "o-", label="FAD(generated, test)")
    a1.plot(h, [p["fad"]["unconditional"] for p in pts], "s--", label="FAD(unconditional, test)")
    a1.plot(h, [p["fad"]["validation"] for p in pts], ":", color="k", label="FAD(validation, test)")
    a1.plot(h, [3 * p["fad"]["validation"] for p in pts], ":", color="C3", label="target: 3x validation")
    a1.set_yscale("log")
    a1.set_xlabel("training CPU-hours")
    a1.set_title("FAD (tag-classifier embedding)")
    a1.legend(fontsize=8)
    a2.plot(h, [p["generated"]["collection_accuracy"] for p in pts], "o-", label="generated")
    a2.plot(h, [p["real"]["collection_accuracy"] for p in pts], ":", color="k", label="real test clips")
    a2.plot(h, [0.8 * p["real"]["collection_accuracy"] for p in pts], ":", color="C3", label="target: 80% of real")
    a2.set_ylim(0, 1)
    a2.set_xlabel("training CPU-hours")
    a2.set_title("collection accuracy of the classifier")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out_png


# --------------------------------------------------------------------------- the base-model bake-off table
def bakeoff_row(report: dict, name: str) -> dict:
    train = report.get("model_train", {})
    out = {"name": name, "model": report.get("model"), "steps": train.get("steps"),
           "cpu_hours": train.get("cpu_hours"), "accuracy_ratio": round(report["accuracy_ratio"], 3),
           "fad_ratio": round(report["fad_ratio_generated_over_validation"], 2),
           "clips": report["settings"]["n"]}
    rr = report.get("realism")
    if rr:
        r = rr["ratio"]
        out.update({"c2st": round(rr["c2st"]["accuracy"], 3) if rr.get("c2st") else None,
                    "grain_ratio": round(r["grain"], 2), "flatness_ratio": round(r["flatness_mean"], 2),
                    "prominence_ratio": round(r["prominence_db_mean"], 2),
                    "stability_ratio": round(r["stability_mean"], 2),
                    "texture_fad": round(rr["texture_fad"], 2)})
    return out


BAKEOFF_COLUMNS = [("name", "route"), ("steps", "steps"), ("cpu_hours", "CPU-h"), ("c2st", "C2ST ↓ (≤ 0.75)"),
           ("grain_ratio", "grain ×real (≤ 1.3)"), ("flatness_ratio", "flatness ×real (≤ 1.3)"),
           ("prominence_ratio", "prominence ×real"), ("stability_ratio", "stability ×real"),
           ("texture_fad", "texture FAD ↓"), ("accuracy_ratio", "tag acc. ratio (≥ 0.9)"),
           ("fad_ratio", "FAD / val (≤ 1.5)")]


def bakeoff_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(c for _, c in BAKEOFF_COLUMNS) + " |", "|" + "---|" * len(BAKEOFF_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join("–" if r.get(k) is None else str(r[k]) for k, _ in BAKEOFF_COLUMNS) + " |")
    return "\n".join(lines)


def write_model_card(model: str | Path, report: dict, dataset_build: dict, out_dir: str | Path,
                     loss_png: str | Path | None = None, curve: list[dict] | None = None,
                     examples_png: str | Path | None = None, limitations: list[str] | None = None,
                     realism_png: str | Path | None = None, bakeoff: list[tuple[str, dict]] | None = None,
                     reproduce: list[str] | None = None) -> Path:
    """The model card (README.md in out_dir). `bakeoff`: (route name, `eval model` report) pairs for the
    bake-off table; `reproduce`: the commands that rebuild the model (default: the v1 recipe)."""
    from dittomusic.checkpoint import load_tensors, sampling_defaults
    from dittomusic.eval.base_model import report_markdown

    _, meta = load_tensors(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, mc, tc = meta["train"], meta["model_config"], meta["train_config"]
    imgs = []
    for src, name in ((loss_png, "loss.png"), (examples_png, "examples.png"), (realism_png, "realism.png")):
        if src:
            if Path(src).resolve() != (out_dir / name).resolve():
                shutil.copyfile(src, out_dir / name)
            imgs.append(name)
    if curve:
        plot_curve(curve, out_dir / "curve.png")
        atomic_write_text(out_dir / "curve.json", json.dumps(curve, indent=2))
    n_params = None
    try:
        from dittomusic.models.loading import load_model

        n_params = load_model(model)[0].num_params()
    except Exception:
        pass
    lines = ["# dittomusic base model card", "", *_model_lines(meta, n_params),
        "", "## Data", "",
        f"- {dataset_build['hours']:.2f} h, {dataset_build['clips']} clips from {dataset_build['pieces']} pieces of "
        "music21's public-domain corpus, rendered with FluidSynth (FluidR3 GM): "
        + ", ".join(f"{k} {v:.2f} h" for k, v in dataset_build["hours_per_collection"].items()) + ".",
        "- Splits by piece: " + ", ".join(f"{k} {v:.2f} h" for k, v in dataset_build["hours_per_split"].items()) + ".",
        "", "## Training", "",
        f"- {tr['steps']} steps, global batch {tc['batch_size']}, AdamW lr {tc['lr']} with {tc['warmup']} warm-up "
        f"steps and cosine decay over {tc['steps']} steps, EMA {tc['ema_decay']}, tag dropout {tc['tag_drop']} "
        f"per tag + {tc['all_drop']} all tags.",
        f"- Compute: {tr['cpu_hours']:.2f} CPU-hours ({tr['wall_hours']:.2f} h wall, {tr['processes']} "
        f"process{'es' if tr['processes'] != 1 else ''} on 2 CPU cores).",
        f"- Final training loss (v-MSE, last log interval) {tr['final_loss']:.4f}; last validation loss (EMA "
        f"weights, {tc.get('val_clips', 64)} fixed val clips, step {tr.get('final_val_step', '?')}) {tr['final_val_loss']:.4f}.",
    ]
    prev = tr.get("continued_from")
    if isinstance(prev, dict):  # `train --init`: this run continued an earlier release
        lines[-3] = f"- Continued from a release trained {prev.get('steps', '?')} steps ({prev.get('cpu_hours', 0):.2f} " \
            f"CPU-hours), then: " + lines[-3][2:]
        lines[-2] += f" Total compute, every phase: {tr.get('total_cpu_hours', 0):.2f} CPU-hours."
    if "loss.png" in imgs:
        lines += ["", "![loss curve](loss.png)"]
    lines += ["", "## Evaluation", "", "Yardstick: a tag classifier trained on real clips "
              "(`dittomusic eval classifier`); FAD uses its 128-d penultimate layer.", "", report_markdown(report)]
    if curve:
        lines += ["", "### Against training compute", "", "![FAD and accuracy vs CPU-hours](curve.png)", "",
                  "| step | CPU-h | FAD gen | FAD uncond | FAD val | acc gen | acc real |", "|---|---|---|---|---|---|---|"]
        for p in sorted(curve, key=lambda p: p["cpu_hours"]):
            lines.append(f"| {p['step']} | {p['cpu_hours']:.2f} | {p['fad']['generated']:.3f} | "
                         f"{p['fad']['unconditional']:.3f} | {p['fad']['validation']:.3f} | "
                         f"{p['generated']['collection_accuracy']:.3f} | {p['real']['collection_accuracy']:.3f} |")
    if report.get("realism") or "realism.png" in imgs:
        lines += ["", "### Realism", "",
                  "Yardstick for texture (`dittomusic.eval.realism`): grain (frame-to-frame change), spectral "
                  "flatness, harmonic prominence and partial stability (do partials persist over 46 ms?) of "
                  "active frames, background level, onset concentration, a texture FAD and a classifier "
                  "two-sample test (C2ST: a small CNN trained to tell real test clips from generated ones, "
                  "scored on held-out 1.5 s windows; 0.5 = indistinguishable). Issue 17 targets: C2ST <= 0.75, "
                  "grain and mean flatness within 1.3x of real."]
        if report.get("realism"):
            from dittomusic.eval.realism import realism_markdown

            lines += ["", realism_markdown(report["realism"], title=None)]
        if "realism.png" in imgs:
            lines += ["", "Real test clips (left) and clips generated with the same tags (right), one row per "
                      "collection, all on the same colour scale (-120 to +40 dB):", "",
                      "![real vs generated](realism.png)"]
    if "examples.png" in imgs:
        sm = sampling_defaults(meta)
        lines += ["", "## Examples", "", f"One generated clip per collection (seed 0, {sm['sampler']} 20 steps, "
                  f"guidance {sm['guidance']:g}: the model's defaults):", "",
                  "![generated examples](examples.png)"]
    if bakeoff:
        lines += ["", "## Bake-off", "", "Every route trained for the same CPU budget and scored with the same "
                  "yardstick (`python benchmarks/base_bakeoff.py runs/eval_*.json --markdown`):", "",
                  bakeoff_markdown([bakeoff_row(r, name) for name, r in bakeoff])]
    lines += ["", "## Reproduce", "", "```bash", *(reproduce or _v1_recipe(tc, report)), "```", ""]
    if limitations:
        lines += ["## Limitations", "", *[f"- {x}" for x in limitations], ""]
    speed = out_dir / "speed.json"  # from benchmarks/generate_speed.py, if it was run into the card folder
    if speed.exists():
        lines += speed_markdown(json.loads(speed.read_text()))
    path = out_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def speed_markdown(sp: dict) -> list[str]:
    """The card's speed section from benchmarks/generate_speed.py's JSON (older files too: DDIM at 3 when
    the model named no sampler, no side-by-side vocoder rows)."""
    key = sp.get("default", "ddim-20-cfg3")
    main = sp["samplers"][key]
    total = sp.get("default_total_s", sp.get("ddim20_cfg_total_s"))
    others = "".join(f" {_vocoder_name(k)} in the same run: {v:.2f} s." for k, v in sp.get("vocoders_s", {}).items()
                     if k != sp["vocoder"])
    prec = sp.get("precision")
    if prec and prec != "fp32" and sp.get("default_fp32_total_s") is not None:
        others += f" The same in fp32: {sp['default_fp32_total_s']:.2f} s in all."
    return ["## Speed", "", f"`python benchmarks/generate_speed.py` ([speed.json](speed.json)): one "
            f"{sp['clip_seconds']:.2f} s clip at the model's defaults ({key}{', ' + prec if prec else ''}) takes "
            f"{main['sampling_s']:.2f} s to sample plus {sp['vocoder_s']:.2f} s of the vocoder "
            f"({_vocoder_name(sp['vocoder'])}), {total:.2f} s in all ({sp['realtime_factor']:.1f}x real time) on "
            f"{sp['cpu_count']} CPU cores.{others}", ""]


def _vocoder_name(cls_name: str) -> str:
    return {"NeuralVocoder": "neural", "GriffinLimVocoder": "Griffin-Lim"}.get(cls_name, cls_name)


def _v1_recipe(tc: dict, report: dict) -> list[str]:
    return ["dittomusic dataset build --out data/full",
            "torchrun --nproc_per_node 2 -m dittomusic train --data data/full --out runs/base --steps "
            f"{tc['steps']} --batch-size {tc['batch_size']}"
            + (f" --max-minutes {tc['max_minutes']:g}" if tc.get("max_minutes") else ""),
            "dittomusic export runs/base --out src/dittomusic/assets/base.safetensors",
            "dittomusic eval classifier --data data/full --out runs/classifier.safetensors",
            f"dittomusic eval model --data data/full --classifier runs/classifier.safetensors "
            f"--per-collection {report['settings']['per_collection']} --out runs/eval.json"]


def _model_lines(meta: dict, n_params: int | None) -> list[str]:
    """The card's opening and Model section, for a mel-space or a latent model of any architecture."""
    mc, ae = meta["model_config"], meta.get("autoencoder")
    arch = mc.get("arch", "mel_dit")
    params = f", {n_params / 1e6:.1f} M parameters" if n_params else ""
    if ae:
        amc, atr = ae["model_config"], ae.get("train", {})
        head = ("A tag-conditioned latent diffusion model of log-mels, the default model behind every "
                "dittomusic command.")
        net = [f"- Autoencoder: a 1-D conv VAE over time with the {amc['n_mels']} mel bins as channels "
               f"(levels {amc['channels']}, {amc['blocks']} residual blocks each) to a {amc['latent_channels']}-channel "
               f"latent at 1/{2 ** (len(amc['channels']) - 1)} of the frame rate; latent scale "
               f"{amc['latent_scale']:.3f}; trained {atr.get('steps', '?')} steps ({atr.get('cpu_hours', '?')} CPU-h). "
               "Controls read the decoded mel, differentiably through the decoder."]
        tex = ae.get("texture")
        if amc.get("texture_edges") and tex:
            net.append("- Decoder texture noise: Gaussian noise per mel bin and decoded level (std "
                       f"{', '.join(f'{v:g}' for v in tex['std_db_per_level'])} dB from the quietest level up) "
                       "restores the frame-to-frame jitter the mean decoder loses, calibrated on "
                       f"{tex['clips']} training clips (`dittomusic autoencoder texture`); seeded, no gradient.")
        unit = f"{mc.get('patch_frames', 1)} latent frame(s) x {mc['n_mels']} channels per token"
    else:
        head = "A tag-conditioned log-mel diffusion model, the default model behind every dittomusic command."
        net = []
        unit = f"{mc.get('patch_frames', '?')} frames x {mc['n_mels']} mel bins per token"
    if arch == "unet1d":
        net.append(f"- MelUNet: a 1-D conv U-Net over time (channels {mc.get('channels')}){params}.")
    else:
        net.append(f"- MelDiT: a transformer over frame patches ({unit}), width {mc['width']}, depth {mc['depth']}, "
                   f"{mc['heads']} heads{params}.")
    return [head, "", "## Model", "", *net,
            "- Conditioning: diffusion time and tags (collection, instruments, tempo bucket, mode) through adaLN-Zero; "
            "each tag has a learned null embedding for classifier-free guidance.",
            f"- Cosine schedule, 1000 steps; output {mc['prediction']} from an EDM-preconditioned network "
            f"(sigma_data {mc['sigma_data']}).",
            f"- Clip: {mc['clip_frames'] * (2 ** (len(ae['model_config']['channels']) - 1) if ae else 1)} mel frames "
            "at hop 256 and 22,050 Hz (5.94 s).",
            "- Weights: fp16 EMA weights in safetensors" + (", the autoencoder embedded in the same file." if ae else "."),
            _sampling_line(meta)]


def _sampling_line(meta: dict) -> str:
    from dittomusic.checkpoint import sampling_defaults

    sm, why = sampling_defaults(meta), (meta.get("sampling") or {}).get("why")
    return (f"- Generates by default with {sm['sampler']}, guidance {sm['guidance']:g}"
            + (f" ({why})." if why else " (the file names no defaults)."))


def realism_figure(model: str | Path | None, data: str | Path, out_png: str | Path, seed: int = 0,
                   steps: int = 20, guidance: float | None = None, device: str | None = None,
                   sampler: str | None = None, per_collection: int = 1, precision: str = "auto") -> Path:
    """Real test clips (per_collection per collection) beside clips generated with their tags (same colour
    scale); sampler, guidance and precision default to what `generate` uses."""
    import torch

    from dittomusic.data.dataset import MelDataset
    from dittomusic.eval.base_model import pick_clips
    from dittomusic.eval.realism import plot_side_by_side
    from dittomusic.generate import Pipeline, Tags

    pipe = Pipeline(model, device, precision=precision)
    test = MelDataset(data, "test", random_crop=False)
    idx = pick_clips(test, per_collection, seed)
    rows = [test.rows[i] for i in idx]
    real = torch.stack([test[i]["mel"] for i in idx])
    tags = [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"]) for r in rows]
    x_T = pipe.noise(len(tags), real.shape[-1] // pipe.model.frames_per_step, seed)  # model frames (latent: fewer)
    sampler, guidance = pipe.resolve(sampler, guidance)
    with torch.no_grad():
        gen = pipe.sample(x_T, tags, sampler=sampler, steps=steps, guidance=guidance,
                          generator=torch.Generator().manual_seed(seed + 1)).cpu()
    labels = [f"{r['collection']} ({', '.join(r['instruments'])}; {r['tempo_bucket']}, {r['mode']})" for r in rows]
    return plot_side_by_side(real, gen, labels, out_png, pipe.mel_cfg,
                             title=f"real test clips | generated with their tags ({sampler} {steps}, guidance {guidance:g}, "
                                   f"{pipe.precision})")


def example_grid(model: str | Path | None, out_png: str | Path, seed: int = 0, steps: int = 20,
                 guidance: float | None = None, precision: str = "auto") -> Path:
    """One generated clip per collection, as a spectrogram grid (as `generate` makes them)."""
    import torch

    from dittomusic.data.stats import plot_mels
    from dittomusic.generate import Pipeline, Tags

    pipe = Pipeline(model, precision=precision)
    tags = [Tags(c) for c in pipe.vocab["collections"]]
    x_T = pipe.noise(len(tags), pipe.model.cfg.clip_frames, seed)
    with torch.no_grad():
        mel = pipe.sample(x_T, tags, steps=steps, guidance=guidance, generator=torch.Generator().manual_seed(seed + 1))
    return plot_mels([m.numpy() for m in mel], [f"generated: {t.collection}" for t in tags], out_png, pipe.mel_cfg)
