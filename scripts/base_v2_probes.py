"""The small measurements behind session 31's notes on the bundled v2 (docs/base_model/v2/README.md,
and invert_ddim's docstring), each one a command. Prints one JSON object per probe.

    python scripts/base_v2_probes.py residual   --data data/full   # what the mean decoder drops: per-band change, residual
    python scripts/base_v2_probes.py inversion  --data data/full   # invert + sample: eps read at t vs diffusers' reading
    python scripts/base_v2_probes.py bands      --data data/full   # C2ST per quarter of the mel bins
    python scripts/base_v2_probes.py level_bias --data data/full   # subtract the decoder's level bias: reconstructions, generated
    python scripts/base_v2_probes.py freq_noise --data data/full   # texture noise correlated over 3 / 5 bins
    python scripts/base_v2_probes.py gen_calibration --data data/full  # texture calibrated on generated clips
    python scripts/base_v2_probes.py latent_gap --data data/full   # generated vs real in the latent, and vs reconstructions
    python scripts/base_v2_probes.py time_noise --data data/full   # texture noise correlated over time (AR(1))
    python scripts/base_v2_probes.py texture_scale --data data/full  # the texture std times 1, 1.5, 2, 3
    python scripts/base_v2_probes.py smoothed   --data data/full   # C2ST with both sets smoothed in time / frequency
    python scripts/base_v2_probes.py as_heard   --data data/full   # the mel of the vocoded waveform (what a listener gets)
    python scripts/base_v2_probes.py sdedit     --data data/full   # real latents noised to t, denoised by the model, decoded
    python scripts/base_v2_probes.py motion     --data data/full   # melodic motion: how often the dominant pitch class moves
    python scripts/base_v2_probes.py guidance_interval --data data/full  # CFG only inside a noise interval
    python scripts/base_v2_probes.py score      --data data/full --model M  # a model at its defaults, two seeds, outliers
    python scripts/base_v2_probes.py fad_outliers --data data/full  # eval model --seed 1's set: each clip's share of the FAD

--model / --sampler / --guidance: another release, or other sampling settings (default: the bundled model's own).
Test clips: 20 per collection (eval model's pick), generated at the model's defaults; training clips
for any calibration; C2ST with 5 splits (3 for the per-band rows, 2 for level_bias's bands).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from dittomusic.data.dataset import MelDataset
from dittomusic.eval.base_model import pick_clips, stack_clips
from dittomusic.eval.realism import c2st, compare, level_outliers, measures, texture_fad
from dittomusic.generate import Pipeline, Tags
from dittomusic.models.autoencoder import add_texture_noise
from dittomusic.sampling.samplers import get_sampler, invert_ddim


def tags_of(ds, idx):
    return [Tags(r["collection"], list(r["instruments"]), r["tempo_bucket"], r["mode"]) for r in (ds.rows[i] for i in idx)]


class Probe:
    def __init__(self, data: str, model: str | None = None, sampler: str | None = None, guidance: float | None = None):
        torch.manual_seed(0)
        self.pipe = Pipeline(model)
        sampler, guidance = self.pipe.resolve(sampler, guidance)
        self.pipe.sampling = {**self.pipe.sampling, "sampler": sampler, "guidance": guidance}
        self.b, self.ae = self.pipe.backend, self.pipe.model.ae
        self.data = data
        self.te = MelDataset(data, "test", random_crop=False)
        self.idx = pick_clips(self.te, 20, 0)
        self.real = stack_clips(self.te, self.idx, "mel")
        self.groups = [self.te.rows[i].get("piece_id", i) for i in self.idx]

    def mean_decode(self, z):
        return torch.cat([self.ae.decode(z[s:s + 16], texture=False) for s in range(0, len(z), 16)]).clamp(-1, 1)

    def recon(self, mels):
        with torch.no_grad():
            return self.mean_decode(torch.cat([self.ae.encode(mels[s:s + 16]) for s in range(0, len(mels), 16)]))

    def latents(self, tags, seed: int = 0):
        """Generated latents at the model's default sampler and guidance."""
        sm, out = self.pipe.sampling, []
        with torch.no_grad():
            for s in range(0, len(tags), 16):
                k = min(16, len(tags) - s)
                fn = self.b.model_fn(self.b.make_cond(tags[s:s + k], k), sm["guidance"])
                out.append(get_sampler(sm["sampler"])(fn, self.b.noise(k, self.b.clip_frames, seed + s), self.b.schedule,
                                                       20, prediction=self.b.prediction))
        return torch.cat(out)

    def generated(self, tags, seed: int = 0):
        """Mean-decoded clips at the model's default sampler and guidance."""
        return self.mean_decode(self.latents(tags, seed))

    def texture(self, mel, std=None, seed: int = 3):
        std = self.ae.texture_std if std is None else std
        return add_texture_noise(mel, std, self.ae.cfg.texture_edges, torch.Generator().manual_seed(seed)).clamp(-1, 1)

    def score(self, x, repeats: int = 5) -> dict:
        r = c2st(self.real, x, 0, groups=(self.groups, None), repeats=repeats)
        ratio, delta = compare(measures(self.real), measures(x))
        return {"c2st": round(r["accuracy"], 3), "splits": [round(a, 3) for a in r["accuracies"]],
                "texture_fad": round(texture_fad(self.real, x), 2), "grain": round(ratio["grain"], 3),
                "grain_audible": round(ratio["grain_audible"], 3), "flatness_mean": round(ratio["flatness_mean"], 3),
                "background_db": round(delta["background_db_mean"], 2), "outliers": level_outliers(self.real, x)}

    def bands(self, x, repeats: int = 3) -> list[float]:
        return [round(c2st(self.real[:, lo:lo + 40], x[:, lo:lo + 40], 0, groups=(self.groups, None),
                           repeats=repeats)["accuracy"], 3) for lo in range(0, self.real.shape[1], 40)]

    def train_clips(self, per_collection: int, seed: int = 1):
        tr = MelDataset(self.data, "train", random_crop=False)
        idx = pick_clips(tr, per_collection, seed)
        return tr, idx, stack_clips(tr, idx, "mel")


