"""Spheroid functionals, grain expectations and Miles' formulas against independent references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxcba import CBAParams
from jaxcba import theory as T


# ---------------------------------------------------------------- one spheroid
def ref_spheroid(a, c):
    """V, S, K of the spheroid with half-axes (a, c, max(a, c)) by scipy quadrature.

    S: surface of revolution; K = integral of the support function over the unit sphere
    (= 2 pi x mean width), independent of the closed forms of Eqs. 15-16.
    """
    r, p = max(a, c), min(a, c)  # equatorial radius r, polar half-axis p
    vol = 4.0 / 3.0 * math.pi * r * r * p
    surf = 4 * math.pi * integrate.quad(lambda t: r * math.cos(t) * math.hypot(r * math.sin(t), p * math.cos(t)),
                                        0, math.pi / 2, epsabs=0, epsrel=1e-13, limit=200)[0]
    curv = 2 * math.pi * integrate.quad(lambda t: math.sqrt(r * r * (1 - t * t) + p * p * t * t), -1, 1,
                                        epsabs=0, epsrel=1e-13)[0]
    return vol, surf, curv


@pytest.mark.parametrize("a,c", [(1.0, 1.0), (1.0, 0.999), (0.7, 1.0), (3.0, 1.0), (1.0, 0.05), (1.0, 1e-4), (2.0, 5.0)])
def test_spheroid_functionals_match_quadrature(a, c):
    got = [float(x) for x in T.spheroid_functionals(a, c)]
    want = ref_spheroid(a, c)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_ball_limit():
    r = 2.5
    v, s, k = (float(x) for x in T.spheroid_functionals(r, r))
    assert v == pytest.approx(4 / 3 * math.pi * r**3, rel=1e-14)
    assert s == pytest.approx(4 * math.pi * r**2, rel=1e-14)
    assert k == pytest.approx(4 * math.pi * r, rel=1e-14)  # the paper's K for a ball (Eq. 16 at delta = 1)


@pytest.mark.parametrize("a,c", [(1.0, 1.0), (1.0, 0.97), (1.0, 0.3), (1.0, 1e-3), (0.4, 1.3)])
def test_spheroid_gradients_match_finite_differences(a, c):
    f = lambda x: jnp.stack(T.spheroid_functionals(x[0], x[1]))  # noqa: E731
    x = jnp.array([a, c])
    jac = np.asarray(jax.jacfwd(f)(x))
    assert np.all(np.isfinite(jac))
    eps = 1e-6
    for i in range(2):
        e = np.zeros(2)
        e[i] = eps
        fd = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * eps)
        np.testing.assert_allclose(jac[:, i], fd, rtol=1e-6, atol=1e-8)


def test_shape_factors_finite_gradient_at_both_ends():
    g = jax.grad(lambda d: sum(T.spheroid.shape_factors(d)))
    assert np.isfinite(float(g(1.0)))
    assert np.isfinite(float(g(1e-12)))


# ---------------------------------------------------------- grain expectations
def np_spheroid(a, c):
    """Textbook closed forms (numpy, vectorised), checked against quadrature above."""
    r, p = np.maximum(a, c), np.minimum(a, c)
    d = p / r
    e = np.sqrt(np.maximum(1 - d * d, 1e-300))
    vol = 4 / 3 * np.pi * r * r * p
    surf = 2 * np.pi * r * r * (1 + d * d * np.arctanh(np.minimum(e, 1 - 1e-16)) / e)
    curv = 2 * np.pi * r * (d + np.arccos(d) / e)
    return vol, surf, curv


def ref_grain_moments(alpha1, alpha2, gamma, voxel_nm, n=300):
    """E[V], E[S], E[K] over independent gamma half-axes: scipy quad in A (outer), and in C
    a Gauss-Legendre rule split at C = A (the kink of max/min), on the gamma densities."""
    da = stats.gamma(alpha1 / voxel_nm, scale=voxel_nm / gamma)
    dc = stats.gamma(alpha2 / voxel_nm, scale=voxel_nm / gamma)
    lo_c, hi_c = dc.ppf(1e-16), dc.isf(1e-16)
    x, w = np.polynomial.legendre.leggauss(n)

    def inner(a):
        cuts = [lo_c] + ([a] if lo_c < a < hi_c else []) + [hi_c]
        tot = np.zeros(3)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            cc = lo + (hi - lo) * (x + 1) / 2
            ww = w * (hi - lo) / 2 * dc.pdf(cc)
            tot += [np.sum(ww * f) for f in np_spheroid(a, cc)]
        return tot

    lo_a, hi_a = da.ppf(1e-16), da.isf(1e-16)
    pts = [p for p in (dc.mean(),) if lo_a < p < hi_a]
    return [integrate.quad(lambda a: inner(a)[j] * da.pdf(a), lo_a, hi_a, points=pts or None,
                           epsabs=0, epsrel=1e-10, limit=200)[0] for j in range(3)]


@pytest.mark.parametrize("alpha1,alpha2,gamma,voxel_nm", [
    (205.0, 3944.0, 1.971, 20.0),   # Table 2
    (205.0, 3944.0, 1.971, 80.0),   # same parameters at 80 nm voxels
    (60.0, 90.0, 0.8, 20.0),        # comparable axes: mass near the a = c kink
])
def test_grain_moments_match_nested_quadrature(alpha1, alpha2, gamma, voxel_nm):
    p = CBAParams.paper().replace(alpha1=alpha1, alpha2=alpha2, gamma=gamma)
    m = T.grain_moments(p, voxel_nm)
    got = [float(m.V), float(m.S), float(m.K)]
    np.testing.assert_allclose(got, ref_grain_moments(alpha1, alpha2, gamma, voxel_nm), rtol=1e-6)


# ------------------------------------------------------------------ Miles (10-13)
def test_miles_formulas_by_hand():
    lam, v, s, k = 2e-3, 30.0, 50.0, 20.0
    d = T.miles_densities(lam, v, s, k)
    vv = 1 - math.exp(-lam * v)
    assert float(d.V) == pytest.approx(vv, rel=1e-14)
    assert float(d.S) == pytest.approx(lam * (1 - vv) * s, rel=1e-14)
    assert float(d.K) == pytest.approx(lam * (1 - vv) * (k - math.pi**2 * lam * s * s / 32), rel=1e-13)
    assert float(d.N) == pytest.approx(lam * (1 - vv) * (1 - lam * k * s / (4 * math.pi) + math.pi * lam**2 * s**3 / 384),
                                       rel=1e-13)


def test_table1_model_column_and_independent_k_n():
    d = T.graphite_densities(CBAParams.paper(), voxel_nm=20.0)
    assert float(d.V) == pytest.approx(0.10569, rel=5e-3)
    assert float(d.S) == pytest.approx(0.0014377, rel=1.5e-2)
    # K and N of Table 1 are not reproducible (docs/model.md, "Pitfalls"); compare with our own independent
    # evaluation: nested scipy quadrature of Eqs. 14-16 inserted in Eqs. 10-13.
    ev, es, ek = ref_grain_moments(205.0, 3944.0, 1.971, 20.0)
    ref = T.miles_densities(6.355e-11, ev, es, ek)
    assert float(d.K) == pytest.approx(float(ref.K), rel=1e-6)
    assert float(d.N) == pytest.approx(float(ref.N), rel=1e-5)
    assert float(d.K) == pytest.approx(3.97e-7, rel=1e-3)
    assert float(d.N) == pytest.approx(-5.7e-11, rel=1e-2)


@pytest.mark.parametrize("lambda_x,v1", [(2.21e-11, 0.0381), (3.55e-11, 0.0605), (4.93e-11, 0.0830), (6.36e-11, 0.1057),
                                         (7.81e-11, 0.1283), (9.33e-11, 0.1512), (1.09e-10, 0.1744)])
def test_table3_graphite_fractions(lambda_x, v1):
    d = T.graphite_densities(CBAParams.paper().replace(lambda_x=lambda_x))
    assert abs(float(d.V) - v1) <= 1e-3


def _fd_grad(f, x, rel=1e-5):
    g = np.zeros_like(x)
    for i in range(len(x)):
        h = rel * abs(x[i])
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("field", ["V", "S", "K", "N"])
def test_graphite_densities_gradient_matches_finite_differences(field):
    base = np.array([6.355e-11, 205.0, 3944.0, 1.971])

    def f(x):
        p = CBAParams.paper().replace(lambda_x=x[0], alpha1=x[1], alpha2=x[2], gamma=x[3])
        return getattr(T.graphite_densities(p), field)

    g = np.asarray(jax.grad(lambda x: f(x))(jnp.asarray(base)))
    fd = _fd_grad(lambda x: float(f(jnp.asarray(x))), base)
    np.testing.assert_allclose(g * base, fd * base, rtol=1e-5, atol=1e-12 * abs(float(f(jnp.asarray(base)))))


def test_gradient_at_equal_mean_axes_is_finite():
    # alpha1 == alpha2: the expectation integrates across the a = c kink (delta = 1).
    p = CBAParams.paper().replace(alpha1=100.0, alpha2=100.0, gamma=1.0)
    g = jax.grad(lambda a: T.graphite_densities(p.replace(alpha1=a)).K)(100.0)
    fd = (float(T.graphite_densities(p.replace(alpha1=100.001)).K) - float(T.graphite_densities(p.replace(alpha1=99.999)).K)) / 0.002
    assert float(g) == pytest.approx(fd, rel=1e-5)


def test_jit_vmap_over_parameter_batch():
    lam = jnp.array([2.21e-11, 6.355e-11, 1.09e-10])
    p = CBAParams.paper()
    batched = jax.vmap(lambda l: T.volume_fractions(p.replace(lambda_x=l)).graphite)(lam)
    looped = [float(T.volume_fractions(p.replace(lambda_x=float(l))).graphite) for l in lam]
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-12)
    jitted = jax.jit(lambda q: T.graphite_densities(q).S)(p)
    assert float(jitted) == pytest.approx(float(T.graphite_densities(p).S), rel=1e-12)
    # broadcasting: a CBAParams whose fields carry a batch axis
    pb = p.replace(lambda_x=lam)
    np.testing.assert_allclose(np.asarray(T.graphite_densities(pb).V), [float(T.graphite_densities(p.replace(lambda_x=float(l))).V) for l in lam], rtol=1e-12)
