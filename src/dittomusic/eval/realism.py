"""Realism yardstick: does a generated log-mel look like real music, texture-wise?

The tag classifier and its FAD (``eval/classifier.py``, ``eval/fad.py``) check *what* was
generated (collection, instruments). They are blind to *how* it sounds: v1 clips are a
broadband wash with few stable partials, where real clips have clean harmonic stacks, note
onsets and a quiet background. The measures here look at exactly that. All of them take a
batch of scaled log-mels ``[N, n_mels, frames]`` (torch or numpy, values in [-1, 1] with
1 scaled unit = 80 dB, see ``audio/mel.py``) and no model, so any generator can be scored.

Per-frame measures are computed on *active* frames only: frames whose loudest mel bin is
within ``ACTIVE_DB`` (40 dB) of the clip's loudest bin and above ``ABS_FLOOR_DB`` (-90 dB), so
rests and fades do not count. In them, each bin's dB is floored at the frame's maximum minus
``FLOOR_DB`` (60 dB): the fixed -120 dB floor of the representation (digital silence) would
otherwise dominate any geometric mean.

- :func:`grain`: mean |x[t+1] - x[t]| over all bins and frames, in scaled units (as
  ``scripts/mel_grain.py``). Rises with frame-to-frame noise, including a faint noise bed far
  below the music; "audible grain" floors each clip at its max - 60 dB first.
- :func:`spectral_flatness`: per active frame, geometric / arithmetic mean of mel power over
  all bins (floored). 0 = a few pure peaks, 1 = flat white spectrum. Rises with broadband noise
  and with frequency smearing (peaks become plateaus).
- :func:`harmonic_prominence`: per active frame, the mean height (dB) of the ``TOP_K`` (5)
  tallest local spectral peaks above a running median over ``MEDIAN_BINS`` (9) mel bins,
  on the bins below ``PROMINENCE_HZ`` (4.5 kHz), where mel bins are narrow enough to resolve
  the partials of a note. Falls when partials drown in noise or are smeared.
- :func:`partial_stability`: per pair of active frames 46 ms apart, the correlation of their
  fine structure (the prominence residuals). Held notes keep their partials (~0.9); flickering
  partials, as in v1's clips, decorrelate it (~0.4).
- :func:`background_level`: per active frame, the 10th-percentile bin level minus the frame's
  maximum (dB, unfloored; -160 at most). How quiet the spectrum is between partials; a wash
  raises it towards 0.
- :func:`onset_concentration`: per clip, the share of spectral flux (mean positive dB change
  per frame, dB floored at clip max - 80) in the top 5 % of frames. Real notes start sharply
  and then hold or decay (flux concentrated at onsets); noise spreads flux over every frame.
- :func:`texture_fad`: Fréchet distance between per-clip texture embeddings (per-band level,
  grain, peak height and time variation, plus the clip means of the measures above),
  standardized by the reference set's spread.
- :func:`c2st`: a classifier two-sample test. A small CNN learns to tell the two sets apart
  on half of each and is scored on the other half: 0.5 means indistinguishable, 1.0 means
  trivially told apart.
- :func:`realism_report` gathers everything (both sets, ratios, C2ST) into a dict;
  :func:`realism_markdown` formats it; :func:`plot_side_by_side` draws real | generated
  spectrograms on the same colour scale.

Validation (``benchmarks/realism.py --clips 120``: 120 real test clips against 120 other clips
per condition). Validation clips: C2ST 0.51 +- 0.04, texture FAD 4, grain 1.04x, stability
1.00x. Mild degradations of the same validation clips (noise bed 64 dB down, 1 dB jitter, a
0.3-bin smear): C2ST 0.61-0.65. v1 (20-step DDIM, guidance 3): C2ST 1.00, texture FAD 284,
grain 4.6x (audible grain 2.8x), partial stability 0.47x, spectral flux 3.6x. Per-frame
flatness and prominence do *not* single v1 out (mean flatness 0.93x, median 0.44x, prominence
0.94x): its frames are as peaky as real ones, and its "wash" is partials that flicker from
frame to frame. Mean flatness is also a noisy statistic: validation against test clips
already gives 1.42x (median 1.06x, mean in dB +0.1 dB).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dittomusic.audio.mel import MelConfig

DB_PER_UNIT = 80.0  # 160 dB range over the scaled [-1, 1]
DB_MIN = -120.0
ACTIVE_DB = 40.0
ABS_FLOOR_DB = -90.0
FLOOR_DB = 60.0
FLUX_FLOOR_DB = 80.0
TOP_K = 5
STABILITY_LAG = 4  # frames (46 ms), shorter than a sixteenth note at 176 BPM (85 ms)
MEDIAN_BINS = 9
PROMINENCE_HZ = 4500.0
N_BANDS = 8
QUANTILES = (0.1, 0.5, 0.9)


# --------------------------------------------------------------------------- helpers

def _as_tensor(mels) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(mels) if not isinstance(mels, torch.Tensor) else mels)
    x = x.detach().to("cpu", torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"need scaled log-mels [N, n_mels, frames], got shape {tuple(x.shape)}")
    return x


def _db(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1, 1) + 1.0) * DB_PER_UNIT + DB_MIN


def _chunks(n: int, size: int = 16):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def _prominence_bins(n_mels: int, cfg: MelConfig | None = None) -> int:
    """How many of the lowest mel bins have their centre below PROMINENCE_HZ."""
    import librosa

    cfg = cfg or MelConfig()
    f = librosa.mel_frequencies(n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax or cfg.sample_rate / 2)[1:-1]
    return int(max(MEDIAN_BINS, (f < PROMINENCE_HZ).sum()))


def _running_median(d: torch.Tensor, width: int = MEDIAN_BINS) -> torch.Tensor:
    """Median over `width` neighbouring bins along the last axis (edges replicated)."""
    h = width // 2
    p = torch.cat([d[..., :1].expand(*d.shape[:-1], h), d, d[..., -1:].expand(*d.shape[:-1], h)], -1)
    return p.unfold(-1, width, 1).median(-1).values


def _active(db: torch.Tensor) -> torch.Tensor:
    """[n, frames] bool: frame max within ACTIVE_DB of the clip max and above ABS_FLOOR_DB."""
    fmax = db.amax(1)
    return (fmax >= fmax.amax(1, keepdim=True) - ACTIVE_DB) & (fmax > ABS_FLOOR_DB)


def _frame_terms(x: torch.Tensor, n_prom: int) -> dict[str, torch.Tensor]:
    """Per-frame measures of one chunk [n, F, T]; every value is [n, T] (NaN where inactive)."""
    db = _db(x)
    fmax = db.amax(1, keepdim=True)  # [n, 1, T]
    fl = torch.maximum(db, fmax - FLOOR_DB)
    ln = fl * (math.log(10) / 10)  # ln power
    flat = torch.exp(ln.mean(1) - torch.logsumexp(ln, 1) + math.log(ln.shape[1]))
    low = fl[:, :n_prom].transpose(1, 2)  # [n, T, B]
    res = low - _running_median(low)
    peak = torch.zeros_like(low, dtype=torch.bool)
    peak[..., 1:-1] = (low[..., 1:-1] >= low[..., :-2]) & (low[..., 1:-1] > low[..., 2:])
    prom = torch.where(peak, res.clamp_min(0), torch.zeros_like(res)).topk(TOP_K, -1).values.mean(-1)
    q = max(1, int(math.ceil(0.1 * db.shape[1])))
    bg = db.kthvalue(q, 1).values - fmax[:, 0]
    act = _active(db)
    # stability: correlation of the fine structure (residual profile) of frames t and t + LAG
    r = res - res.mean(-1, keepdim=True)
    lag = min(STABILITY_LAG, max(1, r.shape[1] - 1))
    num = (r[:, lag:] * r[:, :-lag]).sum(-1)
    den = (r[:, lag:].square().sum(-1) * r[:, :-lag].square().sum(-1)).sqrt()
    stab = torch.full_like(prom, float("nan"))
    stab[:, :-lag] = torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.full_like(num, float("nan")))
    act_pair = torch.zeros_like(act)
    act_pair[:, :-lag] = act[:, lag:] & act[:, :-lag]
    nan = torch.tensor(float("nan"))
    out = {k: torch.where(act, v, nan) for k, v in (("flatness", flat), ("prominence", prom), ("background", bg))}
    out["stability"] = torch.where(act_pair, stab, nan)
    return out


def _frame_measures(mels, cfg: MelConfig | None = None) -> dict[str, torch.Tensor]:
    x = _as_tensor(mels)
    n_prom = min(x.shape[1], _prominence_bins(x.shape[1], cfg))
    parts = [_frame_terms(x[s], n_prom) for s in _chunks(len(x))]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _flat(v: torch.Tensor) -> np.ndarray:
    v = v.reshape(-1)
    return v[~torch.isnan(v)].numpy().astype(np.float64)


def summarize(values) -> dict:
    """mean, 10/50/90 % quantiles and count of a 1-D sample."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": float("nan"), **{f"p{int(q * 100)}": float("nan") for q in QUANTILES}, "n": 0}
    return {"mean": float(v.mean()), **{f"p{int(q * 100)}": float(np.quantile(v, q)) for q in QUANTILES},
            "n": int(len(v))}


