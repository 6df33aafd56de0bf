"""Fréchet Audio Distance between two sets of embeddings (Kilgour et al. 2019)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def gaussian_stats(emb) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2 or len(e) < 2:
        raise ValueError(f"need a [N >= 2, D] embedding matrix, got shape {e.shape}")
    return e.mean(0), np.cov(e, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)); the sqrt's tiny imaginary noise is dropped."""
    covmean, _ = scipy.linalg.sqrtm(cov1 @ cov2, disp=False)
    if not np.isfinite(covmean).all():  # singular product: regularize as in the reference FID code
        eps = np.eye(len(cov1)) * 1e-6
        covmean = scipy.linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = np.real(covmean)
    d = mu1 - mu2
    return float(d @ d + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def fad(emb_a, emb_b) -> float:
    return frechet_distance(*gaussian_stats(emb_a), *gaussian_stats(emb_b))


def paired_ratio_ci(x: np.ndarray, y: np.ndarray, distance, *, boot: int = 1000, seed: int = 0,
                    limit: float = 1.1) -> dict:
    """distance(x) / distance(y) with a paired bootstrap over items (x[i] and y[i] share a prompt and seed, so
    resampling them together cancels what the clips drawn do to both): the ratio, its 95 % percentile interval
    and the share of resamples <= limit. distance: embeddings [N, D] -> a distance to a fixed reference."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need paired sets of >= 2 items, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(boot):
        i = rng.integers(0, len(x), len(x))
        ratios.append(distance(x[i]) / max(distance(y[i]), 1e-9))
    ratios = np.array(ratios)
    return {"ratio": distance(x) / max(distance(y), 1e-9),
            "ci95": np.percentile(ratios, [2.5, 97.5]).tolist(), "share_within_limit": float((ratios <= limit).mean()),
            "limit": limit, "boot": boot, "items": len(x)}


def kid(emb_a, emb_b, degree: int = 3, standardize: bool = True) -> float:
    """Kernel distance (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3.

    Unlike FAD it has no small-sample bias, so sets of a handful of clips can be compared.
    `standardize` z-scores both sets with the statistics of `emb_b` (the reference): the cubic
    kernel was designed for O(1) dot products, and our classifier embeddings have x.y / d up to
    ~10, which cubes into a variance that swamps the signal.
    """
    a, b = np.asarray(emb_a, dtype=np.float64), np.asarray(emb_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) < 2 or len(b) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two [N >= 2, D] embedding matrices, got {a.shape} and {b.shape}")
    if standardize:
        mu, sd = b.mean(0), b.std(0) + 1e-8
        a, b = (a - mu) / sd, (b - mu) / sd
    d = a.shape[1]
    kaa, kbb, kab = ((x @ y.T / d + 1) ** degree for x, y in ((a, a), (b, b), (a, b)))
    m, n = len(a), len(b)
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                 - 2 * kab.mean())
