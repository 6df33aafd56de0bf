"""Vocoders against the original render, on real test clips, and the vocoder card.

Ground truth is the test clip's own audio, re-rendered from its dataset row (data/pairs.py,
checked against the stored mel); each vocoder gets the stored mel. Per clip: multi-resolution
STFT distance (spectral convergence + log-magnitude, Parallel WaveGAN's three resolutions) and
mel spectral convergence, both against the render; and wall seconds to vocode the 5.94 s clip
alone (batch 1) with the threads torch was given.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dittomusic.errors import DittoError
from dittomusic.utils import atomic_path, atomic_write_text, stable_hash

TARGET_RATIO = 2.0  # each distance at least 2x below Griffin-Lim's
TARGET_SECONDS = 0.10  # per 5.94 s clip on 2 CPU cores


def pick_test_clips(data: str | Path, n: int, seed: int = 0, soundfont: str | None = None,
                    clip_ids: list[str] | None = None) -> list[dict]:
    """n test clips (or those named), round-robin over collections in a seeded order: row, stored mel,
    re-rendered audio."""
    from dittomusic.data.dataset import read_clips
    from dittomusic.data.pairs import dataset_plan, renders_of, rerender

    plan = dataset_plan(data)
    hop, frames = plan["content"]["mel"]["hop_length"], plan["content"]["mel"]["clip_frames"]
    rows = read_clips(data, "test")
    if not rows:
        raise DittoError(f"{data} has no test clips")
    per = defaultdict(list)
    for r in sorted(rows, key=lambda r: stable_hash(seed, "vocoder-eval", r["clip_id"])):
        per[r["collection"]].append(r)
    picked, queues = [], [per[c] for c in sorted(per)]
    if clip_ids is not None:
        by_id = {r["clip_id"]: r for r in rows}
        missing = [c for c in clip_ids if c not in by_id]
        if missing:
            raise DittoError(f"{data} has no test clips {missing[:3]}: the report was made on another dataset")
        picked, queues = [by_id[c] for c in clip_ids], []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    audio = {(r["piece_id"], r["variant"]): r for r in rerender(data, renders_of(picked), soundfont)}
    out = []
    for r in picked:
        got = audio[(r["piece_id"], r["variant"])]
        if "error" in got:
            raise DittoError(f"cannot re-render test clip {r['clip_id']}: {got['error']}")
        if got["max_err"] > 1e-2:
            raise DittoError(f"the re-render of {r['clip_id']} does not match its stored mel (max error "
                             f"{got['max_err']:.3g}): another soundfont or FluidSynth than the dataset's?")
        s = (r["frame"] - r["seg_start"]) * hop
        mel = np.load(Path(data) / "shards" / f"{r['shard']}.npy", mmap_mode="r")[r["frame"]:r["frame"] + frames]
        out.append({"row": r, "mel": torch.from_numpy(np.asarray(mel, np.float32).T.copy()),
                    "audio": torch.from_numpy(got["pcm"][s:s + (frames - 1) * hop].astype(np.float32) / 32767.0)})
    return out


def compare_vocoders(clips: list[dict], vocoders: dict, mel_cfg, progress: bool = True) -> dict:
    """Metrics and timing per vocoder over the clips; keeps the first clip's audio for the figure."""
    from tqdm.auto import tqdm

    from dittomusic.audio.losses import mel_spectral_convergence, mrstft_distance
    from dittomusic.audio.mel import MelSpectrogram

    mod = MelSpectrogram(mel_cfg)
    rows, example = {}, {"original": clips[0]["audio"].numpy()}
    clip_s = (clips[0]["mel"].shape[-1] - 1) * mel_cfg.hop_length / mel_cfg.sample_rate
    for name, voc in vocoders.items():
        with torch.inference_mode():
            voc(clips[0]["mel"])  # warm-up: first-call allocations are not vocoding time
            per = defaultdict(list)
            for c in tqdm(clips, desc=name, disable=not progress, leave=False):
                t = time.perf_counter()
                wav = voc(c["mel"])
                per["seconds"].append(time.perf_counter() - t)
                per["mrstft"].append(mrstft_distance(c["audio"], wav))
                per["mel_sc"].append(mel_spectral_convergence(c["audio"], wav, mel=mod))
                if c is clips[0]:
                    example[name] = wav.numpy()
        s = statistics.median(per["seconds"])
        rows[name] = {"mrstft_distance": float(np.mean(per["mrstft"])), "mel_spectral_convergence":
                      float(np.mean(per["mel_sc"])), "mrstft_median": float(np.median(per["mrstft"])),
                      "mel_sc_median": float(np.median(per["mel_sc"])), "seconds_per_clip": s,
                      "realtime_x": clip_s / s, "per_clip": {k: [round(v, 5) for v in vs] for k, vs in per.items()}}
    report = {"clips": len(clips), "clip_seconds": clip_s, "threads": torch.get_num_threads(),
              "clip_ids": [c["row"]["clip_id"] for c in clips], "vocoders": rows}
    if "griffinlim" in rows and "neural" in rows:
        gl, nn_ = rows["griffinlim"], rows["neural"]
        report["neural_vs_griffinlim"] = {
            "mrstft_ratio": gl["mrstft_distance"] / nn_["mrstft_distance"],
            "mel_sc_ratio": gl["mel_spectral_convergence"] / nn_["mel_spectral_convergence"],
            "speedup": gl["seconds_per_clip"] / nn_["seconds_per_clip"]}
        r = report["neural_vs_griffinlim"]
        report["targets"] = {"distances_2x_better": bool(min(r["mrstft_ratio"], r["mel_sc_ratio"]) >= TARGET_RATIO),
                             "seconds_per_clip_le_0.10": bool(nn_["seconds_per_clip"] <= TARGET_SECONDS)}
    return report, example