def probe_residual(p: Probe) -> dict:
    """Real test clips against their mean-decoded reconstructions, each floored at its own clip's max - 60 dB
    as the C2ST sees them; the residual where both are above the real clip's floor."""
    real, rec = p.real, p.recon(p.real)
    floor = real.amax((1, 2), keepdim=True) - 60 / 80
    a, b = (torch.maximum(x, x.amax((1, 2), keepdim=True) - 60 / 80) for x in (real, rec))
    db = lambda x: round(float(x) * 80, 2)
    bands = []
    for lo in range(0, real.shape[1], 40):
        ra, rb = a[:, lo:lo + 40], b[:, lo:lo + 40]
        bands.append({"bins": [lo, lo + 40], "dt_db": [db(ra.diff(dim=-1).abs().mean()), db(rb.diff(dim=-1).abs().mean())],
                      "df_db": [db(ra.diff(dim=1).abs().mean()), db(rb.diff(dim=1).abs().mean())]})
    mask = (real > floor) & (rec > floor)
    r = (real - rec) * 80
    smooth = F.avg_pool1d(r.reshape(-1, 1, r.shape[-1]), 5, 1, 2).reshape(r.shape)
    x, y, m = r[..., :-1], r[..., 1:], mask[..., :-1] & mask[..., 1:]
    x, y = x[m] - x[m].mean(), y[m] - y[m].mean()
    return {"per_band [real, reconstruction]": bands, "residual_std_db": round(float(r[mask].std()), 2),
            "residual_lag1_time": round(float((x * y).mean() / (x.std() * y.std())), 3),
            "residual_high_passed_std_db": round(float((r - smooth)[mask].std()), 2)}


