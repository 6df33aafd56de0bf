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
