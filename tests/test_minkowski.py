"""Intrinsic volume densities: weights, single bodies, peers and Miles' formulas for a Boolean model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcba.descriptors.minkowski import (
    DIRECTION_WEIGHTS,
    DIRECTIONS,
    configuration_histogram,
    configuration_weights,
    intrinsic_densities,
    volume_fraction,
)


def totals(mask, euler="6", curvature="4"):
    """Totals V, S, M, chi in voxel units (density x number of cells)."""
    h = np.asarray(configuration_histogram(jnp.asarray(mask))).astype(np.float64)
    return configuration_weights(euler, curvature) @ h


def digitised_ball(r, centre, n):
    g = np.arange(n, dtype=np.float64)
    d2 = (g[:, None, None] - centre[0]) ** 2 + (g[None, :, None] - centre[1]) ** 2 + (g[None, None, :] - centre[2]) ** 2
    return d2 < r * r


def boolean_balls(n, lam, r, seed):
    """Boolean model of balls of radius r [vox]: exactly round(lam |W+|) uniform germs in the
    window dilated by r + 1 (a binomial process of intensity lam), voxel centres at integers."""
    rng = np.random.default_rng(seed)
    lo, hi = -r - 1.0, n + r + 1.0
    centres = rng.uniform(lo, hi, size=(int(round(lam * (hi - lo) ** 3)), 3))
    vol = np.zeros((n, n, n), bool)
    R = int(np.ceil(r)) + 1
    for c in centres:
        sl = [np.arange(max(int(c[a]) - R, 0), min(int(c[a]) + R + 2, n)) for a in range(3)]
        if min(s.size for s in sl) == 0:
            continue
        d2 = (sl[0][:, None, None] - c[0]) ** 2 + (sl[1][None, :, None] - c[1]) ** 2 + (sl[2][None, None, :] - c[2]) ** 2
        vol[np.ix_(*sl)] |= d2 < r * r
    return vol


def miles_balls(lam, r):
    """Miles' formulas (paper Eqs. 10-13) for balls of radius r: V, S, M, chi densities."""
    v, s, m = 4 / 3 * np.pi * r**3, 4 * np.pi * r**2, 4 * np.pi * r
    V = 1 - np.exp(-lam * v)
    return np.array(
        [
            V,
            lam * (1 - V) * s,
            lam * (1 - V) * (m - np.pi**2 * lam * s**2 / 32),
            lam * (1 - V) * (1 - lam * m * s / (4 * np.pi) + np.pi * lam**2 * s**3 / 384),
        ]
    )


# ------------------------------------------------------------------------------------------------


def test_direction_weights_are_voronoi_solid_angles():
    # independent: nearest-direction assignment on a midpoint grid of the sphere (z = cos theta)
    n = 600
    z = (np.arange(n) + 0.5) / n * 2 - 1
    phi = (np.arange(2 * n) + 0.5) / (2 * n) * 2 * np.pi
    Z, P = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1 - Z**2)
    pts = np.stack([Z, s * np.sin(P), s * np.cos(P)], -1).reshape(-1, 3)
    u = np.concatenate([DIRECTIONS, -DIRECTIONS]).astype(float)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    k = np.argmax(pts @ u.T, axis=1) % 13
    frac = np.bincount(k, minlength=13) / k.size
    np.testing.assert_allclose(DIRECTION_WEIGHTS, frac, atol=3e-4)
    assert DIRECTION_WEIGHTS.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("euler", ["6", "14", "26"])
def test_weights_empty_full_and_single_voxel(euler):
    w = configuration_weights(euler, "4")
    np.testing.assert_allclose(w[:, 0], 0, atol=1e-15)
    np.testing.assert_allclose(w[1:, 255], 0, atol=1e-15)
    x = np.zeros((5, 5, 5), bool)
    x[2, 2, 2] = True
    assert totals(x, euler)[3] == pytest.approx(1.0)


@pytest.mark.parametrize("euler, connectivity", [("6", 1), ("26", 3)])
def test_euler_characteristic_matches_skimage(euler, connectivity):
    measure = pytest.importorskip("skimage.measure")
    rng = np.random.default_rng(1)
    for p in (0.2, 0.5, 0.75):
        x = rng.random((14, 13, 12)) < p
        xp = np.pad(x, 1)  # all cells touching the set lie inside the window
        assert totals(xp, euler)[3] == pytest.approx(measure.euler_number(x, connectivity=connectivity), abs=1e-9)