# --------------------------------------------------------------------------- measures

def grain(mels, per_clip: bool = False, floor_db: float | None = None):
    """Mean |x[t+1] - x[t]| (scaled units, 1 = 80 dB) over bins and frames; per clip if asked.

    With `floor_db` each clip is first floored at its maximum minus `floor_db` dB, so that
    fluctuations far below the music (a faint noise bed over digital silence, inaudible) do not
    count: ``grain(m, floor_db=60)`` is the "audible grain" of the reports."""
    x = _as_tensor(mels)
    if floor_db is not None:
        x = torch.maximum(x, x.amax((1, 2), keepdim=True) - floor_db / DB_PER_UNIT)
    g = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2))
    return g.numpy().astype(np.float64) if per_clip else float(g.mean())


def spectral_flatness(mels, cfg: MelConfig | None = None) -> np.ndarray:
    """Per-active-frame spectral flatness, all frames of all clips pooled (1-D array).

    Definition: with d_f the frame's mel-bin levels in dB, floored at max_f d_f - 60 dB, and
    p_f = 10^(d_f / 10) the mel power, flatness = exp(mean_f ln p_f) / mean_f p_f over all
    n_mels bins. In [1e-6, 1]: ~1e-4 for a few partials over a silent background, ~0.5 and
    above for broadband noise. Active frames: loudest bin within 40 dB of the clip's loudest
    and above -90 dB.
    """
    return _flat(_frame_measures(mels, cfg)["flatness"])


