import numpy as np
import pytest

from dittomusic.eval.fad import fad, frechet_distance


def test_identical_sets_have_zero_distance():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert abs(fad(x, x)) < 1e-8


def test_closed_form_gaussians():
    d = 6
    # N(0, I) vs N(m, 4I): |m|^2 + d * (1 + 4 - 2 * 2)
    m = np.full(d, 0.5)
    assert frechet_distance(np.zeros(d), np.eye(d), m, 4 * np.eye(d)) == pytest.approx(d * 0.25 + d, rel=1e-9)


def test_sample_estimate_tracks_the_true_distance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 4))
    b = rng.normal(size=(4000, 4)) * 2 + 1
    assert fad(a, b) == pytest.approx(4 * 1 + 4 * 1, rel=0.1)
    assert fad(a, b) > fad(a, rng.normal(size=(4000, 4)))


def test_bad_shapes():
    with pytest.raises(ValueError, match="N >= 2"):
        fad(np.zeros((1, 3)), np.zeros((5, 3)))


def test_kid_is_unbiased_at_small_n_where_fad_is_not():
    from dittomusic.eval.fad import kid

    rng = np.random.default_rng(2)
    ref = rng.normal(size=(400, 8))
    same = [kid(rng.normal(size=(5, 8)), ref) for _ in range(300)]
    shifted = [kid(rng.normal(size=(5, 8)) + 0.7, ref) for _ in range(300)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))  # zero on average
    assert np.mean(shifted) > 10 * np.std(same) / np.sqrt(len(same))
    assert fad(rng.normal(size=(5, 8)), ref) > 5  # FAD of 5 samples is dominated by its bias
    with pytest.raises(ValueError, match="N >= 2"):
        kid(np.zeros((1, 3)), ref[:, :3])


def test_kid_standardizes_by_the_reference_so_feature_scale_does_not_matter():
    from dittomusic.eval.fad import kid

    rng = np.random.default_rng(3)
    ref, gen = rng.normal(size=(50, 6)), rng.normal(size=(8, 6)) + 0.5
    scale = np.array([1.0, 10.0, 0.1, 5.0, 1.0, 30.0])
    assert np.isclose(kid(gen * scale + 4, ref * scale + 4), kid(gen, ref), rtol=1e-6)
    assert not np.isclose(kid(gen * scale, ref * scale, standardize=False), kid(gen, ref, standardize=False))


def test_paired_ratio_ci_brackets_a_real_gap_and_is_seeded():
    from dittomusic.eval.fad import paired_ratio_ci

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 4))
    y = rng.normal(size=(120, 4))
    x = y + 0.8  # the same items, shifted: every resample sees the gap
    dist = lambda e: fad(e, ref)  # noqa: E731
    r = paired_ratio_ci(x, y, dist, boot=200, seed=3, limit=1.3)
    assert r["ratio"] == pytest.approx(dist(x) / dist(y))
    assert 1.3 < r["ci95"][0] < r["ratio"] < r["ci95"][1] and r["share_within_limit"] == 0.0
    assert r == paired_ratio_ci(x, y, dist, boot=200, seed=3, limit=1.3)
    same = paired_ratio_ci(y, y, dist, boot=50)
    assert same["ci95"] == [1.0, 1.0] and same["share_within_limit"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        paired_ratio_ci(x, y[:10], dist)
