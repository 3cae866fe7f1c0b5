"""Hard realizations (jaxcba.simulate): statistics against closed forms and the theory layer.

Tolerances are fixed numbers, each a few standard deviations of the estimator over the
stated seeds (the seeds are fixed, so the tests are deterministic).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jaxcba
from jaxcba import theory
from jaxcba.model import realization as R
from jaxcba.model import germs as G
from jaxcba.model.gamma_icdf import gamma_icdf
from jaxcba.model.gaussian_field import excursion_labels, field_from_key
from jaxcba.model.raster import inside, paint_jit

PAPER = jaxcba.CBAParams.paper()


# ------------------------------------------------------------------ references


def spheroid_reference(params, voxel_nm, n=400_000, seed=0):
    """V1 and S1 [nm^-1] by Monte Carlo over the gamma half-axes (independent of jaxcba.theory)."""
    rng = np.random.default_rng(seed)
    a = rng.gamma(params.alpha1 / voxel_nm, 1 / params.gamma, n) * voxel_nm
    c = rng.gamma(params.alpha2 / voxel_nm, 1 / params.gamma, n) * voxel_nm
    big, small = np.maximum(a, c), np.minimum(a, c)
    vol = 4 / 3 * math.pi * big**2 * small
    e = np.sqrt(np.clip(1 - (small / big) ** 2, 1e-12, 1))
    surf = 2 * math.pi * big**2 * (1 + (1 - e**2) / e * np.arctanh(e))
    v1 = 1 - math.exp(-params.lambda_x * vol.mean())
    return v1, (1 - v1) * params.lambda_x * surf.mean()


def ball_empty_space(lambda_y, theta, r):
    """H(r) = 1 - exp(-lambda 4/3 pi E[(R + r)^3]), R ~ Exp(theta) (open balls)."""
    m3 = 6 / theta**3 + 6 * r / theta**2 + 3 * r**2 / theta + r**3
    return 1 - math.exp(-lambda_y * 4 / 3 * math.pi * m3)


# ------------------------------------------------------------- paper at 80 nm

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def paper80():
    return [np.asarray(jaxcba.simulate(PAPER, 200, 80.0, jax.random.key(s))) for s in SEEDS]


def test_labels_and_dtype(paper80):
    v = paper80[0]
    assert v.shape == (200, 200, 200) and v.dtype == np.uint8
    assert set(np.unique(v)) == {0, 1, 2}


def test_fractions_match_theory_at_80nm(paper80):
    th = theory.volume_fractions(PAPER, voxel_nm=80.0)
    g = np.mean([(v == 2).mean() for v in paper80])
    cb = np.mean([(v == 1).mean() for v in paper80])
    solid = np.mean([(v > 0).mean() for v in paper80])
    # paper at 80 nm: graphite 0.107, cb 0.225, solid 0.332
    assert abs(float(th.graphite) - 0.107) < 0.002 and abs(float(th.solid) - 0.332) < 0.003
    assert abs(g - float(th.graphite)) < 0.012  # ~3 sd of the mean of 3 windows (grains ~4 um wide)
    assert abs(cb - float(th.cb)) < 0.008
    assert abs(solid - float(th.solid)) < 0.012
    # independent reference for V1 (Monte Carlo over the half-axes)
    assert abs(float(th.graphite) - spheroid_reference(PAPER, 80.0)[0]) < 1e-3


def test_no_edge_bias(paper80):
    """Graphite fraction in the outer 5 % shell equals the interior one within noise."""
    n, w = 200, 10
    core = np.zeros((n, n, n), bool)
    core[w:-w, w:-w, w:-w] = True
    shell = np.mean([(v[~core] == 2).mean() for v in paper80])
    interior = np.mean([(v[core] == 2).mean() for v in paper80])
    # without margins the shell would lose ~1/3 of its graphite (grains ~25 voxels in radius)
    assert abs(shell - interior) < 0.015, (shell, interior)


# ------------------------------------------------------------------- components


def test_graphite_fraction_and_surface_match_miles():
    """Xi1 alone (mu large, no balls): V1 and S1 vs Miles (theory layer and an MC reference)."""
    p = PAPER.replace(lambda_x=5e-9, alpha1=205.0, alpha2=600.0, gamma=1.971, mu=50.0)
    g = np.asarray(jaxcba.simulate(p, 128, 20.0, jax.random.key(11)))[None] == 2
    v_ref, s_ref = spheroid_reference(p, 20.0)
    dens = theory.graphite_densities(p, voxel_nm=20.0)
    assert abs(float(dens.V) - v_ref) < 2e-3 and abs(float(dens.S) / s_ref - 1) < 0.01
    assert abs(g.mean() - v_ref) < 0.02
    from jaxcba.descriptors import intrinsic_densities

    s_est = np.mean([float(intrinsic_densities(jnp.asarray(m), 20.0).S_V) for m in g])
    assert abs(s_est / s_ref - 1) < 0.08, (s_est, s_ref)


def test_spheroid_marks_law():
    """Half-axes follow the gamma convention, L = max, s = min; axes are isotropic."""
    s1, s2, rate = 205 / 20, 600 / 20, 1.971
    c, m = G.draw_graphite(jax.random.key(3), 4096, (10, 10, 10), 5.0, s1, s2, rate)
    m = np.asarray(m, float)
    rng = np.random.default_rng(0)
    a_ref = rng.gamma(s1, 1 / rate, 400_000)
    c_ref = rng.gamma(s2, 1 / rate, 400_000)
    assert abs(m[:, 3].mean() / np.maximum(a_ref, c_ref).mean() - 1) < 0.01
    assert abs(m[:, 4].mean() / np.minimum(a_ref, c_ref).mean() - 1) < 0.02
    assert np.allclose(np.linalg.norm(m[:, :3], axis=1), 1, atol=1e-5)
    assert np.allclose((m[:, :3] ** 2).mean(axis=0), 1 / 3, atol=0.02)  # isotropic axes
    assert stats.kstest(m[:, 0], "uniform", args=(-1, 2)).pvalue > 1e-3  # n_z uniform on [-1, 1]
    c = np.asarray(c)
    assert c.min() >= -5 and c.max() <= 15


@pytest.mark.parametrize("voxel_nm, n", [(80.0, 96), (20.0, 96)])
def test_excursion_two_point_coverage(voxel_nm, n):
    """Xi2 alone: two-point coverage along the axes vs Eq. 21 (corrected), and the covariance.

    The covariance 1/(1 + (eta h)^2) decays so slowly that the window mean of Z fluctuates
    strongly (sd 0.1 at 96^3, 20 nm); on the periodic grid it is the DC mode, with variance
    v0 = S(0) / n. The comparison is made given the realized mean m: Z = m + Z' with
    Var Z' = 1 - v0, Corr Z'(h) = (rho(h) - v0) / (1 - v0) (exact for the construction).
    """
    from jaxcba.model.gaussian_field import spectrum_octant
    from jaxcba.theory.excursion import coverage_from_correlation

    eta_vox, mu = PAPER.eta * voxel_nm, PAPER.mu
    shape = (n, n, n)
    lab = np.asarray(excursion_labels(jax.random.key(7), shape, eta_vox, mu)).astype(np.float64)
    z = np.asarray(field_from_key(jax.random.key(7), shape, eta_vox), np.float64)
    assert np.mean((z >= mu) == (lab > 0)) > 0.9995  # same field (up to float32 FFT rounding at mu)
    v0 = float(spectrum_octant(shape, eta_vox)[0, 0, 0]) / n**3
    m = z.mean()
    assert abs(m) < 4 * math.sqrt(v0)
    assert abs(((z - m) ** 2).mean() / (1 - v0) - 1) < 0.03
    lags = np.arange(0, 9) if voxel_nm == 80.0 else np.arange(0, 25, 3)
    for h in lags:
        rho = 1 / (1 + (eta_vox * h) ** 2)
        assert abs(float(theory.two_point_coverage(h * voxel_nm, mu, PAPER.eta)) - float(coverage_from_correlation(rho, mu))) < 1e-9
        c = np.mean([(lab * np.roll(lab, -h, axis=a)).mean() for a in range(3)])  # periodic field
        ref = float(coverage_from_correlation((rho - v0) / (1 - v0), (mu - m) / math.sqrt(1 - v0)))
        assert abs(c - ref) < 4e-3, (h, c, ref)
        cov = np.mean([((z - m) * np.roll(z - m, -h, axis=a)).mean() for a in range(3)])
        assert abs(cov - (rho - v0)) < 0.02, (h, cov, rho - v0)


@pytest.mark.parametrize("grow_nm", [0.0, 80.0, 160.0])
def test_ball_empty_space_function(grow_nm):
    lam, theta = PAPER.lambda_y, PAPER.theta
    vols = [np.asarray(R.simulate_balls(96, 80.0, lam, theta, jax.random.key(s), grow_nm=grow_nm)) for s in (0, 1)]
    frac = np.mean([v.mean() for v in vols])
    ref = ball_empty_space(lam, theta, grow_nm)
    assert abs(frac - ref) < 0.01, (frac, ref)
    if grow_nm == 0:
        assert abs(ref - float(theory.ball_fraction(lam, theta))) < 1e-9


def test_open_balls_closed_spheroids():
    """A voxel centre exactly on the boundary: outside an open ball, inside a closed spheroid."""
    d = jnp.asarray([2.0, 1.0, 0.0])
    assert not bool(inside("ball", d[0], 0.0, 0.0, jnp.asarray([2.0])))
    assert bool(inside("ball", d[1], 0.0, 0.0, jnp.asarray([2.0])))
    spheroid = jnp.asarray([1.0, 0.0, 0.0, 4.0, 2.0])  # axis z, L = 4, s = 2
    assert bool(inside("spheroid", 2.0, 0.0, 0.0, spheroid))
    assert bool(inside("spheroid", 0.0, 4.0, 0.0, spheroid))
    assert not bool(inside("spheroid", 2.01, 0.0, 0.0, spheroid))
    vol = jnp.zeros((9, 9, 9), jnp.uint8)
    centre = jnp.asarray([[4.5, 4.5, 4.5]], jnp.float32)
    vol = paint_jit(vol, centre, jnp.asarray([[2.0]], jnp.float32), 0, 1, 1, box=(8, 8, 8), kind="ball")
    zz, yy, xx = np.meshgrid(*[np.arange(9)] * 3, indexing="ij")
    ref = (zz - 4) ** 2 + (yy - 4) ** 2 + (xx - 4) ** 2 < 4
    assert np.array_equal(np.asarray(vol) == 1, ref)


def test_gamma_icdf_vs_scipy_and_gradient():
    u = jnp.asarray([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999999], jnp.float64)[:, None]
    k = jnp.asarray([0.5, 10.25, 197.2, 3000.0], jnp.float64)
    x = np.asarray(gamma_icdf(u, k[None, :]))
    assert np.allclose(x, stats.gamma.ppf(np.asarray(u), np.asarray(k)[None, :]), rtol=1e-9)
    g = np.asarray(jax.grad(lambda kk: gamma_icdf(u, kk[None, :]).sum())(k))
    h = 1e-5 * np.asarray(k)
    ppf = lambda kk: stats.gamma.ppf(np.asarray(u), kk[None, :]).sum(axis=0)  # noqa: E731
    fd = (ppf(np.asarray(k) + h) - ppf(np.asarray(k) - h)) / (2 * h)
    assert np.allclose(g / fd, 1, atol=1e-5)
    assert special.gammainc(10.25, float(x[3, 1])) == pytest.approx(0.5, abs=1e-10)


# ---------------------------------------------------------- reproducibility, batching


def test_same_key_same_volume_and_batch_equals_single():
    keys = jax.random.split(jax.random.key(42), 3)
    a = np.asarray(jaxcba.simulate(PAPER, (24, 32, 40), 80.0, keys[1]))
    b = np.asarray(jaxcba.simulate(PAPER, (24, 32, 40), 80.0, keys[1]))
    assert np.array_equal(a, b)
    batch = np.asarray(R.simulate_batch(PAPER, (24, 32, 40), 80.0, keys))
    assert batch.shape == (3, 24, 32, 40)
    for i in range(3):
        assert (batch[i] == np.asarray(jaxcba.simulate(PAPER, (24, 32, 40), 80.0, keys[i]))).mean() > 0.9999
    assert not np.array_equal(batch[0], batch[1])
    c = np.asarray(jaxcba.simulate(PAPER, (24, 32, 40), 80.0, 7))  # int seeds are accepted
    assert np.array_equal(c, np.asarray(jaxcba.simulate(PAPER, (24, 32, 40), 80.0, jax.random.key(7))))


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "shape, voxel_nm, match",
    [
        ((0, 10, 10), 20.0, "every side of shape"),
        (-5, 20.0, "every side of shape"),
        ((10, 10), 20.0, "three ints"),
        ((10, 10, 10.5), 20.0, "three ints"),
        (10, 0.0, "voxel_nm"),
        (10, -20.0, "voxel_nm"),
        (10, float("nan"), "voxel_nm"),
        (100_000, 20.0, "needs about .* GiB"),
    ],
)
def test_bad_window(shape, voxel_nm, match):
    with pytest.raises(ValueError, match=match):
        jaxcba.simulate(PAPER, shape, voxel_nm, jax.random.key(0))


def test_bad_params():
    with pytest.raises(ValueError, match="lambda_x"):
        jaxcba.simulate(PAPER.replace(lambda_x=-1.0), 10, 20.0, jax.random.key(0))
    with pytest.raises(ValueError, match="eta"):
        jaxcba.simulate(PAPER.replace(eta=float("inf")), 10, 20.0, jax.random.key(0))
    with pytest.raises(ValueError, match="CBAParams"):
        jaxcba.simulate({"lambda_x": 1.0}, 10, 20.0, jax.random.key(0))
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda lx: jaxcba.simulate(PAPER.replace(lambda_x=lx), 10, 20.0, jax.random.key(0)))(1e-11)


def test_memory_estimate_within_budget():
    from jaxcba.model.window import realization_bytes

    assert realization_bytes((800, 800, 800)) / 800**3 < 12


def test_resolution_conversion():
    from jaxcba.model import resolution

    v20 = float(theory.volume_fractions(PAPER, 20.0).graphite)
    v80 = float(theory.volume_fractions(PAPER, 80.0).graphite)
    assert abs(v20 - 0.105) < 2e-3 and abs(v80 - 0.107) < 2e-3  # paper recipe: variance grows with voxel size
    assert resolution.convert(PAPER, 20.0, 80.0) is PAPER
    same = resolution.convert(PAPER, 20.0, 80.0, mode="same_law")
    assert abs(float(theory.volume_fractions(same, 80.0).graphite) - v20) < 1e-6
    back = resolution.from_voxel_units(resolution.voxel_units(PAPER, 40.0), 40.0)
    assert np.allclose([back.to_dict()[k] for k in jaxcba.model.FIELDS], [PAPER.to_dict()[k] for k in jaxcba.model.FIELDS], rtol=1e-12)
    with pytest.raises(ValueError, match="mode"):
        resolution.convert(PAPER, 20.0, 80.0, mode="nope")
    with pytest.raises(ValueError, match="to_nm"):
        resolution.convert(PAPER, 20.0, 0.0)