def evaluate_vocoders(data: str | Path, weights: str | Path | None = None, clips: int = 24, seed: int = 0,
                      soundfont: str | None = None, progress: bool = True,
                      variants: list[dict] | None = None) -> tuple[dict, dict]:
    """Griffin-Lim and the neural vocoder (bundled or `weights`) on the same test clips, in one run;
    `variants`: the same weights again under other synthesis settings (e.g. {"gl_iters": 8}), each its own row."""
    from dittomusic.audio.mel import MelConfig
    from dittomusic.audio.vocoder import get_vocoder
    from dittomusic.data.pairs import dataset_plan

    mel_cfg = MelConfig(**dataset_plan(data)["content"]["mel"])
    neural = get_vocoder("neural", mel_cfg, device="cpu", weights=weights)
    test = pick_test_clips(data, clips, seed, soundfont)
    vocoders = {"griffinlim": get_vocoder("griffinlim", mel_cfg), "neural": neural}
    for v in variants or []:
        vocoders["neural " + " ".join(f"{k}={x}" for k, x in v.items())] = get_vocoder(
            "neural", mel_cfg, device="cpu", weights=neural.weights, **v)
    report, example = compare_vocoders(test, vocoders, mel_cfg, progress)
    report.update(weights=neural.weights, data=str(data), seed=seed, torch=torch.__version__,
                  example_clip=test[0]["row"]["clip_id"], example_caption=test[0]["row"]["caption"])
    return report, example


def example_audio(data: str | Path, clip_id: str, weights: str | Path | None = None,
                  soundfont: str | None = None) -> dict:
    """One test clip's original render and both vocoders' audio, for the card's figure."""
    from dittomusic.audio.mel import MelConfig
    from dittomusic.audio.vocoder import get_vocoder
    from dittomusic.data.pairs import dataset_plan

    mel_cfg = MelConfig(**dataset_plan(data)["content"]["mel"])
    c = pick_test_clips(data, 1, soundfont=soundfont, clip_ids=[clip_id])[0]
    with torch.inference_mode():
        return {"original": c["audio"].numpy(), "griffinlim": get_vocoder("griffinlim", mel_cfg)(c["mel"]).numpy(),
                "neural": get_vocoder("neural", mel_cfg, device="cpu", weights=weights)(c["mel"]).numpy()}


