"""Two-point coverage C(h): brute force, porespy, and the Gaussian excursion set (Eq. 21)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxcba.descriptors.two_point import autocorrelation, two_point_coverage


def brute_force(x, L):
    """C(h) for all |h_i| <= L by explicit shifted products (no FFT)."""
    out = np.zeros((2 * L + 1,) * 3)
    n = x.shape
    for h in itertools.product(range(-L, L + 1), repeat=3):
        a = x[tuple(slice(max(-k, 0), n[i] - max(k, 0)) for i, k in enumerate(h))]
        b = x[tuple(slice(max(k, 0), n[i] - max(-k, 0)) for i, k in enumerate(h))]
        out[tuple(k + L for k in h)] = np.mean(a & b)
    return out


def gaussian_excursion(n, eta_vox, mu, seed):
    """{Z >= mu} of a periodic stationary Gaussian field with covariance close to
    1 / (1 + (eta h)^2), by circulant embedding with numpy FFT.

    Negative eigenvalues are clipped and the zero frequency is removed (the slowly decaying
    covariance makes the window mean fluctuate by ~0.1 otherwise). Returns the mask and the
    exact correlation function rho~(h) of the generated field along an axis, h = 0..n-1.
    """
    g = np.minimum(np.arange(n), n - np.arange(n)).astype(np.float64)
    h = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    lam = np.clip(np.fft.rfftn(1.0 / (1.0 + (eta_vox * h) ** 2)).real, 0, None)
    lam[0, 0, 0] = 0.0
    cov = np.fft.irfftn(lam, s=(n, n, n))[:, 0, 0]
    w = np.random.default_rng(seed).standard_normal((n, n, n))
    z = np.fft.irfftn(np.sqrt(lam) * np.fft.rfftn(w), s=(n, n, n)) / np.sqrt(cov[0])
    return z >= mu, cov / cov[0]


def excursion_coverage(rho, mu):
    """C = P(Z1 >= mu, Z2 >= mu) for standard normals with correlation rho (the orthant form of Eq. 21)."""
    out = []
    for r in np.minimum(np.atleast_1d(rho), 1 - 1e-9):
        cov = [[1.0, r], [r, 1.0]]
        out.append(stats.multivariate_normal(mean=[0, 0], cov=cov).cdf([-mu, -mu]))
    return np.array(out)


@pytest.fixture(scope="module")
def small():
    return np.random.default_rng(0).random((11, 10, 9)) < 0.4


def test_autocorrelation_equals_brute_force(small):
    L = 4
    np.testing.assert_allclose(np.asarray(autocorrelation(jnp.asarray(small), L)), brute_force(small, L), atol=2e-6)


def test_axes_radial_centered_from_brute_force(small):
    L = 4
    ref = brute_force(small, L)
    tp = two_point_coverage(jnp.asarray(small), 20.0, max_lag_vox=L)
    np.testing.assert_allclose(tp.C_axes[0], ref[L:, L, L], atol=2e-6)
    np.testing.assert_allclose(tp.C_axes[1], ref[L, L:, L], atol=2e-6)
    np.testing.assert_allclose(tp.C_axes[2], ref[L, L, L:], atol=2e-6)
    g = np.arange(-L, L + 1)
    k = np.rint(np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2))
    radial = [ref[k == j].mean() for j in range(L + 1)]
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    np.testing.assert_allclose(tp.h_nm, [20.0 * r[k == j].mean() for j in range(L + 1)], rtol=1e-6)
    assert float(tp.h_nm[1]) == pytest.approx(20.0 * (6 + 12 * np.sqrt(2)) / 18, rel=1e-6)
    np.testing.assert_allclose(tp.C, radial, atol=2e-6)
    assert float(tp.C[0]) == pytest.approx(small.mean(), abs=1e-6)
    np.testing.assert_allclose(tp.centered, np.asarray(radial) - small.mean() ** 2, atol=3e-6)
    d = tp.to_dict()
    assert set(d) == {"h_nm", "C", "centered", "C_axes", "volume_fraction"}


def test_vmap_equals_loop():
    batch = jnp.asarray(np.random.default_rng(1).random((3, 12, 12, 10)) < 0.5)
    f = jax.jit(lambda m: two_point_coverage(m, 5.0, max_lag_vox=5))
    got = jax.vmap(f)(batch)
    for i in range(3):
        one = f(batch[i])
        np.testing.assert_allclose(got.C[i], one.C, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.C_axes[i], one.C_axes, rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="3D"):
        two_point_coverage(jnp.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="max_lag_vox"):
        two_point_coverage(jnp.zeros((4, 5, 6), bool), max_lag_vox=4)


@pytest.fixture(scope="module")
def excursion():
    n, eta, mu = 96, 0.25, 0.3
    out = [gaussian_excursion(n, eta, mu, s) for s in (0, 1)]
    return n, eta, mu, [o[0] for o in out], out[0][1]


@pytest.mark.peers
def test_matches_porespy(excursion):
    ps = pytest.importorskip("porespy")
    x = excursion[3][0][:48, :40, :44]
    res = ps.metrics.two_point_correlation(x, voxel_size=1, bins=24)
    # porespy: plain mean of the per-lag estimate over all lags |h_i| < n_i with
    # bins[i] <= |h| < bins[i + 1]; 'probability_scaled' is C(h)
    c = np.asarray(autocorrelation(jnp.asarray(x), max(x.shape) - 1))
    L = max(x.shape) - 1
    g = [np.arange(-L, L + 1)] * 3
    d = np.sqrt(g[0][:, None, None] ** 2 + g[1][None, :, None] ** 2 + g[2][None, None, :] ** 2)
    valid = np.ones_like(d, bool)
    for ax, n in enumerate(x.shape):
        sl = [None, None, None]
        sl[ax] = slice(None)
        valid &= (np.abs(g[ax]) < n)[tuple(sl)]
    edges = np.asarray(res.bin_edges)
    ours = [c[valid & (d >= a) & (d < b)].mean() for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_allclose(ours, res.probability_scaled, atol=2e-5)
    # and our radial profile at integer lags against porespy's at bin centres (interpolated,
    # porespy labels bin [i, i+1) by i + 1/2 although its mean |h| is larger: compare where
    # C is flat enough for that offset not to matter)
    tp = two_point_coverage(jnp.asarray(x), 1.0, max_lag_vox=20)
    ref = np.interp(np.asarray(tp.h_nm[5:]), res.bin_centers, res.probability_scaled)
    np.testing.assert_allclose(tp.C[5:], ref, atol=0.004)


def test_gaussian_excursion_matches_orthant_probability(excursion):
    n, eta, mu, vols, rho = excursion
    f = jax.jit(lambda m: two_point_coverage(m, 1.0, max_lag_vox=16))
    tps = [f(jnp.asarray(v)) for v in vols]
    C = np.mean([np.asarray(t.C) for t in tps], 0)
    assert C[0] == pytest.approx(1 - stats.norm.cdf(mu), abs=0.005)  # V = 1 - Phi(mu), Eq. 18
    # exact covariance of the generated field, at the reported mean lag of each bin
    ref = excursion_coverage(np.interp(np.asarray(tps[0].h_nm[1:]), np.arange(rho.size), rho), mu)
    # statistical tolerance: two 96^3 fields, correlation length 4 voxels (seen: 1.5e-3)
    np.testing.assert_allclose(C[1:], ref, atol=0.004)


def test_gaussian_excursion_matches_theory_layer(excursion):
    theory = pytest.importorskip("jaxcba.theory")
    if not hasattr(theory, "two_point_coverage"):
        pytest.skip("jaxcba.theory.two_point_coverage not available yet")
    n, eta, mu, vols, rho = excursion
    voxel_nm = 20.0
    f = jax.jit(lambda m: two_point_coverage(m, voxel_nm, max_lag_vox=16))
    tps = [f(jnp.asarray(v)) for v in vols]
    C = np.mean([np.asarray(t.C) for t in tps], 0)
    h_nm = np.asarray(tps[0].h_nm, np.float64)
    ref = np.asarray(theory.two_point_coverage(jnp.asarray(h_nm[1:]), mu, eta / voxel_nm))
    # the generated field's correlation differs from 1/(1 + (eta h)^2) by the removed mean
    # (|rho~ - rho| < 0.012 here, i.e. < 2e-3 in C) on top of the sampling error
    np.testing.assert_allclose(C[1:], ref, atol=0.006)
