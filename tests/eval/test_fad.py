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