def probe_inversion(p: Probe) -> dict:
    idx = [0, 200, 400, 600]
    ref = torch.stack([p.te[i]["mel"] for i in idx])
    cond = p.b.make_cond(p.b.parse_prompt(collection=p.te.rows[idx[0]]["collection"]), len(idx))
    rows = []
    with torch.no_grad():
        z = p.b.encode(ref)
        for steps in (8, 20):
            for w in (0.0, 4.0):
                fn = p.b.model_fn(cond, w)
                for name, md in (("eps_at_t (default)", False), ("diffusers", True)):
                    x_T = invert_ddim(fn, z, p.b.schedule, steps, prediction=p.b.prediction, match_diffusers=md)
                    mel = p.b.sample(x_T, cond, sampler="ddim", steps=steps, guidance=w)
                    rows.append({"steps": steps, "w": w, "reading": name,
                                 "mel_mse": round(float((mel - ref).square().mean()), 4)})
    return {"clips": idx, "rows": rows}


def probe_bands(p: Probe) -> dict:
    gen = p.texture(p.generated(tags_of(p.te, p.idx)))
    rec = p.texture(p.recon(p.real))
    return {"generated": p.bands(gen), "reconstructions_textured": p.bands(rec), "bins_per_band": 40}


def probe_level_bias(p: Probe) -> dict:
    _, _, treal = p.train_clips(80)
    trec = p.recon(treal)
    edges = torch.linspace(-1, 1, 17)[1:-1]  # 16 decoded-level buckets of 10 dB
    lv, n_mels = torch.bucketize(trec, edges), treal.shape[1]
    bias = torch.zeros(n_mels, len(edges) + 1)
    for k in range(len(edges) + 1):
        w = (lv == k).float()
        n = w.sum((0, 2))
        bias[:, k] = torch.where(n > 50, ((treal - trec) * w).sum((0, 2)) / n.clamp_min(1), torch.zeros(n_mels))
    bins = torch.arange(n_mels).view(1, -1, 1)

    def fix(x):
        return (x + bias[bins, torch.bucketize(x, edges)]).clamp(-1, 1)
    rec, gen = p.recon(p.real), p.generated(tags_of(p.te, p.idx))
    out = {"bias_db_per_level": [round(float(v), 2) for v in bias.abs().mean(0) * 80]}
    for name, x in (("reconstructions", rec), ("generated", gen)):
        out[name] = {"texture": p.score(p.texture(x)), "bias_corrected_texture": p.score(p.texture(fix(x)))}
    return out


