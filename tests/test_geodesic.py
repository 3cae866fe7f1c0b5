"""Geodesic distance (26-neighbourhood, Euclidean steps) and mean geodesic tortuosity."""

import jax
import numpy as np
import pytest
from scipy import ndimage

import jaxcba.morphology
from _references import dijkstra_distance as _dijkstra
from jaxcba.descriptors.geodesic import geodesic_distance, geodesic_tortuosity


def _blobs(n, porosity, seed, sigma=1.5):
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), sigma, mode="wrap")
    return f > np.quantile(f, 1 - porosity)


@pytest.mark.parametrize("seed,porosity", [(0, 0.35), (1, 0.55)])
def test_geodesic_distance_equals_dijkstra(seed, porosity):
    m = _blobs(28, porosity, seed)
    seeds = np.zeros_like(m)
    seeds[-1] = True
    got = np.asarray(geodesic_distance(m, seeds))
    ref = _dijkstra(m, seeds)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-4)


def test_geodesic_distance_equals_skimage_mcp():
    """Independent reference: scikit-image's minimum-cost paths on the 26-neighbourhood with unit
    cost per voxel (``MCP_Geometric``: step cost = Euclidean step length x mean voxel cost)."""
    graph = pytest.importorskip("skimage.graph")
    m = _blobs(30, 0.5, 7)[:, :26, :22]
    seeds = np.zeros_like(m)
    seeds[-1] = True
    seeds[3, 5, 7] = seeds[20, 20, 2] = True
    starts = [tuple(p) for p in np.argwhere(seeds & m)]
    ref, _ = graph.MCP_Geometric(np.where(m, 1.0, np.inf), fully_connected=True).find_costs(starts)
    ref = np.where(m, ref, np.inf)
    got = np.asarray(geodesic_distance(m, seeds))
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-4)


def test_blocked_last_axis_sweeps_equal_dijkstra(monkeypatch):
    # blocks of 3 axis-0 slices for the sweeps along axis 2 (17 = 5 * 3 + 2: the last block overlaps)
    shape = (17, 11, 13)
    monkeypatch.setattr(jaxcba.morphology, "_BLOCK", 3 * shape[1] * shape[2])
    m = _blobs(20, 0.45, 4)[: shape[0], : shape[1], : shape[2]]
    seeds = np.zeros_like(m)
    seeds[:, :, -1] = True
    got = np.asarray(geodesic_distance(m, seeds))
    ref = _dijkstra(m, seeds)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_channels_have_tortuosity_one(axis):
    shape = (20, 22, 24)
    m = np.zeros(shape, bool)
    sl = [slice(8, 12)] * 3  # a 4 x 4 square channel along `axis`, plus a dead-end side branch
    sl[axis] = slice(None)
    m[tuple(sl)] = True
    br = [slice(8, 9)] * 3
    br[axis] = slice(5, 6)
    br[(axis + 1) % 3] = slice(0, 12)
    m[tuple(br)] = True
    t = geodesic_tortuosity(m, axis=axis)
    assert bool(t.percolates)
    assert float(t.mean) == pytest.approx(1.0, abs=1e-6)
    assert float(t.fraction_connected) == 1.0 and int(t.n_starts) == 16


def test_diagonal_zigzag_and_staircase_path_ratios():
    n = 33
    # face-diagonal band, two voxels wide so that it is face-connected (the percolation rule);
    # the 26-neighbourhood metric inside it steps diagonally: from (0, 0) 15 diagonal steps to
    # (15, 15), from (0, 1) 14 to (14, 15) and one face step: tau = (29 sqrt(2) + 1) / 30
    band = np.zeros((16, 3, 17), bool)
    for z in range(16):
        band[z, 1, z : z + 2] = True
    assert float(geodesic_tortuosity(band).mean) == pytest.approx((29 * np.sqrt(2) + 1) / 30, rel=1e-6)
    # a one-voxel face-diagonal zig-zag is edge-connected only: it does not percolate (6-connectivity)
    zig = np.zeros((n, 3, 18), bool)
    for z in range(n):
        k = z % 16
        zig[z, 1, k if (z // 16) % 2 == 0 else 16 - k] = True
    assert not bool(geodesic_tortuosity(zig).percolates)
    # space-diagonal staircase (i, i, i), (i, i, i + 1), (i, i + 1, i + 1), face-connected: to
    # the far face 15 corner steps from (0, 0, 0), 14 and an edge step from (0, 0, 1), 14 and a
    # face step from (0, 1, 1): tau = (43 sqrt(3) + sqrt(2) + 1) / 45
    diag = np.zeros((16, 17, 17), bool)
    i = np.arange(16)
    diag[i, i, i] = diag[i, i, i + 1] = diag[i, i + 1, i + 1] = True
    expected = (43 * np.sqrt(3) + np.sqrt(2) + 1) / 45
    assert float(geodesic_tortuosity(diag).mean) == pytest.approx(expected, rel=1e-6)
    line = np.zeros((16, 16, 16), bool)
    line[i, i, i] = True  # corner-connected only
    assert not bool(geodesic_tortuosity(line).percolates)
    # face-connected staircase (steps of s along z then s along x): exact ratio from Dijkstra on the graph
    for s in (1, 3):
        st = np.zeros((4 * s + 1, 1, 4 * s + 1), bool)
        z = x = 0
        st[0, 0, 0] = True
        while z < 4 * s:
            for _ in range(s):
                z += 1
                st[z, 0, x] = True
            for _ in range(s):
                if x < 4 * s:
                    x += 1
                    st[z, 0, x] = True
        starts = np.zeros_like(st)
        starts[-1] = True
        ref = _dijkstra(st, starts)[0]
        expected = ref[np.isfinite(ref)].mean() / (st.shape[0] - 1)
        assert 1.0 < expected < 2.0  # corners are cut diagonally: shorter than the Manhattan path
        assert float(geodesic_tortuosity(st).mean) == pytest.approx(expected, rel=1e-6)


def test_not_percolating_and_partial_connection():
    m = _blobs(24, 0.6, 3)
    m[12] = False
    t = geodesic_tortuosity(m, axis=0)
    assert not bool(t.percolates) and np.isnan(float(t.mean)) and int(t.n_starts) == 0
    # two channels, one blocked: only the open one's start voxels count
    c = np.zeros((10, 6, 6), bool)
    c[:, 1, 1] = True
    c[:, 4, 4] = True
    c[5, 4, 4] = False
    t = geodesic_tortuosity(c)
    assert float(t.mean) == pytest.approx(1.0) and int(t.n_starts) == 1 and float(t.fraction_connected) == 0.5


def test_vmap_equals_loop():
    batch = np.stack([_blobs(20, p, s) for s, p in enumerate((0.5, 0.6))])
    got = jax.vmap(lambda m: geodesic_tortuosity(m, axis=2))(batch)
    for k in range(len(batch)):
        one = geodesic_tortuosity(batch[k], axis=2)
        np.testing.assert_allclose(np.asarray(got.mean)[k], np.asarray(one.mean), rtol=1e-6)
        assert int(np.asarray(got.n_starts)[k]) == int(one.n_starts)


def test_bad_input():
    with pytest.raises(ValueError, match="3D"):
        geodesic_tortuosity(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="axis"):
        geodesic_tortuosity(np.ones((4, 4, 4), bool), axis=-1)
    with pytest.raises(ValueError, match="empty"):
        geodesic_tortuosity(np.zeros((4, 4, 4), bool))
    with pytest.raises(ValueError, match="at least 2"):
        geodesic_tortuosity(np.ones((1, 4, 4), bool))
