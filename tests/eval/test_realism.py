"""The realism yardstick: its measures move the right way, and the C2ST tells what it should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dittomusic.eval import realism as R


def harmonic_mels(n: int, seed: int = 0, n_mels: int = 160, frames: int = 128) -> torch.Tensor:
    """Clean real-like scaled log-mels: notes of 8 partials (-20 dB per octave of harmonic number),
    each 15-45 frames long with a decaying envelope, over a -100 dB background."""
    import librosa

    rng = np.random.default_rng(seed)
    mf = librosa.mel_frequencies(n_mels + 2, fmin=0, fmax=11025)[1:-1]
    bw = np.gradient(mf)
    power = np.full((n, n_mels, frames), 1e-10)
    for c in range(n):
        t = 0
        while t < frames:
            dur = int(rng.integers(15, 45))
            f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
            env = np.exp(-np.arange(min(dur, frames - t)) / (0.7 * dur)) ** 2
            for h in range(1, 9):
                if f0 * h < 10000:
                    w = np.exp(-0.5 * ((mf - f0 * h) / (0.6 * bw)) ** 2)
                    power[c, :, t:t + len(env)] += 10 ** ((25 - 20 * np.log10(h)) / 10) * w[:, None] * env[None]
            t += dur
    db = 10 * np.log10(power)
    return torch.from_numpy(((np.clip(db, -120, 40) + 120) / 80 - 1).astype(np.float32))


@pytest.fixture(scope="module")
def clean():
    return harmonic_mels(12, seed=0)


def _m(x):
    return R.measures(x)


def test_measures_move_the_right_way(clean):
    c = _m(clean)
    noisy = _m(R.degrade(clean, "noise", -30.0))
    smeared = _m(R.degrade(clean, "smear", 2.0))
    # a clean harmonic stack: few flat frames, tall peaks, silent background, onset-concentrated flux
    assert c["flatness"]["mean"] < 0.01 and c["prominence_db"]["mean"] > 20 and c["background_db"]["mean"] < -80
    for d in (noisy, smeared):
        assert d["flatness"]["mean"] > 2 * c["flatness"]["mean"]
        assert d["flatness_db"]["mean"] > c["flatness_db"]["mean"] + 3
        assert d["prominence_db"]["mean"] < c["prominence_db"]["mean"] - 5
    assert noisy["grain"] > 2 * c["grain"]
    assert noisy["background_db"]["mean"] > c["background_db"]["mean"] + 20
    assert noisy["onset_concentration"]["mean"] < c["onset_concentration"]["mean"] - 0.2
    # and in between: milder noise moves them less
    mild = _m(R.degrade(clean, "noise", -55.0))
    assert c["grain"] < mild["grain"] < noisy["grain"]
    assert c["flatness"]["mean"] < mild["flatness"]["mean"] < noisy["flatness"]["mean"]
    assert c["prominence_db"]["mean"] > mild["prominence_db"]["mean"] > noisy["prominence_db"]["mean"]


def test_definitions_on_hand_made_frames():
    # one frame of white noise (all bins equal): flatness 1, no prominence; a single peak: flatness at the floor
    flat = torch.zeros(1, 160, 4)
    assert R.spectral_flatness(flat) == pytest.approx(np.ones(4), abs=1e-5)
    assert R.harmonic_prominence(flat) == pytest.approx(np.zeros(4), abs=1e-5)
    peak = torch.full((1, 160, 4), -1.0)
    peak[0, 20] = 0.5  # +0 dB peak over digital silence: floored at -60 dB
    fl = R.spectral_flatness(peak)
    expected = 10 ** (-6 * 159 / 160) / ((1 + 159 * 1e-6) / 160)
    assert fl == pytest.approx(np.full(4, expected), rel=1e-3)
    assert R.harmonic_prominence(peak) == pytest.approx(np.full(4, 60.0 / R.TOP_K), rel=1e-4)  # 1 peak of 5
    assert R.background_level(peak) == pytest.approx(np.full(4, -120.0), abs=1e-3)
    assert R.grain(peak) == 0.0 and R.grain(np.asarray(peak)) == 0.0  # numpy works too
    # inactive frames (40 dB below the clip's loudest) are left out
    quiet = peak.clone()
    quiet[..., :2] = -1.0 + (quiet[..., :2] + 1.0) * 0.4
    assert len(R.spectral_flatness(quiet)) == 2


def test_grain_matches_the_script_definition(clean):
    d = (clean[..., 1:] - clean[..., :-1]).abs().mean().item()
    assert R.grain(clean) == pytest.approx(d, rel=1e-6)
    assert R.grain(clean, per_clip=True).shape == (len(clean),)


def test_texture_fad_sees_degradation():
    a, b = harmonic_mels(24, seed=1), harmonic_mels(24, seed=2)
    same = R.texture_fad(a, b)
    worse = R.texture_fad(a, R.degrade(b, "noise", -30.0))
    assert math.isfinite(same) and worse > 5 * same


def test_texture_fad_ratio_interval_is_paired_and_sees_a_real_gap():
    real = R.texture_embedding(harmonic_mels(24, seed=5))
    a, b = harmonic_mels(16, seed=6), harmonic_mels(16, seed=7)
    ea, eb, noisy = (R.texture_embedding(x) for x in (a, b, R.degrade(b, "noise", -30.0)))
    self_ = R.texture_fad_ratio_ci(real, ea, ea, boot=50)
    assert self_["ratio"] == pytest.approx(1.0) and self_["ci95"] == pytest.approx([1.0, 1.0])
    assert self_["share_within_limit"] == 1.0  # paired: a set against itself is 1 in every resample
    gap = R.texture_fad_ratio_ci(real, noisy, eb, boot=100, seed=1)
    assert gap["ratio"] > 3 and gap["ci95"][0] > 1.1 and gap["share_within_limit"] == 0.0
    assert gap == R.texture_fad_ratio_ci(real, noisy, eb, boot=100, seed=1)  # seeded
    same = R.texture_fad_ratio_ci(real, ea, eb, boot=100)
    assert same["ci95"][0] < same["ratio"] < same["ci95"][1]
    with pytest.raises(ValueError, match="paired"):
        R.texture_fad_ratio_ci(real, ea, eb[:5])


FAST = dict(steps=60, crop=64, width=8, bootstrap=200)


@pytest.fixture(scope="module")
def c2st_sets():
    return harmonic_mels(40, seed=3), harmonic_mels(40, seed=4)


def test_c2st_same_distribution_is_near_chance_and_deterministic(c2st_sets):
    a, b = c2st_sets
    r1 = R.c2st(a, b, seed=0, **FAST)
    r2 = R.c2st(a, b, seed=0, **FAST)
    assert r1["accuracy"] == r2["accuracy"] and r1["train_accuracy"] == r2["train_accuracy"]
    assert r1["n_test"] == [20, 20] and r1["steps"] == 60 and r1["windows_per_clip"] == 2
    assert r1["accuracy"] <= 0.75, r1
    lo, hi = r1["ci95"]
    assert lo <= r1["accuracy"] <= hi and r1["clip_p_value"] > 0.01


def test_c2st_sees_clearly_degraded_clips(c2st_sets):
    a, b = c2st_sets
    r = R.c2st(a, R.degrade(b, "noise", -30.0), seed=0, **FAST)
    assert r["accuracy"] >= 0.9 and r["clip_accuracy"] >= 0.9 and r["clip_p_value"] < 1e-4, r


def test_c2st_repeats_average_independent_splits(c2st_sets):
    a, b = c2st_sets
    b = R.degrade(b, "jitter", 2.0)
    singles = [R.c2st(a, b, seed=s, **FAST)["accuracy"] for s in (3, 4, 5)]
    r = R.c2st(a, b, seed=3, repeats=3, **FAST)
    assert r["accuracies"] == singles and r["repeats"] == 3
    assert r["accuracy"] == pytest.approx(sum(singles) / 3)
    assert r["split_sd"] == pytest.approx(float(torch.tensor(singles).std()))
    md = R.realism_markdown(R.realism_report(a, b, c2st_kwargs=dict(FAST, steps=5, repeats=2)))
    assert "mean of 2 splits" in md


def test_c2st_split_keeps_groups_together():
    groups = [i // 3 for i in range(30)]  # 10 pieces of 3 clips
    for seed in range(5):
        tr, te = R._halves(30, groups, torch.Generator().manual_seed(seed))
        assert sorted(tr.tolist() + te.tolist()) == list(range(30))
        assert not {groups[i] for i in tr.tolist()} & {groups[i] for i in te.tolist()}
        assert 12 <= len(tr) <= 18


def test_c2st_validates_input():
    with pytest.raises(ValueError):
        R.c2st(torch.zeros(1, 160, 64), torch.zeros(4, 160, 64))
    with pytest.raises(ValueError):
        R.c2st(torch.zeros(4, 160, 64), torch.zeros(4, 80, 64))


def test_level_outliers_find_blown_out_and_silent_clips_a_mean_hides(clean):
    assert R.level_outliers(clean, clean[:6]) == {**R.level_outliers(clean, clean[:6]), "too_loud": 0.0,
                                                  "too_quiet": 0.0, "saturated": 0.0}
    gen = clean.clone()
    gen[0] = (gen[0] + 1.5).clamp(-1, 1)  # blown out: most bins at full scale
    gen[1] = gen[1] - 0.5  # 40 dB quieter than its real self
    o = R.level_outliers(clean, gen)
    n = len(gen)
    assert o["too_loud"] == pytest.approx(1 / n) and o["saturated"] == pytest.approx(1 / n)
    assert o["too_quiet"] == pytest.approx(1 / n) and o["real_saturated"] == 0.0
    assert "blown out" in R.realism_markdown(R.realism_report(clean, gen, with_c2st=False))


def test_report_markdown_and_figure(clean, tmp_path):
    gen = R.degrade(clean, "smear", 2.0)
    r = R.realism_report(clean, gen, c2st_kwargs=dict(FAST, steps=5))
    for k in ("real", "generated", "ratio", "delta", "texture_fad", "c2st"):
        assert k in r
    assert r["ratio"]["flatness_mean"] > 1 and r["ratio"]["prominence_db_mean"] < 1
    md = R.realism_markdown(r)
    assert "C2ST" in md and "| grain" in md and "Targets" in md
    png = R.plot_side_by_side(clean[:3], gen[:3], ["a", "b", "c"], tmp_path / "x.png")
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 600


def test_as_heard_keeps_a_real_mel_and_drops_texture_no_waveform_has(clean):
    """Vocoded and analysed again, a mel of harmonic notes keeps its notes, while white noise added to it
    (a mel no waveform has) mostly does not come back: the as-heard C2ST only counts audible detail."""
    from dittomusic.audio.vocoder import get_vocoder

    voc = get_vocoder("griffinlim")
    x = clean[:2]
    noisy = (x + 0.04 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    hx, hn = R.as_heard(x, voc), R.as_heard(noisy, voc)
    assert hx.shape == x.shape
    loud = x > x.amax((1, 2), keepdim=True) - 40 / 80  # the notes
    assert (hx - x)[loud].abs().mean() < 6 / 80  # within a few dB where the notes are
    grain = lambda m: float(m.diff(dim=-1)[loud[..., 1:]].abs().mean())  # noqa: E731
    assert grain(hn) - grain(hx) < 0.5 * (grain(noisy) - grain(x))


def test_eval_model_report_has_realism(tiny_dataset, tiny_model_path, clf, tmp_path):
    from dittomusic.eval.base_model import evaluate_model, report_markdown

    root, _ = tiny_dataset
    rep = evaluate_model(tiny_model_path, root, clf, per_collection=2, steps=2, progress=False, c2st_steps=5)
    rr = rep["realism"]
    n = rep["settings"]["n"]
    assert rr["real"]["n_clips"] == rr["generated"]["n_clips"] == n
    assert 0 <= rr["c2st"]["accuracy"] <= 1 and rr["c2st"]["steps"] == 5
    for k in ("grain", "flatness_mean", "prominence_db_mean"):
        assert math.isfinite(rr["ratio"][k])
    assert "reference_validation" in rr and math.isfinite(rr["reference_validation"]["texture_fad"])
    assert "C2ST held-out accuracy per" in report_markdown(rep)
    heard = rr["as_heard"]
    assert 0 <= heard["c2st"]["accuracy"] <= 1 and 0 <= heard["c2st_real_resynthesis"]["accuracy"] <= 1
    assert "C2ST as heard" in report_markdown(rep)
    assert "realism" not in evaluate_model(tiny_model_path, root, clf, per_collection=2, steps=1, progress=False,
                                           realism=False)


def test_eval_model_seeds_reports_every_draw_and_their_spread(tiny_dataset, tiny_model_path, clf, tmp_path):
    import json

    from click.testing import CliRunner

    from dittomusic.cli import cli

    root, _ = tiny_dataset
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["eval", "model", "--model", str(tiny_model_path), "--data", str(root), "--classifier",
                                 str(clf), "--per-collection", "2", "--steps", "1", "--c2st-steps", "3",
                                 "--c2st-repeats", "1", "--no-as-heard", "--seed", "3", "--seeds", "2",
                                 "--precision", "fp32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    a = rep["across_seeds"]
    assert a["seeds"] == [3, 4] and rep["settings"]["seed"] == 3
    for k in ("c2st", "fad_ratio", "accuracy_ratio", "flatness_ratio"):
        v = a[k]["per_seed"]
        assert len(v) == 2 and a[k]["min"] <= a[k]["mean"] <= a[k]["max"] and a[k]["sd"] >= 0
    assert a["fad_ratio"]["per_seed"][0] == pytest.approx(rep["fad_ratio_generated_over_validation"], abs=1e-4)
    assert a["fad_ratio"]["per_seed"][0] != a["fad_ratio"]["per_seed"][1]  # another draw, another number
    assert "Across 2 seeds" in out.with_suffix(".md").read_text()


def test_model_card_shows_realism(tiny_dataset, tiny_model_path, tmp_path):
    import json

    from click.testing import CliRunner

    from dittomusic.checkpoint import load_tensors, save_tensors
    from dittomusic.cli import cli

    root, _ = tiny_dataset
    sd, meta = load_tensors(tiny_model_path)
    meta = dict(meta, train={"steps": 1, "cpu_hours": 0.01, "wall_hours": 0.01, "processes": 1, "final_loss": 1.0,
                             "final_val_loss": 1.0},
                train_config={"batch_size": 2, "lr": 1e-3, "warmup": 1, "steps": 1, "ema_decay": 0.9,
                              "tag_drop": 0.1, "all_drop": 0.1})
    model = tmp_path / "m.safetensors"
    save_tensors(model, sd, meta)
    gen = R.degrade(harmonic_mels(4), "noise", -30.0)
    report = {"model": "m", "model_train": meta["train"],
              "settings": {"n": 4, "sampler": "ddim", "steps": 2, "guidance": 3.0, "per_collection": 2},
              "real": {"collection_accuracy_per": {"chorale": 1.0}, "collection_accuracy": 1.0, "family_micro_f1": 1.0},
              "generated": {"collection_accuracy_per": {"chorale": 0.5}, "collection_accuracy": 0.5,
                            "family_micro_f1": 0.5},
              "accuracy_ratio": 0.5, "fad": {"generated": 2.0, "validation": 1.0, "unconditional": 3.0},
              "fad_ratio_generated_over_validation": 2.0,
              "realism": R.realism_report(harmonic_mels(4), gen, c2st_kwargs=dict(FAST, steps=3))}
    rp = tmp_path / "report.json"
    rp.write_text(json.dumps(report))
    out = tmp_path / "card"
    r = CliRunner().invoke(cli, ["eval", "card", "--model", str(model), "--report", str(rp), "--data", str(root),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    card = (out / "README.md").read_text()
    assert "### Realism" in card and "![real vs generated](realism.png)" in card and "C2ST held-out accuracy" in card
    assert (out / "realism.png").stat().st_size > 1000


def test_eval_figure_draws_more_rows_for_more_clips_and_names_the_sampler(tiny_dataset, tiny_model_path, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from dittomusic.cli import cli

    root, _ = tiny_dataset
    heights = []
    for n in (1, 2):
        out = tmp_path / f"fig{n}.png"
        r = CliRunner().invoke(cli, ["eval", "figure", "--model", str(tiny_model_path), "--data", str(root),
                                     "--per-collection", str(n), "--sampler", "dpmpp_2m", "--steps", "2",
                                     "--out", str(out)])
        assert r.exit_code == 0, r.output
        heights.append(Image.open(out).size[1])
    assert heights[1] > 1.5 * heights[0]
    r = CliRunner().invoke(cli, ["eval", "figure", "--model", str(tiny_model_path), "--data", str(root),
                                 "--sampler", "nope", "--out", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "nope" in r.output and not (tmp_path / "x.png").exists()


def test_benchmark_runs_on_the_tiny_dataset(tiny_dataset, tiny_model_path, tmp_path, monkeypatch, capsys):
    import importlib.util
    import json
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "realism.py"
    spec = importlib.util.spec_from_file_location("bench_realism", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root, _ = tiny_dataset
    cache = tmp_path / "gen.pt"
    argv = ["realism.py", "--data", str(root), "--clips", "6", "--model", str(tiny_model_path), "--steps", "1",
            "--c2st-steps", "2", "--conditions", "validation,noise_heavy,v1", "--generated-cache", str(cache)]
    monkeypatch.setattr(sys, "argv", argv)
    assert mod.main() == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["conditions"]) == {"validation", "noise_heavy", "v1"} and cache.exists()
    assert out["conditions"]["noise_heavy"]["ratio_flatness_mean"] > 2  # seen without any training of the critic
    assert "c2st_v1_minus_real" in out["checks"]


def test_spread_indices_cover_both_ends_without_repeats():
    from dittomusic.eval.realism import spread_indices

    assert spread_indices(10, 4) == [0, 3, 6, 9]
    assert spread_indices(5, 120) == [0, 1, 2, 3, 4]  # a small split: every clip once
    idx = spread_indices(1104, 120)
    assert len(idx) == 120 and idx[0] == 0 and idx[-1] == 1103 and idx == sorted(set(idx))