def plot_comparison(example: dict, mel_cfg, out_png: str | Path, title: str = "") -> Path:
    """Rows: original render, Griffin-Lim, neural. Left: the whole clip's log-mel; right: one second of
    the linear STFT below 4 kHz, where Griffin-Lim's phase smear shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dittomusic.audio.mel import MelSpectrogram

    mod = MelSpectrogram(mel_cfg)
    names = [n for n in ("original", "griffinlim", "neural") if n in example]
    labels = {"original": "original render", "griffinlim": "Griffin-Lim", "neural": "neural vocoder"}
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 2.4 * len(names)), squeeze=False, layout="constrained",
                             gridspec_kw={"width_ratios": [3, 1.3]})
    sr, hop = mel_cfg.sample_rate, mel_cfg.hop_length
    t0 = len(example["original"]) // 2
    seg = slice(t0, t0 + sr)
    for ax, name in zip(axes, names):
        wav = torch.as_tensor(example[name])
        with torch.no_grad():
            mel = mod(wav).numpy()
            spec = torch.stft(wav[seg], 2048, 128, window=torch.hann_window(2048), return_complex=True).abs()
        ax[0].imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1,
                     extent=(0, mel.shape[1] * hop / sr, 0, mel.shape[0]))
        ax[0].set_ylabel(f"{labels[name]}\nmel bin", fontsize=8)
        db = 20 * np.log10(spec.numpy() + 1e-6)
        fmax_bin = int(4000 / (sr / 2048))
        ax[1].imshow(db[:fmax_bin], origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                     extent=(t0 / sr, t0 / sr + 1, 0, 4000))
        ax[1].set_ylabel("Hz", fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    axes[-1, 1].set_xlabel("seconds (zoom, linear STFT)")
    if title:
        fig.suptitle(title, fontsize=9)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_png


def report_markdown(report: dict) -> str:
    rows = report["vocoders"]
    label = {"griffinlim": "Griffin-Lim (NNLS + 32 iterations)", "neural": "**neural (ConvNeXt + iSTFT)**"}
    lines = ["| vocoder | MR-STFT distance ↓ | mel spectral convergence ↓ | s per 5.94 s clip | × real time |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {label.get(name, name)} | {r['mrstft_distance']:.3f} | {r['mel_spectral_convergence']:.3f} "
                     f"| {r['seconds_per_clip']:.3f} | {r['realtime_x']:.0f} |")
    if "neural_vs_griffinlim" in report:
        c = report["neural_vs_griffinlim"]
        lines.append(f"| Griffin-Lim / neural | {c['mrstft_ratio']:.2f}x | {c['mel_sc_ratio']:.2f}x "
                     f"| {c['speedup']:.1f}x faster | |")
    lines += ["", f"{report['clips']} test clips (never heard in training), {report['threads']} CPU "
              f"thread{'s' if report['threads'] != 1 else ''}, "
              f"means over clips (medians: " + ", ".join(
                  f"{n} {r['mrstft_median']:.3f} / {r['mel_sc_median']:.3f}" for n, r in rows.items()) + ")."]
    if "targets" in report:
        t = report["targets"]
        c = report["neural_vs_griffinlim"]
        verdict = {True: "met", False: "**not met**"}
        lines.append(f"Targets (≥ {TARGET_RATIO:g}x below Griffin-Lim's): MR-STFT {c['mrstft_ratio']:.2f}x, "
                     f"{verdict[c['mrstft_ratio'] >= TARGET_RATIO]}; mel spectral convergence {c['mel_sc_ratio']:.2f}x, "
                     f"{verdict[c['mel_sc_ratio'] >= TARGET_RATIO]}; ≤ {TARGET_SECONDS:.2f} s per clip: "
                     f"{verdict[t['seconds_per_clip_le_0.10']]}.")
    return "\n".join(lines)


def write_vocoder_card(weights: str | Path, report: dict, example: dict, out_dir: str | Path,
                       loss_png: str | Path | None = None, notes: list[str] | None = None) -> Path:
    """docs/vocoder/README.md (+ report.json, spectrograms.png, loss.png) for a vocoder release."""
    from dittomusic.audio.mel import MelConfig
    from dittomusic.audio.neural import load_vocoder

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net, meta = load_vocoder(weights)
    vc, tr, tc = meta["vocoder_config"], meta.get("train", {}), meta.get("train_config", {})
    mel_cfg = MelConfig(**{k: v for k, v in (vc.get("mel") or {}).items()})
    params = sum(p.numel() for p in net.parameters())
    slim = {k: v for k, v in report.items()}
    slim["vocoders"] = {n: {k: v for k, v in r.items()} for n, r in report["vocoders"].items()}
    atomic_write_text(out_dir / "report.json", json.dumps(slim, indent=1))
    plot_comparison(example, mel_cfg, out_dir / "spectrograms.png",
                    f"{report.get('example_clip', '')}: {report.get('example_caption', '')}")
    data_info = ""
    build = Path(report.get("data", "")) / "build.json"
    if build.is_file():
        b = json.loads(build.read_text())
        data_info = f" of the {b['hours']:.1f} h dataset ({b['pieces']} pieces)"
    rows = report["vocoders"]
    n = rows.get("neural", {})
    lines = [
        "# Neural vocoder", "",
        f"`{Path(weights).name}`: mel → audio for every dittomusic command (the default whenever this file is "
        "installed as `assets/vocoder.safetensors`; `--vocoder griffinlim` keeps the old Griffin-Lim).", "",
        "## Model", "",
        f"- Vocos design: {vc['layers']} ConvNeXt blocks (width {vc['dim']}, MLP {vc['intermediate']}, kernel "
        f"{vc['kernel']}) at the mel frame rate, and an iSTFT head that predicts the log-magnitude"
        f"{'' if vc.get('phase') == 'locked' else ' and phase'} of a "
        f"{vc['n_fft']}-point STFT at hop {vc['hop_length']}, inverted with `torch.istft`. "
        f"{params / 1e6:.2f} M parameters; differentiable from the waveform back to the mel.",
        {"locked": f"- Phase: not learned. Identity phase locking on the predicted magnitude (each bin takes the "
                   f"phase of its nearest peak, which advances at the peak's interpolated frequency), then "
                   f"{vc.get('gl_iters', 16)} Griffin-Lim projections"
                   + (f" with fast Griffin-Lim's momentum {vc['gl_momentum']:g}" if vc.get("gl_momentum") else "")
                   + " (`dittomusic.audio.phase`)"
                   + (f", each also moving every bin {net.mel_step:g} of the way (in log) towards the input mel's "
                      "band energies, so the audio's own mel converges to the one it was given." if net.matches_mel
                      else "."),
         "recurrent": "- Phase: carried from frame to frame (per bin: instantaneous-frequency offset, local phase, reset "
                      "gate), so sustained tones keep their pitch between the 86 Hz lines a per-frame head is held to.",
         "direct": "- Phase: predicted per frame (the Vocos head)."}[vc.get("phase", "recurrent")],
        ("- Magnitude: predicted directly." if not vc.get("magnitude_prior", True) else
         "- Magnitude: a learned correction to the mel's pseudo-inverse at the head's resolution."
         if net.cfg.prior == "pinv" else
         "- Magnitude: a learned log-magnitude correction to the mel's power spread evenly over each band's bins."),
        f"- Input: the dataset's {vc['n_mels']}-bin scaled log-mel (window 2048, hop {vc['hop_length']}, "
        f"{vc['sample_rate']} Hz); output: (frames - 1) × hop samples, aligned like Griffin-Lim's.", "",
        "## Training", "",
        f"- Data: {tr.get('train_hours', '?')} h of train pieces{data_info}, re-rendered with FluidSynth from the "
        "clip rows and checked against the stored mels (`dittomusic vocoder pairs`); random "
        f"{tc.get('segment_frames', '?')}-frame segments, batch {tr.get('batch_size', '?')}. Test pieces were "
        "never rendered for training.",
        "- Losses: " + " + ".join(
            [f"{tc.get('mel_weight', 1):g} × mel L1 (log mel magnitude)"] * bool(tc.get("mel_weight", 1))
            + [f"{tc.get('stft_weight', 1):g} × multi-resolution STFT (spectral convergence + log-magnitude L1 at "
               "n_fft 512/1024/2048)"] * bool(tc.get("stft_weight", 1))
            + [f"{tc.get('spectrum_weight', 0):g} × the head's own "
               f"{'magnitude' if vc.get('phase') == 'locked' else 'spectrum'} against the true {vc['n_fft']}-point STFT "
               "(spectral convergence + log-magnitude L1"
               + (", + instantaneous-frequency and group-delay terms)" if vc.get("phase") != "locked" else ")")]
            * bool(tc.get("spectrum_weight", 0)))
        + (f"; adversarial: multi-period + multi-resolution discriminators, hinge × {tc.get('adv_weight'):g}, "
           f"feature matching × {tc.get('fm_weight'):g}." if tc.get("adversarial") else
           "; no adversarial loss."),
        f"- Compute: {tr.get('steps', '?')} steps, AdamW lr {tc.get('lr', '?')} with warm-up and cosine decay, "
        f"on {tr.get('processes', '?')} CPU process{'es' if tr.get('processes', 1) != 1 else ''}: **{tr.get('cpu_hours', '?')} CPU-hours** "
        f"({tr.get('wall_hours', '?')} h wall). Exported weights: {meta.get('weights', 'ema')} (fp16). "
        f"Final training loss {tr.get('final_loss') or float('nan'):.3f}, validation {tr.get('final_val_loss') or float('nan'):.3f}.",
        ""]
    if loss_png and Path(loss_png).exists():
        if Path(loss_png).resolve() != (out_dir / "loss.png").resolve():
            shutil.copyfile(loss_png, out_dir / "loss.png")
        lines += ["![loss](loss.png)", ""]
    lines += ["## Against Griffin-Lim", "", report_markdown(report), "",
              "Distances are to the original render of each test clip; both vocoders get the same stored mel. "
              "MR-STFT uses Parallel WaveGAN's resolutions (1024/120/600, 2048/240/1200, 512/50/240); mel spectral "
              "convergence is ‖M(x) − M(x̂)‖ / ‖M(x)‖ on mel magnitudes. They measure fit to held-out music, not "
              "perceptual quality.", "",
              "![spectrograms](spectrograms.png)", "",
              "Rows: original render, Griffin-Lim, neural. Left: log-mel of the whole clip; right: one second "
              "of a linear STFT below 4 kHz.", "",
              "## Speed", "",
              f"{n.get('seconds_per_clip', float('nan')):.3f} s per 5.94 s clip ({n.get('realtime_x', 0):.0f}x real "
              f"time) on {report['threads']} CPU thread{'s' if report['threads'] != 1 else ''}, batch 1, median "
              f"over clips; Griffin-Lim {rows.get('griffinlim', {}).get('seconds_per_clip', float('nan')):.3f} s.", "",
              "## Reproduce", "",
              "With the dataset in `data/full` (`dittomusic dataset build --out data/full`); every stage resumes:",
              "", "```bash",
              "RUNS=runs scripts/vocoder.sh pairs   # re-render 8 h of train audio beside the dataset",
              f"RUNS=runs NPROC=2 STEPS={tc.get('steps', 22000)} scripts/vocoder.sh train   # torchrun, 2 processes",
              "dittomusic vocoder export runs/vocoder runs/vocoder.safetensors"
              + f" --gl-iters {vc.get('gl_iters', 16)} --mel-match {net.mel_step:g} --gl-momentum {vc.get('gl_momentum', 0):g}",
              "python benchmarks/vocoder.py --data data/full --weights runs/vocoder.safetensors --clips 24 --threads 2 "
              "> vocoder_bench.json",
              "dittomusic vocoder card --data data/full --weights runs/vocoder.safetensors --report vocoder_bench.json "
              "--loss-png runs/vocoder/loss.png --out docs/vocoder", "```", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {x}" for x in notes] + [""]
    path = out_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path