def test_euler_14_between_6_and_26_on_tunnels():
    # a solid torus-like ring: chi = 0 for every adjacency
    x = np.zeros((12, 12, 12), bool)
    x[3:9, 3:9, 5:7] = True
    x[5:7, 5:7, 5:7] = False
    for e in ("6", "14", "26"):
        assert totals(x, e)[3] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("r", [8.0, 12.5])
def test_single_digitised_ball(r):
    rng = np.random.default_rng(int(r))
    n = int(2 * r) + 8
    centre = n / 2 + rng.uniform(-0.5, 0.5, 3)
    x = digitised_ball(r, centre, n)
    V, S, M, chi = totals(x)
    assert x.sum() == pytest.approx(4 / 3 * np.pi * r**3, rel=0.01)
    assert S == pytest.approx(4 * np.pi * r**2, rel=0.01)
    assert M == pytest.approx(4 * np.pi * r, rel=0.015)
    for e in ("6", "14", "26"):
        assert totals(x, e)[3] == pytest.approx(1.0)


def test_rotated_cube():
    # cube of edge a, random rotation: V = a^3, S = 6 a^2, M = 3 pi a, chi = 1 (edges have
    # M = (1/2) * exterior angle * length = 12 * (pi/4) * a)
    a, n = 20.0, 44
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    g = np.arange(n) - n / 2 + 0.2
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1) @ q
    x = np.all(np.abs(pts) < a / 2, axis=-1)
    V, S, M, chi = totals(x)
    assert x.sum() == pytest.approx(a**3, rel=0.01)
    assert S == pytest.approx(6 * a**2, rel=0.04)  # measured -2.9 %
    assert M == pytest.approx(3 * np.pi * a, rel=0.04)  # measured +3.0 %
    assert chi == pytest.approx(1.0)


def test_axis_aligned_box_surface_is_discrete_crofton():
    # independent reference: count the mixed lattice pairs along each direction by slicing
    x = np.zeros((24, 20, 16), bool)
    x[3:20, 4:13, 2:12] = True
    ref = 0.0
    for d, c in zip(DIRECTIONS, DIRECTION_WEIGHTS):
        a = x[tuple(slice(max(-k, 0), x.shape[i] - max(k, 0)) for i, k in enumerate(d))]
        b = x[tuple(slice(max(k, 0), x.shape[i] - max(-k, 0)) for i, k in enumerate(d))]
        ref += 2 * c * np.count_nonzero(a != b) / np.linalg.norm(d)
    V, S, M, chi = totals(x)
    assert S == pytest.approx(ref, rel=1e-12)
    assert x.sum() == 17 * 9 * 10 and chi == pytest.approx(1.0)
    # M of a box: exact pi (a + b + c) for the box spanned by the voxel centres, up to the
    # lattice bias of axis-aligned edges (flat faces contribute nothing)
    assert M == pytest.approx(np.pi * (16 + 8 + 9), rel=0.1)


def test_units_and_volume_fraction():
    x = digitised_ball(6.0, (9.3, 9.6, 10.1), 20)
    d1 = intrinsic_densities(jnp.asarray(x), 1.0)
    d20 = intrinsic_densities(jnp.asarray(x), 20.0)
    assert float(d1.V_V) == pytest.approx(x.mean()) == pytest.approx(float(volume_fraction(x)))
    assert float(d20.S_V) == pytest.approx(float(d1.S_V) / 20, rel=1e-6)
    assert float(d20.M_V) == pytest.approx(float(d1.M_V) / 400, rel=1e-6)
    assert float(d20.chi_V) == pytest.approx(float(d1.chi_V) / 8000, rel=1e-6)
    assert float(d1.S_V) == pytest.approx(totals(x)[1] / 19**3, rel=1e-5)
    d = d20.to_dict()
    assert set(d) == {"V_V", "S_V", "M_V", "chi_V"} and all(isinstance(v, float) for v in d.values())


