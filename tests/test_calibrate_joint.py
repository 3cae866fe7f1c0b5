"""Joint mode building blocks: soft descriptors against independent references (closed forms, the
exact pair counts of stage 2, analytic openings), the image's soft fields, the bounded coordinates,
and bad input. The end-to-end joint run shares the staged pipeline's twin (test_calibrate_pipeline.py)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxcba
from helpers import soft_ball
from jaxcba.calibrate import Adam, Joint, LBFGS, fit_joint
from jaxcba.calibrate._joint import _axis_c2, _granulometry, params_from_x, soft_descriptors, soft_fields_of_labels
from jaxcba.calibrate._measure import masked_axis_two_point


def test_soft_sv_of_a_ball_matches_closed_form():
    n, r = 48, 12.0
    for s in (0.5, 1.0):
        p = soft_ball(n, r, s)
        d = soft_descriptors(p, p, 20.0, max_lag=4, n_open=2)
        # coarea: the level sets p = t are spheres of radius r + s logit(t); their mean area is 4 pi (r^2 + pi^2 s^2 / 3)
        sv = 4 * math.pi * (r * r + math.pi**2 * s * s / 3) * 20.0**2 / (n * 20.0) ** 3
        assert float(d["sv"][0]) == pytest.approx(sv, rel=0.03)
        assert float(d["fractions"][1]) == pytest.approx(0.0, abs=1e-7)  # cb = solid - graphite
        # soft volume = 4/3 pi (r^3 + pi^2 s^2 r) (Fermi-Dirac integral)
        assert float(d["fractions"][0]) * n**3 == pytest.approx(4 / 3 * math.pi * (r**3 + math.pi**2 * s * s * r), rel=2e-3)


def test_two_point_is_the_exact_pair_count():
    rng = np.random.default_rng(0)
    m = rng.random((20, 22, 24)) < 0.4
    c, _ = masked_axis_two_point(m, np.ones_like(m), 5)
    np.testing.assert_allclose(np.asarray(_axis_c2(jnp.asarray(m, jnp.float32)[None], 5))[0], c[1:], rtol=5e-4)


def test_granulometry_of_a_cube_pore():
    p = np.zeros((24, 24, 24), np.float32)
    p[5:12, 5:12, 5:12] = 1.0  # a 7^3 pore survives openings by cubes of side 3, 5, 7, not 9
    np.testing.assert_allclose(np.asarray(_granulometry(jnp.asarray(p), 4)), [1, 1, 1, 0], atol=1e-6)
    p[:, 0, 0] = 1.0  # a one-voxel-thin line is removed by every opening
    g = np.asarray(_granulometry(jnp.asarray(p), 1))
    assert g[0] == pytest.approx(343 / (343 + 24))


def test_image_soft_fields():
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[4:12, 4:12, 4:12] = 1
    lab[6:10, 6:10, 6:10] = 2
    pg, ps = soft_fields_of_labels(lab, 0.25)
    assert np.all(ps >= pg - 1e-7)
    # small softness: the soft fields round to the labels; the boundary is half-way between centres
    np.testing.assert_array_equal((pg > 0.5).astype(np.uint8) + (ps > 0.5), lab)
    assert pg[8, 8, 5] == pytest.approx(1 / (1 + math.exp(0.5 / 0.25)), rel=1e-5)


def test_bounded_coordinates():
    p0 = jaxcba.CBAParams.paper()
    assert params_from_x(jnp.zeros(8), p0, 1.5).to_dict() == pytest.approx(p0.to_dict())
    big = params_from_x(jnp.full(8, 50.0), p0, 1.5)
    # intensities and ball sizes stay within the noise's headroom, mean half-axes within headroom^0.9
    assert float(big.lambda_x) <= 1.5 * p0.lambda_x and float(big.lambda_y) <= 1.5 * p0.lambda_y
    assert float(big.theta) <= 1.5 * p0.theta and float(big.alpha1 / big.gamma) <= 1.5 ** 0.9 * p0.alpha1 / p0.gamma
    assert float(big.mu) == pytest.approx(p0.mu + 50.0)  # mu is free


def test_bad_input():
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[:8] = 1
    p0 = jaxcba.CBAParams.paper()
    with pytest.raises(ValueError, match="gradient method"):
        fit_joint(lab, 40.0, p0, method="nelder-mead")
    with pytest.raises(ValueError, match="integer multiple"):
        fit_joint(lab, 40.0, p0, soft_voxel_nm=60.0)
    with pytest.raises(ValueError, match="too small"):
        fit_joint(lab, 40.0, p0, soft_voxel_nm=120.0)
    with pytest.raises(ValueError, match="no pore"):
        fit_joint(np.ones_like(lab), 40.0, p0, soft_voxel_nm=40.0)
    with pytest.raises(ValueError, match="weights"):
        fit_joint(lab, 40.0, p0, soft_voxel_nm=40.0, weights={"cpsd": 1.0})
    with pytest.raises(ValueError, match="gradient method"):
        Joint(solver="nelder-mead")
    with pytest.raises(ValueError, match="softness"):
        Joint(softness=5.0)
    assert Joint.from_options("lbfgs", max_steps=7).solver == LBFGS(max_steps=7, gtol=1e-6, ftol=1e-3)
    assert Joint().solver == Adam(max_steps=40, learning_rate=0.03, ftol=1e-3, patience=5, gtol=1e-6)
