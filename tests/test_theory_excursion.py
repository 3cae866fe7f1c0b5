"""Gaussian excursion set (Eqs. 2, 18-21 corrected) and pore balls / fractions (Eqs. 22-25)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jaxcba import CBAParams
from jaxcba import theory as T


def orthant_mvn(mu, rho):
    cov = [[1.0, rho], [rho, 1.0]]
    return stats.multivariate_normal(mean=[0.0, 0.0], cov=cov, abseps=1e-12, releps=1e-12).cdf([-mu, -mu])


def orthant_owen(mu, rho):
    """P(Z1 >= mu, Z2 >= mu) = Phi(-mu) - 2 T(-mu, sqrt((1 - rho) / (1 + rho))) (Owen's T, exact)."""
    return special.ndtr(-mu) - 2.0 * special.owens_t(-mu, math.sqrt((1 - rho) / (1 + rho)))


PAIRS = [(mu, rho) for mu in (-1.5, -0.3, 0.0, 0.499, 1.2, 2.0) for rho in (0.02, 0.3, 0.65, 0.9)] + [(0.499, 0.999)]


@pytest.mark.parametrize("mu,rho", PAIRS)
def test_coverage_equals_bivariate_normal_orthant(mu, rho):
    got = float(T.coverage_from_correlation(rho, mu))
    assert got == pytest.approx(orthant_mvn(mu, rho), abs=1e-6)
    assert got == pytest.approx(orthant_owen(mu, rho), abs=1e-12)


def test_coverage_limits():
    mu, eta = 0.499, 0.0127
    v2 = float(T.excursion_fraction(mu))
    assert v2 == pytest.approx(1 - stats.norm.cdf(mu), rel=1e-14)
    assert float(T.two_point_coverage(0.0, mu, eta)) == pytest.approx(v2, rel=1e-12)
    assert float(T.two_point_coverage(1e9, mu, eta)) == pytest.approx(v2 * v2, rel=1e-9)
    assert float(T.covariance(1 / eta, eta)) == pytest.approx(0.5)


def test_mu_plug_in_inverts_fraction():
    for v2 in (0.05, 0.2259, 0.5, 0.9):
        mu = float(T.mu_from_fraction(v2))
        assert mu == pytest.approx(stats.norm.ppf(1 - v2), rel=1e-12, abs=1e-14)
        assert float(T.excursion_fraction(mu)) == pytest.approx(v2, rel=1e-12)


def test_correlation_inverse_and_its_gradient():
    mu = 0.499
    rho = np.array([0.01, 0.2, 0.5, 0.8, 0.97])
    c = T.coverage_from_correlation(rho, mu)
    np.testing.assert_allclose(np.asarray(T.correlation_from_coverage(c, mu)), rho, atol=1e-10)
    # d rho / d c = 1 / (dC / d rho)
    g = jax.grad(lambda cc: T.correlation_from_coverage(cc, mu))(c[2])
    dc = jax.grad(lambda r: T.coverage_from_correlation(r, mu))(0.5)
    assert float(g) == pytest.approx(1 / float(dc), rel=1e-8)


@pytest.mark.parametrize("mu,eta", [(0.499, 0.0127), (-0.4, 0.05), (1.1, 0.004)])
def test_fit_eta_recovers_eta_from_exact_and_noisy_coverage(mu, eta):
    h = np.arange(1, 40) * 20.0
    c = np.asarray(T.two_point_coverage(h, mu, eta))
    assert float(T.fit_eta(h, c, mu)) == pytest.approx(eta, rel=1e-8)
    rng = np.random.default_rng(0)
    noisy = c + rng.normal(0, 2e-4, size=c.shape)
    assert float(T.fit_eta(h, noisy, mu)) == pytest.approx(eta, rel=0.05)


def test_two_point_gradient_matches_finite_differences():
    h = jnp.array([10.0, 60.0, 300.0])

    def f(x):
        return jnp.sum(T.two_point_coverage(h, x[0], x[1]) * jnp.array([1.0, 2.0, 3.0]))

    x = np.array([0.499, 0.0127])
    g = np.asarray(jax.grad(f)(jnp.asarray(x)))
    for i in range(2):
        e = np.zeros(2)
        e[i] = 1e-6 * x[i]
        fd = (float(f(jnp.asarray(x + e))) - float(f(jnp.asarray(x - e)))) / (2 * e[i])
        assert g[i] == pytest.approx(fd, rel=1e-6)


# ----------------------------------------------------------------- balls, fractions
def test_ball_fraction_and_lambda_y_inverse():
    lam, theta = 9.340e-9, 0.0105
    v3 = float(T.ball_fraction(lam, theta))
    # E[R^3] = 6 / theta^3 for Exp(theta): check by scipy
    er3 = stats.expon(scale=1 / theta).moment(3)
    assert v3 == pytest.approx(1 - math.exp(-lam * 4 / 3 * math.pi * er3), rel=1e-12)
    v1, v2 = 0.105, 0.3089
    v = v1 + v2 * (1 - v1) * (1 - v3)
    assert float(T.lambda_y_for_fraction(v, v1, v2, theta)) == pytest.approx(lam, rel=1e-10)
    # Eq. 24 inverted: back from the fraction computed through the scipy moment above
    assert float(T.lambda_y_for_ball_fraction(v3, theta)) == pytest.approx(lam, rel=1e-10)


def test_volume_fractions_identity_and_paper_values():
    p = CBAParams.paper()
    f20 = T.volume_fractions(p, 20.0)
    f80 = T.volume_fractions(p, 80.0)
    v1, v2, v3 = float(f20.graphite), float(f20.excursion), float(f20.pores_removed)
    assert float(f20.cb) == pytest.approx(v2 * (1 - v1) * (1 - v3), rel=1e-14)
    assert float(f20.solid) == pytest.approx(v1 + v2 * (1 - v1) * (1 - v3), rel=1e-14)
    # the paper's fractions: graphite 10.55 %, cb 22.59 % (Section 2.3.3), solid 1 - 0.6686
    assert (float(f20.graphite), float(f20.cb), float(f20.solid)) == pytest.approx((0.105, 0.226, 0.331), abs=1.5e-3)
    assert (float(f80.graphite), float(f80.cb), float(f80.solid)) == pytest.approx((0.107, 0.225, 0.332), abs=1.5e-3)


@pytest.mark.parametrize("field", ["graphite", "cb", "pores_removed", "solid"])
def test_volume_fraction_gradients_in_all_parameters(field):
    names = ["lambda_x", "alpha1", "alpha2", "gamma", "mu", "eta", "theta", "lambda_y"]
    p0 = CBAParams.paper()
    x0 = np.array([float(getattr(p0, n)) for n in names])

    def f(x):
        return getattr(T.volume_fractions(CBAParams(*[x[i] for i in range(8)])), field)

    g = np.asarray(jax.grad(f)(jnp.asarray(x0)))
    for i in range(8):
        e = np.zeros(8)
        e[i] = 1e-5 * abs(x0[i])
        fd = (float(f(jnp.asarray(x0 + e))) - float(f(jnp.asarray(x0 - e)))) / (2 * e[i])
        assert g[i] * x0[i] == pytest.approx(fd * x0[i], rel=1e-5, abs=1e-10), names[i]