def harmonic_prominence(mels, cfg: MelConfig | None = None) -> np.ndarray:
    """Per-active-frame harmonic prominence in dB, pooled over clips (1-D array).

    Definition: on the mel bins whose centre is below 4.5 kHz (where the ~21 Hz / 2 % wide
    bins resolve a note's partials), floored at frame max - 60 dB, the residual r = dB minus a
    running median over 9 bins; over the local maxima of the spectrum (bins >= the lower and >
    the upper neighbour), the mean of the 5 largest residuals (missing peaks count as 0). A
    clean harmonic stack scores 20-40 dB, a noisy or smeared spectrum a few dB.
    """
    return _flat(_frame_measures(mels, cfg)["prominence"])


def partial_stability(mels, cfg: MelConfig | None = None) -> np.ndarray:
    """Per pair of active frames 4 frames (46 ms) apart: how stable the partials are.

    Definition: the Pearson correlation between the two frames' fine-structure profiles, i.e.
    the prominence residuals (dB floored at frame max - 60, minus the 9-bin running median, bins
    below 4.5 kHz). Held notes keep their partials in the same bins (close to 1); partials that
    flicker from frame to frame, or noise, decorrelate it. Frames with a flat profile (zero
    variance) are left out.
    """
    return _flat(_frame_measures(mels, cfg)["stability"])


def background_level(mels, cfg: MelConfig | None = None) -> np.ndarray:
    """Per-active-frame background: 10th-percentile bin level minus the frame max, dB (<= 0).

    Unfloored (the representation's -120 dB floor bounds it at -160 dB). Real music over a
    silent background sits far below 0; a broadband wash lifts it.
    """
    return _flat(_frame_measures(mels, cfg)["background"])


def spectral_flux(mels) -> torch.Tensor:
    """[N, frames-1]: mean over bins of the positive dB change from frame t to t+1, with each
    clip's dB floored at its max - 80 dB so that fluctuations in near-silence do not count."""
    db = _db(_as_tensor(mels))
    db = torch.maximum(db, db.amax((1, 2), keepdim=True) - FLUX_FLOOR_DB)
    return (db[..., 1:] - db[..., :-1]).clamp_min(0).mean(1)


def onset_concentration(mels, top: float = 0.05) -> np.ndarray:
    """Per clip: the share of all positive spectral flux that falls in the `top` 5 % of frames.

    In [top, 1]: note onsets over steady or decaying notes put most of the flux in a few frames
    (high); frame-to-frame noise spreads it evenly (near `top`). Clips with (almost) no flux
    (< 0.01 dB per frame) score `top`.
    """
    f = spectral_flux(mels)
    k = max(1, int(round(top * f.shape[1])))
    share = f.topk(k, 1).values.sum(1) / f.sum(1).clamp_min(0.01 * f.shape[1])
    return share.clamp_min(top).numpy().astype(np.float64)


def spread_indices(total: int, n: int) -> list[int]:
    """n indices spread evenly over range(total), both ends included (all of them when n >= total): how
    the evals pick their real reference clips from a test split, so that every caller picks the same."""
    return sorted(set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()))


def measures(mels, cfg: MelConfig | None = None) -> dict:
    """Every scalar measure of one set of clips, with the per-frame ones as distributions."""
    fm = _frame_measures(mels, cfg)
    flat = _flat(fm["flatness"])
    return {
        "n_clips": int(_as_tensor(mels).shape[0]),
        "active_frames": float((~torch.isnan(fm["flatness"])).float().mean()),
        "grain": grain(mels),
        "grain_audible": grain(mels, floor_db=FLOOR_DB),
        "flatness": summarize(flat),
        "flatness_db": summarize(10 * np.log10(np.maximum(flat, 1e-12))),
        "prominence_db": summarize(_flat(fm["prominence"])),
        "stability": summarize(_flat(fm["stability"])),
        "background_db": summarize(_flat(fm["background"])),
        "flux_db": float(spectral_flux(mels).mean()),
        "onset_concentration": summarize(onset_concentration(mels)),
    }