def probe_freq_noise(p: Probe) -> dict:
    rec = p.recon(p.real)
    lv = torch.bucketize(rec, torch.tensor(p.ae.cfg.texture_edges))
    std = p.ae.texture_std[torch.arange(rec.shape[1]).view(1, -1, 1), lv]
    eps = torch.randn(rec.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for name, k in (("white", None), ("3 bins", torch.tensor([0.5, 1, 0.5])),
                    ("5 bins", torch.tensor([0.25, 0.5, 1, 0.5, 0.25]))):
        e = eps
        if k is not None:  # unit variance, correlated over neighbouring bins
            flat = eps.transpose(1, 2).reshape(-1, 1, rec.shape[1])
            e = F.conv1d(flat, (k / k.norm()).view(1, 1, -1), padding=len(k) // 2).reshape(
                rec.shape[0], -1, rec.shape[1]).transpose(1, 2)
        out[name] = p.score((rec + std * e).clamp(-1, 1))
    return {"reconstructions": out}


def probe_gen_calibration(p: Probe) -> dict:
    tr, idx, treal = p.train_clips(30, seed=5)
    tgen = p.generated(tags_of(tr, idx), seed=1000)
    edges, lim = torch.tensor(p.ae.cfg.texture_edges), 6.0 / 80.0

    def dt_var(x):
        d = x.diff(dim=-1).clamp(-lim, lim).square()
        lv = torch.bucketize(0.5 * (x[..., 1:] + x[..., :-1]), edges)
        v = torch.zeros(x.shape[1], len(edges) + 1)
        for k in range(len(edges) + 1):
            w = (lv == k).float()
            v[:, k] = (d * w).sum((0, 2)) / w.sum((0, 2)).clamp_min(1)
        return v
    std_gen = ((dt_var(treal) - dt_var(tgen)) / 2).clamp_min(0).sqrt()
    gen = p.generated(tags_of(p.te, p.idx))
    return {"std_db_per_level": {"generated_calibration": [round(float(v), 3) for v in std_gen.mean(0) * 80],
                                 "bundled (reconstructions)": [round(float(v), 3) for v in p.ae.texture_std.mean(0) * 80]},
            "generated": {"mean decoder": p.score(gen), "bundled texture": p.score(p.texture(gen, seed=9)),
                          "generated-calibrated texture": p.score(p.texture(gen, std_gen, seed=9))}}


def probe_latent_gap(p: Probe) -> dict:
    """Where generated clips differ from real ones, before and after the decoder: a C2ST on the latents
    themselves (generated vs encoded real test clips; no dB floor, crops of a quarter of the clip), and on
    decoded mels with generated clips scored against the textured *reconstructions* instead of the real
    clips, so the decoder's own gap cancels. A critic that separates generated latents is the signal that
    discriminator guidance (Kim et al. 2023) would sample against."""
    z_gen = p.latents(tags_of(p.te, p.idx))
    with torch.no_grad():
        z_real = torch.cat([p.ae.encode(p.real[s:s + 16]) for s in range(0, len(p.real), 16)])
    crop = z_real.shape[-1] // 4
    lat = c2st(z_real, z_gen, 0, groups=(p.groups, None), repeats=5, floor_db=None, crop=crop)
    gen, rec = p.texture(p.mean_decode(z_gen)), p.texture(p.recon(p.real))
    dec = c2st(rec, gen, 0, groups=(p.groups, None), repeats=5)
    real_vs = {k: p.score(x)["c2st"] for k, x in (("generated", gen), ("reconstructions", rec))}
    return {"latent_shape": list(z_real.shape[1:]), "latent_crop": crop,
            "c2st_latent_generated_vs_real": round(lat["accuracy"], 3), "latent_splits": [round(a, 3) for a in lat["accuracies"]],
            "c2st_mel_generated_vs_reconstructions": round(dec["accuracy"], 3),
            "mel_splits": [round(a, 3) for a in dec["accuracies"]],
            "c2st_mel_vs_real": real_vs}


def probe_time_noise(p: Probe) -> dict:
    """Texture noise correlated over time (AR(1), coefficient rho) on generated clips: the decoder's residual is
    slow (lag-1 correlation 0.95), white noise is not. The std is scaled by 1 / sqrt(1 - rho) so that the
    frame-to-frame variance it adds (2 sigma^2 (1 - rho)) stays the calibrated one."""
    gen = p.generated(tags_of(p.te, p.idx))
    lv = torch.bucketize(gen, torch.tensor(p.ae.cfg.texture_edges))
    std = p.ae.texture_std[torch.arange(gen.shape[1]).view(1, -1, 1), lv]
    w = torch.randn(gen.shape, generator=torch.Generator().manual_seed(9))
    out = {}
    for rho in (0.0, 0.5, 0.8, 0.95):
        e = w.clone()
        for t in range(1, e.shape[-1]):  # unit-variance AR(1) along frames
            e[..., t] = rho * e[..., t - 1] + (1 - rho ** 2) ** 0.5 * w[..., t]
        out[f"rho {rho}"] = p.score((gen + std * e / (1 - rho) ** 0.5).clamp(-1, 1))
    return {"generated": out}


def probe_score(p: Probe) -> dict:
    """The model as generation runs it (its sampler and guidance, textured decode), scored on the probe yardstick
    with the level outliers: one row per seed offset, so that a model can be compared in one command."""
    tags = tags_of(p.te, p.idx)
    return {"generated": {f"seed {seed}": p.score(p.texture(p.generated(tags, seed), seed=9 + seed))
                          for seed in (0, 1000)}}


def probe_fad_outliers(p: Probe, seed: int = 1) -> dict:
    """`eval model --seed 1`'s generated set (its clips' tags, its x_T and texture seeds, the model's defaults):
    the classifier FAD against all test clips, and each clip's leave-one-out share of it, largest first."""
    from dittomusic.eval.base_model import generate_mels
    from dittomusic.eval.classifier import load_classifier, predict
    from dittomusic.eval.fad import fad
    from dittomusic.eval.realism import _db
    from dittomusic.models.loading import bundled_path

    idx = pick_clips(p.te, 20, seed)
    tags = tags_of(p.te, idx)
    sm = p.pipe.sampling
    gen = generate_mels(p.pipe, tags, len(tags), seed, 16, False, sampler=sm["sampler"], steps=20,
                        guidance=sm["guidance"])
    clf, _ = load_classifier(bundled_path("classifier"), "cpu")
    ref = predict(clf, stack_clips(p.te, list(range(len(p.te))), "mel"))["embedding"].numpy()
    e = predict(clf, gen)["embedding"].numpy()
    full = fad(e, ref)
    share = sorted(((full - fad(e[[j for j in range(len(e)) if j != i]], ref), i) for i in range(len(e))), reverse=True)
    db = _db(gen)
    top = [{"clip": i, "fad_share": round(d, 2), "tags": tags[i].describe(), "mean_db": round(float(db[i].mean()), 1),
            "bins_within_6db_of_full_scale": round(float((db[i] >= 34).float().mean()), 3)} for d, i in share[:5]]
    two = [i for _, i in share[:2]]
    return {"seed": seed, "fad": round(full, 2),
            "fad_without_top_two": round(fad(e[[j for j in range(len(e)) if j not in two]], ref), 2), "top": top}


def probe_texture_scale(p: Probe) -> dict:
    """The calibrated texture std times k on generated clips: the calibration matches the frame-to-frame
    variance over all levels (grain 0.96x), yet the audible grain (floored 60 dB below the clip's peak, what
    the C2ST reads) stays at ~0.7x. Does more jitter than calibrated bring the critic closer?"""
    gen = p.generated(tags_of(p.te, p.idx))
    return {"generated": {f"std x{k:g}": p.score(p.texture(gen, p.ae.texture_std * k, seed=9))
                          for k in (1.0, 1.5, 2.0, 3.0)}}


def probe_smoothed(p: Probe) -> dict:
    """Where the critic's cue lives: generated clips (bundled defaults, textured) against real ones with the
    same smoothing applied to both sets (a 5-frame moving average over time, a 5-bin one over frequency, both).
    If the C2ST stays high once frame-to-frame texture is averaged away in both, the cue is in the spectral
    and level layout, not in the jitter."""
    gen = p.texture(p.generated(tags_of(p.te, p.idx)), seed=9)

    def smooth(x, axis):
        if axis is None:
            return x
        y = x.transpose(1, 2) if axis == "freq" else x  # average along the last dim
        b, c, n = y.shape
        y = F.avg_pool1d(y.reshape(b * c, 1, n), 5, 1, 2, count_include_pad=False).reshape(b, c, n)
        return y.transpose(1, 2) if axis == "freq" else y

    out = {}
    for name, axes in (("none", [None]), ("time 5", ["time"]), ("freq 5", ["freq"]), ("time 5 + freq 5", ["time", "freq"])):
        a, b = p.real, gen
        for ax in axes:
            a, b = smooth(a, ax), smooth(b, ax)
        r = c2st(a, b, 0, groups=(p.groups, None), repeats=5)
        out[name] = {"c2st": round(r["accuracy"], 3), "splits": [round(v, 3) for v in r["accuracies"]]}
    return {"generated_vs_real": out}


def probe_as_heard(p: Probe) -> dict:
    """The C2ST on the mel of what a listener gets: each mel is vocoded (the default neural vocoder, and
    Griffin-Lim) and the waveform analysed again with the dataset's front-end. Real clips are the dataset's
    mels of the FluidSynth renders; `real, vocoded` is the vocoder's own ceiling (a resynthesis of the real
    mel). Interference between partials in a window is a property of the waveform, so a resynthesised mel
    carries speckle that a decoded mel need not."""
    from dittomusic.audio.mel import MelSpectrogram
    from dittomusic.audio.vocoder import get_vocoder
    front = MelSpectrogram()
    gen_mean = p.generated(tags_of(p.te, p.idx))
    gen_tex = p.texture(gen_mean, seed=9)
    out = {}
    for vname in ("neural", "griffinlim"):
        voc = get_vocoder(vname)

        def heard(x):
            with torch.no_grad():
                return torch.cat([front(voc(x[s:s + 8]))[..., :x.shape[-1]] for s in range(0, len(x), 8)]).clamp(-1, 1)
        real_h = heard(p.real)
        row = {"real, vocoded": p.score(real_h), "generated textured, vocoded": p.score(heard(gen_tex)),
               "generated mean decoder, vocoded": p.score(heard(gen_mean))}
        r = c2st(real_h, heard(gen_tex), 0, groups=(p.groups, None), repeats=5)
        row["both vocoded: generated textured vs real"] = {"c2st": round(r["accuracy"], 3),
                                                          "splits": [round(a, 3) for a in r["accuracies"]]}
        out[vname] = row
    out["not vocoded (the bundled yardstick)"] = {"generated textured": p.score(gen_tex)}
    return out


def probe_sdedit(p: Probe) -> dict:
    """Where in the denoising the gap appears (SDEdit, Meng et al. 2022): each real test clip's latent is noised to
    timestep t and denoised by the model with its own tags (DDIM, the 20-step trailing grid from t on, the model's
    guidance), then decoded with the texture. At t = 0 this is the decoder's ceiling (textured reconstructions);
    if the C2ST is already near the headline's at small t, the last, low-noise steps make the gap."""
    from dittomusic.sampling.samplers import _call_model, _timesteps, model_output_to_x0_eps

    b, sm = p.b, p.pipe.sampling
    tags = tags_of(p.te, p.idx)
    ac = b.schedule.alphas_cumprod.float()
    T = len(ac)
    ts = _timesteps("discrete", "trailing", 20, T).tolist()
    stride = T // 20
    with torch.no_grad():
        z0 = torch.cat([p.ae.encode(p.real[s:s + 16]) for s in range(0, len(p.real), 16)])
    out = {"reconstructions (t = 0)": p.score(p.texture(p.mean_decode(z0)))}
    for k in (16, 12, 8):
        t0 = ts[k]
        zs = []
        with torch.no_grad():
            for s in range(0, len(z0), 16):
                z = z0[s:s + 16]
                eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(100 + s))
                x = ac[t0].sqrt() * z + (1 - ac[t0]).sqrt() * eps
                fn = b.model_fn(b.make_cond(tags[s:s + len(z)], len(z)), sm["guidance"])
                for t in ts[k:]:
                    a_t, prev = ac[t], t - stride
                    a_prev = ac[prev] if prev >= 0 else torch.tensor(1.0)
                    x0, e = model_output_to_x0_eps(_call_model(fn, x, t), x, a_t.sqrt(), (1 - a_t).sqrt(),
                                                   b.prediction)
                    x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
                zs.append(x)
        out[f"t = {t0} ({t0 / T:.1f} T)"] = p.score(p.texture(p.mean_decode(torch.cat(zs)), seed=9))
    return {"guidance": sm["guidance"], "rows": out}