@pytest.mark.parametrize("shape", [(2, 2, 2), (3, 5, 4), (6, 7, 3), (7, 4, 6), (8, 5, 3), (9, 4, 6), (14, 3, 5)])
def test_histogram_is_numpys_bincount_of_the_cell_codes(shape):
    """Every remainder of the planes-per-count chunking (2 to 13 planes of cells), and the
    batch (vmap) and one-volume paths, against the codes built corner by corner in NumPy."""
    rng = np.random.default_rng(sum(shape))
    masks = rng.random((2, *shape)) < 0.45
    corners = [((k >> 2) & 1, (k >> 1) & 1, k & 1) for k in range(8)]
    cells = tuple(s - 1 for s in shape)
    for m, batched in zip(masks, np.asarray(jax.vmap(configuration_histogram)(jnp.asarray(masks)))):
        code = sum(m[dz : dz + cells[0], dy : dy + cells[1], dx : dx + cells[2]].astype(np.int64) << k
                   for k, (dz, dy, dx) in enumerate(corners))
        want = np.bincount(code.ravel(), minlength=256)
        assert np.array_equal(np.asarray(configuration_histogram(jnp.asarray(m))), want)
        assert np.array_equal(batched, want)
    # the point count over the whole image, per batch index
    np.testing.assert_allclose(np.asarray(volume_fraction(masks)), masks.mean(axis=(1, 2, 3)), rtol=1e-6)


def test_vmap_equals_loop():
    rng = np.random.default_rng(5)
    batch = jnp.asarray(rng.random((3, 12, 11, 10)) < 0.4)
    f = jax.jit(lambda m: intrinsic_densities(m, 20.0))
    got = jax.vmap(f)(batch)
    for i in range(3):
        one = f(batch[i])
        for name in ("V_V", "S_V", "M_V", "chi_V"):
            np.testing.assert_allclose(getattr(got, name)[i], getattr(one, name), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="3D"):
        intrinsic_densities(jnp.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="at least 2"):
        intrinsic_densities(jnp.zeros((1, 4, 4), bool))
    with pytest.raises(ValueError, match="adjacency"):
        configuration_weights("8", "4")
    with pytest.raises(ValueError, match="adjacency"):
        configuration_weights("6", "6")


# ------------------------------------------------------------------------------------------------
# Boolean model of balls vs Miles' formulas (and vs quantimpy on the same volumes)

R, VV, N, SEEDS = 10.0, 0.05, 200, (0, 1, 2, 3)


@pytest.fixture(scope="module")
def boolean_estimates():
    lam = -np.log(1 - VV) / (4 / 3 * np.pi * R**3)
    f = jax.jit(lambda m: intrinsic_densities(m, 1.0))
    vols = [boolean_balls(N, lam, R, s) for s in SEEDS]
    ours = [f(jnp.asarray(v)) for v in vols]
    ours = np.array([[float(d.V_V), float(d.S_V), float(d.M_V), float(d.chi_V)] for d in ours])
    return lam, vols, ours


@pytest.mark.slow
def test_boolean_model_matches_miles(boolean_estimates):
    lam, vols, ours = boolean_estimates
    th = miles_balls(lam, R)
    np.testing.assert_allclose(ours[:, 0], [v.mean() for v in vols], rtol=1e-6)  # point count
    mean = ours.mean(0)
    assert mean[0] == pytest.approx(th[0], rel=0.03)  # sampling noise only
    assert mean[1] == pytest.approx(th[1], rel=0.03)
    assert mean[2] == pytest.approx(th[2], rel=0.05)
    assert mean[3] == pytest.approx(th[3], rel=0.10)


@pytest.mark.slow
@pytest.mark.peers
def test_boolean_model_closer_to_miles_than_quantimpy(boolean_estimates):
    mk = pytest.importorskip("quantimpy.minkowski")
    lam, vols, ours = boolean_estimates
    th = miles_balls(lam, R)
    q = []
    for v in vols:
        # quantimpy: S = 8 M1, integral of mean curvature = 2 pi^2 M2, chi = (4 pi / 3) M3
        _, m1, m2, m3 = mk.functionals(np.ascontiguousarray(v))
        q.append([8 * m1 / v.size, 2 * np.pi**2 * m2 / v.size, 4 * np.pi / 3 * m3 / v.size])
    err_q = np.abs(np.mean(q, 0) / th[1:] - 1)
    err_ours = np.abs(ours.mean(0)[1:] / th[1:] - 1)
    assert np.all(err_ours < err_q), (err_ours, err_q)