def texture_embedding(mels, cfg: MelConfig | None = None, bands: int = N_BANDS) -> np.ndarray:
    """[N, 4 * bands + 6] per-clip texture features: per mel band (equal bin counts) the mean
    level, grain, peak residual above the 9-bin running median and std over time of the band
    level (all in dB, active frames); then the clip means of flatness (dB), stability (%), prominence,
    background, flux (dB) and onset concentration (%)."""
    x = _as_tensor(mels)
    fm = _frame_measures(x, cfg)
    rows = []
    for s in _chunks(len(x)):
        db = _db(x[s])
        act = _active(db)  # [n, T]
        fl = torch.maximum(db, db.amax(1, keepdim=True) - FLOOR_DB)
        res = (fl.transpose(1, 2) - _running_median(fl.transpose(1, 2))).transpose(1, 2).clamp_min(0)
        w = act[:, None].float()
        cnt = w.sum(-1).clamp_min(1)
        feats = []
        for b in torch.tensor_split(torch.arange(x.shape[1]), bands):
            lev = fl[:, b].mean(1)  # [n, T]
            m = (lev * act).sum(-1) / cnt[:, 0]
            sd = (((lev - m[:, None]) ** 2 * act).sum(-1) / cnt[:, 0]).sqrt()
            gr = (db[:, b, 1:] - db[:, b, :-1]).abs().mean((1, 2))  # dB
            pk = (res[:, b] * w).sum((1, 2)) / (cnt[:, 0] * len(b))
            feats += [m, gr, pk, sd]
        rows.append(torch.stack(feats, 1))
    emb = torch.cat(rows).numpy().astype(np.float64)
    import warnings

    with warnings.catch_warnings():  # a silent clip has no active frame: its means are NaN -> 0
        warnings.simplefilter("ignore", RuntimeWarning)
        clip = [np.nanmean(10 * np.log10(np.maximum(fm["flatness"].numpy(), 1e-12)), 1),
                100 * np.nanmean(fm["stability"].numpy(), 1),
                np.nanmean(fm["prominence"].numpy(), 1), np.nanmean(fm["background"].numpy(), 1),
                spectral_flux(x).mean(1).numpy(), 100 * onset_concentration(x)]
    return np.nan_to_num(np.concatenate([emb, np.stack(clip, 1)], 1))


def texture_fad(real, generated, cfg: MelConfig | None = None) -> float:
    """Fréchet distance (`eval.fad`) between texture embeddings, each dimension divided by the real
    set's std (at least 1 dB), covariances ridged by 1e-4."""
    return texture_fad_of(texture_embedding(real, cfg), texture_embedding(generated, cfg))


def texture_fad_of(a: np.ndarray, b: np.ndarray) -> float:
    """texture_fad from texture embeddings [clips, dims] (real a, generated b): for resampling."""
    from dittomusic.eval.fad import frechet_distance, gaussian_stats

    sd = np.maximum(a.std(0), 1.0)  # every feature is in dB (or %): a spread under 1 dB is not resolved
    (ma, ca), (mb, cb) = gaussian_stats(a / sd), gaussian_stats(b / sd)
    eye = 1e-4 * np.eye(len(ma))  # a few clips or a constant feature make the covariances singular
    return frechet_distance(ma, ca + eye, mb, cb + eye)


def texture_fad_ratio_ci(real: np.ndarray, x: np.ndarray, y: np.ndarray, *, boot: int = 1000, seed: int = 0,
                         limit: float = 1.1) -> dict:
    """texture_fad(x) / texture_fad(y) against one real set, with a paired bootstrap over items
    (`fad.paired_ratio_ci`). Texture FAD on tens of clips moves a lot with the clips drawn; this says how much."""
    from dittomusic.eval.fad import paired_ratio_ci

    return paired_ratio_ci(x, y, lambda e: texture_fad_of(real, e), boot=boot, seed=seed, limit=limit)


# --------------------------------------------------------------------------- classifier two-sample test

class _Critic(nn.Module):
    """The C2ST's critic. Input channels: the mel and its frame-to-frame difference (x4, so both
    span similar ranges; without it the critic misses even 3 dB of per-bin jitter). Three
    strided 3x3 convs with GroupNorm and ReLU, then mean and max pooling over time and within 4
    frequency bands (global pooling keeps it on texture: it cannot memorise clips by where their
    notes are), then a linear layer."""

    BANDS = 4

    def __init__(self, n_mels: int, width: int = 8):
        super().__init__()
        c = [2, width, 2 * width, 4 * width]
        layers = []
        for i in range(3):
            layers += [nn.Conv2d(c[i], c[i + 1], 3, stride=2, padding=1), nn.GroupNorm(4, c[i + 1]), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * c[-1] * self.BANDS, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, F, T] -> [B]
        dt = nn.functional.pad(x[..., 1:] - x[..., :-1], (0, 1))
        h = self.conv(torch.stack([x, 4 * dt], 1))  # [B, C, F', T']
        h = torch.cat([nn.functional.adaptive_avg_pool2d(h, (self.BANDS, 1)),
                       nn.functional.adaptive_max_pool2d(h, (self.BANDS, 1))], 1)
        return self.head(h.flatten(1))[:, 0]


def _crops(x: torch.Tensor, idx: torch.Tensor, starts: torch.Tensor, crop: int) -> torch.Tensor:
    return torch.stack([x[i, :, s:s + crop] for i, s in zip(idx.tolist(), starts.tolist())])