def probe_motion(p: Probe) -> dict:
    """Melodic motion, which the spectrograms show generated clips lack (long held partials, few note changes):
    per clip, the dominant pitch class of each frame (the chromagram the melody control reads, smoothed over
    5 frames), and how often per second it moves to another one; also how many of the 12 classes hold 90 % of the
    frames. Real test clips, their textured reconstructions and the clips generated with their tags."""
    from dittomusic.control.features import chroma_energy
    from dittomusic.audio.mel import MelConfig

    cfg = MelConfig()

    def stats(x):
        c = chroma_energy(x, cfg)  # [B, 12, T]
        c = F.avg_pool1d(c, 5, 1, 2, count_include_pad=False)
        top = c.argmax(1)  # [B, T]
        moves = (top[:, 1:] != top[:, :-1]).float().sum(1) / (x.shape[-1] / cfg.frame_rate)
        share = torch.stack([torch.bincount(t, minlength=12).float() for t in top]) / top.shape[1]
        used = (share.sort(1, descending=True)[0].cumsum(1) < 0.9).sum(1) + 1
        return {"moves_per_s": round(float(moves.mean()), 3), "classes_for_90pct": round(float(used.float().mean()), 2)}
    gen = p.texture(p.generated(tags_of(p.te, p.idx)), seed=9)
    return {"real": stats(p.real), "reconstructions": stats(p.texture(p.recon(p.real))), "generated": stats(gen)}