def _binom_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exact."""
    return float(sum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2 ** n)


def _halves(n: int, groups, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split of range(n) into train / test halves, keeping each group on one side."""
    if groups is None or len(set(groups)) < 2:
        p = torch.randperm(n, generator=g)
        return p[:n // 2], p[n // 2:]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} clips")
    names = sorted(set(groups), key=str)
    members = {k: [i for i, x in enumerate(groups) if x == k] for k in names}
    tr, te = [], []
    for j in torch.randperm(len(names), generator=g).tolist():
        (tr if len(tr) < n / 2 else te).extend(members[names[j]])
    if not te:  # one group holds more than half the clips
        te.append(tr.pop())
    return torch.tensor(tr), torch.tensor(te)


def c2st(real, generated, seed: int = 0, *, groups: tuple | None = None, steps: int | None = None,
         batch: int = 32, crop: int = 128, lr: float = 2e-3, width: int = 8, floor_db: float | None = 60.0,
         device: str | torch.device | None = None, threads: int | None = 1, bootstrap: int = 1000,
         repeats: int = 1) -> dict:
    """Classifier two-sample test: held-out accuracy of a small CNN telling real from generated.

    Each set is split in half at random (seeded); `groups` = (labels of real, labels of
    generated), either may be None, keeps clips with the same label (e.g. the same piece) on one
    side, so that the critic cannot score by recognising a piece it trained on. The critic
    (:class:`_Critic`) trains on balanced batches of random `crop`-frame windows (128 = 1.5 s) of
    the training halves, `steps` AdamW steps (default ~40 passes over the training clips, 60-300
    steps). It then classifies every non-overlapping window of the held-out clips. Both sets are
    floored at their clip's maximum minus `floor_db` (60 dB) first: what lies further below the
    loudest sound is inaudible, and without the floor a noise bed 70 dB down is told apart from
    the digital silence of rendered clips every time.

    ``accuracy`` (the headline) is the share of held-out windows classified right, averaged over
    the two classes so unequal set sizes do not bias it: 0.5 = indistinguishable, 1.0 = always
    told apart. Its ``se`` and bootstrap ``ci95`` treat clips (not windows) as the independent
    units. ``clip_accuracy`` classifies whole clips by their mean window logit (stronger, so it
    saturates sooner), with a one-sided binomial ``clip_p_value`` against chance. Also returned:
    per-class and training accuracies. On CPU it runs on `threads` threads (1 by default: the
    critic is small, and extra threads slow it down when other jobs share the cores).
    Deterministic for a seed on a given device and thread count.

    ``repeats`` > 1 redraws the split and the critic (seeds seed, seed+1, ...) and reports the
    mean over splits as ``accuracy``, with ``accuracies`` and their ``split_sd``. With 60 + 60
    clips one split is a noisy estimate: the same autoencoder reconstructions scored 0.83 and
    0.62 under seeds 0 and 1, far outside either split's ``se`` (which counts only the held-out
    clips' sampling, not which clips were held out). Every other field is the first split's.
    """
    if repeats > 1:
        runs = [c2st(real, generated, seed + k, groups=groups, steps=steps, batch=batch, crop=crop, lr=lr,
                     width=width, floor_db=floor_db, device=device, threads=threads, bootstrap=bootstrap)
                for k in range(repeats)]
        accs = [r["accuracy"] for r in runs]
        return {**runs[0], "accuracy": float(np.mean(accs)), "accuracies": accs, "repeats": repeats,
                "split_sd": float(np.std(accs, ddof=1)), "seconds": round(sum(r["seconds"] for r in runs), 1)}
    old_threads = torch.get_num_threads()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads and dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return _c2st(real, generated, seed, groups, steps, batch, crop, lr, width, floor_db, dev, bootstrap)
    finally:
        torch.set_num_threads(old_threads)


def _c2st(real, generated, seed, groups, steps, batch, crop, lr, width, floor_db, device, bootstrap) -> dict:
    t0 = time.time()
    a, b = _as_tensor(real), _as_tensor(generated)
    if floor_db is not None:
        a, b = (torch.maximum(x, x.amax((1, 2), keepdim=True) - floor_db / DB_PER_UNIT) for x in (a, b))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"mel bins differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("c2st needs at least 2 clips per set")
    frames = min(a.shape[-1], b.shape[-1])
    crop = min(crop, frames)
    a, b = a[..., :frames], b[..., :frames]
    g = torch.Generator().manual_seed(seed)
    ga, gb = groups or (None, None)
    (tra, tea), (trb, teb) = _halves(len(a), ga, g), _halves(len(b), gb, g)
    tr, te = [tra, trb], [tea, teb]
    data = [a, b]
    if steps is None:
        steps = int(np.clip(math.ceil(40 * (len(tr[0]) + len(tr[1])) / batch), 60, 300))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _Critic(a.shape[1], width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    half = batch // 2
    net.train()
    correct = 0.0
    for step in range(steps):
        xs, ys = [], []
        for c in (0, 1):
            i = tr[c][torch.randint(len(tr[c]), (half,), generator=g)]
            s = torch.randint(frames - crop + 1, (half,), generator=g)
            xs.append(_crops(data[c], i, s, crop))
            ys.append(torch.full((half,), float(c)))
        x, y = torch.cat(xs).to(device), torch.cat(ys).to(device)
        with torch.random.fork_rng(devices=[]):  # dropout: seeded, and leaves the global RNG alone
            torch.manual_seed(seed * 100003 + step)
            logit = net(x)
        loss = nn.functional.binary_cross_entropy_with_logits(logit, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= steps - max(1, steps // 10):
            correct += ((logit > 0).float() == y).float().mean().item() / max(1, steps // 10)
    net.eval()
    starts = list(range(0, frames - crop + 1, crop))
    win, clip = [], []  # per held-out clip: share of its windows classified right; clip verdict by mean logit
    with torch.no_grad():
        for c in (0, 1):
            x = data[c][te[c]]
            lg = torch.stack([torch.cat([net(x[s, :, t:t + crop].to(device)).cpu() for s in _chunks(len(x), 64)])
                              for t in starts])  # [windows, clips]
            win.append(((lg > 0).float() == c).float().mean(0).numpy().astype(np.float64))
            clip.append(((lg.mean(0) > 0).float() == c).numpy().astype(np.float64))
    acc_c = [float(h.mean()) for h in win]
    acc = 0.5 * (acc_c[0] + acc_c[1])
    se = 0.5 * math.sqrt(sum(h.var(ddof=1) / len(h) if len(h) > 1 else 0.25 for h in win))
    clip_acc = 0.5 * (clip[0].mean() + clip[1].mean())
    rng = np.random.default_rng(seed)
    boot = [0.5 * (rng.choice(win[0], len(win[0])).mean() + rng.choice(win[1], len(win[1])).mean())
            for _ in range(bootstrap)]
    k = int(round(sum(h.sum() for h in clip)))
    return {"accuracy": acc, "se": se,
            "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))] if bootstrap else None,
            "real_accuracy": acc_c[0], "generated_accuracy": acc_c[1],
            "clip_accuracy": float(clip_acc), "clip_p_value": _binom_tail(k, len(clip[0]) + len(clip[1])),
            "train_accuracy": round(correct, 4), "n_train": [len(tr[0]), len(tr[1])],
            "n_test": [len(te[0]), len(te[1])],
            "windows_per_clip": len(starts), "steps": steps, "crop": crop, "width": width, "floor_db": floor_db,
            "seed": seed,
            "seconds": round(time.time() - t0, 1)}


# --------------------------------------------------------------------------- report

RATIO_KEYS = (("grain", None), ("grain_audible", None), ("flatness", "mean"), ("flatness", "p50"),
              ("prominence_db", "mean"), ("stability", "mean"), ("flux_db", None), ("onset_concentration", "mean"))
DELTA_KEYS = (("flatness_db", "mean"), ("background_db", "mean"))


def _get(m: dict, k: str, sub: str | None) -> float:
    return m[k] if sub is None else m[k][sub]


def _name(k: str, sub: str | None) -> str:
    return k if sub is None else f"{k}_{sub}"


def compare(real_m: dict, gen_m: dict) -> tuple[dict, dict]:
    """(ratios generated / real, differences generated - real) of the headline summaries."""
    ratios = {_name(k, s): _get(gen_m, k, s) / _get(real_m, k, s) if _get(real_m, k, s) else float("nan")
              for k, s in RATIO_KEYS}
    deltas = {_name(k, s): _get(gen_m, k, s) - _get(real_m, k, s) for k, s in DELTA_KEYS}
    return ratios, deltas


def level_outliers(real, generated, ceiling_db: float = 6.0, saturated_share: float = 0.1) -> dict:
    """Clips a set mean hides: the share of generated clips whose mean level (dB over all bins and frames) lies
    above the loudest real clip's or below the quietest's, and of clips with more than `saturated_share` of their
    bins within `ceiling_db` of the scale's top (blown out; beside the real clips' own share)."""
    def levels(x):
        return torch.cat([_db(x[s]).mean((1, 2)) for s in _chunks(len(x))])

    def saturated(x):
        top = DB_MIN + 2 * DB_PER_UNIT - ceiling_db
        return torch.cat([(_db(x[s]) >= top).float().mean((1, 2)) > saturated_share for s in _chunks(len(x))])

    r, g = _as_tensor(real), _as_tensor(generated)
    lr, lg = levels(r), levels(g)
    return {"too_loud": float((lg > lr.max()).float().mean()), "too_quiet": float((lg < lr.min()).float().mean()),
            "saturated": float(saturated(g).float().mean()), "real_saturated": float(saturated(r).float().mean()),
            "real_level_db": [round(float(lr.min()), 1), round(float(lr.max()), 1)]}


def realism_report(real, generated, *, seed: int = 0, device=None, c2st_kwargs: dict | None = None,
                   cfg: MelConfig | None = None, real_measures: dict | None = None, with_c2st: bool = True) -> dict:
    """Every measure for both sets, generated/real ratios and dB differences, texture FAD and
    the C2ST (`c2st_kwargs` go to :func:`c2st`, e.g. groups=(piece ids of real, None)).
    `real_measures` reuses measures(real) when scoring several sets against one."""
    t0 = time.time()
    rm = real_measures or measures(real, cfg)
    gm = measures(generated, cfg)
    ratios, deltas = compare(rm, gm)
    out = {"real": rm, "generated": gm, "ratio": ratios, "delta": deltas,
           "texture_fad": texture_fad(real, generated, cfg), "outliers": level_outliers(real, generated)}
    if with_c2st:
        out["c2st"] = c2st(real, generated, seed, device=device, **(c2st_kwargs or {}))
    out["seconds"] = round(time.time() - t0, 1)
    return out


@torch.no_grad()
def as_heard(mels: torch.Tensor, vocoder, cfg: MelConfig | None = None, batch: int = 8) -> torch.Tensor:
    """The mel of what a listener gets: each mel vocoded, the waveform analysed again with the dataset's
    front-end, cut to the input's frames. A mel that is not the mel of any waveform (white texture noise,
    say) comes back as the nearest one that is, so only detail that survives into the audio counts."""
    from dittomusic.audio.mel import MelSpectrogram

    front = MelSpectrogram(cfg or MelConfig())
    out = []
    for s in range(0, len(mels), batch):
        wav = vocoder(mels[s:s + batch]).float().cpu()
        out.append(front(wav)[..., :mels.shape[-1]].clamp(-1, 1))
    return torch.cat(out)


def as_heard_block(real: torch.Tensor, gen: torch.Tensor, vocoder, *, seed: int = 0, device=None,
                   c2st_kwargs: dict | None = None, cfg: MelConfig | None = None) -> dict:
    """The C2ST again on what a listener gets: generated clips vocoded and re-analysed against the real test
    clips' mels, and the real clips' own resynthesis against them (the vocoder's ceiling: how much of any
    gap the vocoder itself would explain)."""
    from dittomusic.audio.vocoder import vocoder_name

    kw = c2st_kwargs or {}
    heard_gen, heard_real = as_heard(gen, vocoder, cfg), as_heard(real, vocoder, cfg)
    return {"vocoder": vocoder_name(vocoder), "c2st": c2st(real, heard_gen, seed, device=device, **kw),
            "c2st_real_resynthesis": c2st(real, heard_real, seed, device=device, **kw),
            "ratio": compare(measures(real, cfg), measures(heard_gen, cfg))[0]}


TARGETS = {"c2st": 0.75, "grain_ratio": 1.3, "flatness_ratio": 1.3}


def realism_markdown(r: dict, title: str | None = "Realism (texture yardstick)") -> str:
    """A Markdown table of a realism_report: real | generated | ratio, then the C2ST line."""
    rm, gm = r["real"], r["generated"]
    rows = [("grain: mean \\|Δt\\| (scaled; 1 = 80 dB)", rm["grain"], gm["grain"], r["ratio"]["grain"], "{:.4f}"),
            ("audible grain (floored at clip max − 60 dB)", rm["grain_audible"], gm["grain_audible"],
             r["ratio"]["grain_audible"], "{:.4f}"),
            ("spectral flatness, mean", rm["flatness"]["mean"], gm["flatness"]["mean"], r["ratio"]["flatness_mean"],
             "{:.4f}"),
            ("spectral flatness, median", rm["flatness"]["p50"], gm["flatness"]["p50"], r["ratio"]["flatness_p50"],
             "{:.5f}"),
            ("spectral flatness, mean dB", rm["flatness_db"]["mean"], gm["flatness_db"]["mean"], None, "{:.1f}"),
            ("harmonic prominence, mean dB", rm["prominence_db"]["mean"], gm["prominence_db"]["mean"],
             r["ratio"]["prominence_db_mean"], "{:.1f}"),
            ("partial stability (46 ms correlation), mean", rm["stability"]["mean"], gm["stability"]["mean"],
             r["ratio"]["stability_mean"], "{:.3f}"),
            ("background (p10 − max), mean dB", rm["background_db"]["mean"], gm["background_db"]["mean"], None,
             "{:.1f}"),
            ("spectral flux, mean dB/frame", rm["flux_db"], gm["flux_db"], r["ratio"]["flux_db"], "{:.2f}"),
            ("onset concentration (flux share of top 5 % frames)", rm["onset_concentration"]["mean"],
             gm["onset_concentration"]["mean"], r["ratio"]["onset_concentration_mean"], "{:.3f}")]
    lines = ([f"**{title}**", ""] if title else []) + [
        f"Real: {rm['n_clips']} clips; generated: {gm['n_clips']} clips.", "",
        "| measure | real | generated | generated / real |", "|---|---|---|---|"]
    for name, a, b, q, fmt in rows:
        lines.append(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {'' if q is None else f'{q:.2f}x'} |")
    lines += ["", f"Texture FAD (standardized by real): {r['texture_fad']:.2f}"]
    o = r.get("outliers")
    if o:
        lines.append(f"Level outliers (clips a mean hides): {100 * o['too_loud']:.1f} % of generated clips louder than "
                     f"the loudest real one, {100 * o['too_quiet']:.1f} % quieter than the quietest; blown out "
                     f"(over 10 % of bins within 6 dB of full scale): {100 * o['saturated']:.1f} % "
                     f"(real {100 * o['real_saturated']:.1f} %)")
    c = r.get("c2st")
    if c:
        lo, hi = c["ci95"] or (float("nan"), float("nan"))
        win_s = c["crop"] * MelConfig().hop_length / MelConfig().sample_rate
        lines.append(f"C2ST held-out accuracy per {win_s:.1f} s window (0.5 = indistinguishable): "
                     f"**{c['accuracy']:.3f}** ± {c['se']:.3f} (95 % CI {lo:.3f}-{hi:.3f}; real "
                     f"{c['real_accuracy']:.3f}, generated {c['generated_accuracy']:.3f}; per clip "
                     f"{c['clip_accuracy']:.3f}; {c['n_test'][0]}+{c['n_test'][1]} held-out clips)")
        if c.get("repeats", 1) > 1:
            lines[-1] = lines[-1].replace(f"**{c['accuracy']:.3f}** ± {c['se']:.3f}", (
                f"**{c['accuracy']:.3f}** (mean of {c['repeats']} splits: "
                f"{', '.join(f'{a:.2f}' for a in c['accuracies'])}; split sd {c['split_sd']:.3f}; "
                f"first split ± {c['se']:.3f}"))
    h = r.get("as_heard")
    if h:
        lines.append(f"C2ST as heard (generated clips through the {h['vocoder']} vocoder and analysed again): "
                     f"**{h['c2st']['accuracy']:.3f}**; the real clips' own resynthesis: "
                     f"{h['c2st_real_resynthesis']['accuracy']:.3f} (the vocoder's share of any gap); "
                     f"audible grain as heard {h['ratio']['grain_audible']:.2f}x")
    ok = []
    if c:
        ok.append(f"C2ST ≤ {TARGETS['c2st']}: {'yes' if c['accuracy'] <= TARGETS['c2st'] else 'no'}")
    ok.append(f"grain within {TARGETS['grain_ratio']}x: "
              f"{'yes' if 1 / TARGETS['grain_ratio'] <= r['ratio']['grain'] <= TARGETS['grain_ratio'] else 'no'}")
    fr = r["ratio"]["flatness_mean"]
    ok.append(f"mean flatness within {TARGETS['flatness_ratio']}x: "
              f"{'yes' if 1 / TARGETS['flatness_ratio'] <= fr <= TARGETS['flatness_ratio'] else 'no'}")
    lines.append("Targets (issue 17): " + "; ".join(ok))
    return "\n".join(lines)


# --------------------------------------------------------------------------- degradations (for validation)

def degrade(mels, kind: str, strength: float, seed: int = 0) -> torch.Tensor:
    """A controlled degradation of real scaled log-mels, to check that the yardstick sees it.

    - ``noise``: add broadband noise power at `strength` dB relative to each clip's loudest bin
      (e.g. -55 mild, -25 heavy), exponentially distributed per bin and frame (a noisy STFT power).
    - ``jitter``: Gaussian noise of `strength` dB std added to each bin's level.
    - ``smear``: Gaussian blur of the mel power with std `strength` bins across frequency and
      `strength` frames across time (1 frame = 11.6 ms).
    """
    x = _as_tensor(mels)
    g = torch.Generator().manual_seed(seed)
    db = _db(x)
    if kind == "noise":
        lvl = db.amax((1, 2), keepdim=True) + strength
        noise = torch.empty_like(db).exponential_(generator=g)
        db = 10 * torch.log10(10 ** (db / 10) + 10 ** (lvl / 10) * noise)
    elif kind == "jitter":
        db = db + strength * torch.randn(db.shape, generator=g)
    elif kind == "smear":
        r = max(1, int(math.ceil(3 * strength)))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / max(strength, 1e-6)) ** 2)
        k = k / k.sum()
        p = 10 ** (db / 10)
        p = nn.functional.conv2d(nn.functional.pad(p[:, None], (r, r, r, r), mode="replicate"),
                                 (k[:, None] * k[None, :])[None, None])[:, 0]
        db = 10 * torch.log10(p.clamp_min(1e-30))
    else:
        raise ValueError(f"unknown degradation {kind!r}: noise, jitter or smear")
    return ((db.clamp(DB_MIN, DB_MIN + 2 * DB_PER_UNIT) - DB_MIN) / DB_PER_UNIT - 1.0)


# --------------------------------------------------------------------------- figure

def plot_side_by_side(real, generated, labels: list[str], out_png: str | Path, cfg: MelConfig | None = None,
                      title: str | None = None) -> Path:
    """One row per label, columns real | generated, all panels on the same colour scale
    (scaled log-mel, vmin -1 = -120 dB, vmax 1 = +40 dB), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dittomusic.utils import atomic_path

    cfg = cfg or MelConfig()
    a, b = _as_tensor(real).numpy(), _as_tensor(generated).numpy()
    n = len(labels)
    fig, axes = plt.subplots(n, 2, figsize=(12, 1.9 * n + 0.6), squeeze=False, layout="constrained")
    img = None
    hz = [0, 500, 1000, 2000, 4000, 8000]
    import librosa

    mf = librosa.mel_frequencies(a.shape[1] + 2, fmin=cfg.fmin, fmax=cfg.fmax or cfg.sample_rate / 2)[1:-1]
    ticks = [int(np.argmin(np.abs(mf - h))) for h in hz]
    for i, lab in enumerate(labels):
        for j, (m, kind) in enumerate(((a[i], "real"), (b[i], "generated"))):
            ax = axes[i, j]
            sec = m.shape[-1] * cfg.hop_length / cfg.sample_rate
            img = ax.imshow(m, origin="lower", aspect="auto", vmin=-1, vmax=1, cmap="magma",
                            extent=(0, sec, -0.5, m.shape[0] - 0.5), interpolation="nearest")
            ax.set_yticks(ticks, [f"{h // 1000}k" if h >= 1000 else str(h) for h in hz], fontsize=7)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{kind}: {lab}", fontsize=8)
            if j == 0:
                ax.set_ylabel("Hz (mel)", fontsize=7)
            if i == n - 1:
                ax.set_xlabel("s", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    if img is not None:
        fig.colorbar(img, ax=axes.ravel().tolist(), shrink=0.6, label="scaled log-mel (same scale everywhere)")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_png