def probe_guidance_interval(p: Probe) -> dict:
    """Classifier-free guidance applied only in a limited interval of noise levels (Kynkaenniemi et al. 2024:
    guidance at high noise pulls every sample toward the same layout, at low noise it does little), the
    conditional prediction alone outside it. The sdedit probe puts the gap at high noise, where the clip is
    composed. Generated clips (DPM++(2M) 20 steps, guidance 2.0 inside the interval) against the real test
    clips: C2ST, and the tag classifier's collection accuracy ratio and FAD against all test clips."""
    from dittomusic.eval.classifier import load_classifier, predict, tag_metrics
    from dittomusic.eval.fad import fad
    from dittomusic.models.loading import bundled_path
    from dittomusic.sampling.samplers import get_sampler

    b, sm = p.b, p.pipe.sampling
    T = len(b.schedule.alphas_cumprod)
    tags = tags_of(p.te, p.idx)
    clf, _ = load_classifier(bundled_path("classifier"), "cpu")
    names = p.te.vocab.collections
    coll, fams = stack_clips(p.te, p.idx, "collection"), stack_clips(p.te, p.idx, "families")
    ref = predict(clf, stack_clips(p.te, list(range(len(p.te))), "mel"))["embedding"].numpy()
    acc_real = tag_metrics(predict(clf, p.real), coll, fams, names)["collection_accuracy"]

    def generate(lo: float, hi: float):
        out = []
        with torch.no_grad():
            for s in range(0, len(tags), 16):
                k = min(16, len(tags) - s)
                c = b.make_cond(tags[s:s + k], k)
                guided, plain = b.model_fn(c, sm["guidance"]), b.model_fn(c, 1.0)

                def fn(x, t, guided=guided, plain=plain):
                    return guided(x, t) if lo * T <= float(t.flatten()[0]) <= hi * T else plain(x, t)
                z = get_sampler(sm["sampler"])(fn, b.noise(k, b.clip_frames, s), b.schedule, 20, prediction=b.prediction)
                out.append(p.ae.decode(z, torch.Generator().manual_seed(s + 1)).clamp(-1, 1))
        return torch.cat(out)

    rows = {}
    for name, (lo, hi) in (("everywhere (the default)", (0.0, 1.0)), ("t <= 0.8 T", (0.0, 0.8)),
                           ("t <= 0.6 T", (0.0, 0.6)), ("0.2 T <= t <= 0.8 T", (0.2, 0.8))):
        gen = generate(lo, hi)
        pg = predict(clf, gen)
        row = p.score(gen)
        row["tag_ratio"] = round(tag_metrics(pg, coll, fams, names)["collection_accuracy"] / acc_real, 3)
        row["fad"] = round(fad(pg["embedding"].numpy(), ref), 3)
        rows[name] = row
    return {"guidance": sm["guidance"], "sampler": sm["sampler"], "rows": rows}


PROBES = {"fad_outliers": probe_fad_outliers, "score": probe_score, "guidance_interval": probe_guidance_interval, "motion": probe_motion, "sdedit": probe_sdedit, "as_heard": probe_as_heard, "latent_gap": probe_latent_gap, "residual": probe_residual, "inversion": probe_inversion, "bands": probe_bands, "level_bias": probe_level_bias,
          "freq_noise": probe_freq_noise, "gen_calibration": probe_gen_calibration, "time_noise": probe_time_noise,
          "texture_scale": probe_texture_scale, "smoothed": probe_smoothed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", choices=sorted(PROBES))
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default=None, help="a model release [default: the bundled one]")
    ap.add_argument("--sampler", default=None, help="[default: the model's own]")
    ap.add_argument("--guidance", type=float, default=None, help="[default: the model's own]")
    a = ap.parse_args()
    p = Probe(a.data, a.model, a.sampler, a.guidance)
    print(json.dumps({"probe": a.probe, "model": a.model or "bundled", **p.pipe.sampling, **PROBES[a.probe](p)}, indent=1))


if __name__ == "__main__":
    main()
