"""Connectivity against scipy.ndimage.label on random and hand-made structures."""

import jax
import numpy as np
import pytest
from scipy import ndimage

import jaxcba.morphology
from jaxcba.morphology import percolating_cluster, reachable_from_face, reconstruct

STRUCT = {6: ndimage.generate_binary_structure(3, 1), 26: ndimage.generate_binary_structure(3, 3)}


def reference_reach(mask, seeds, connectivity):
    lab, _ = ndimage.label(mask, structure=STRUCT[connectivity])
    ids = np.unique(lab[seeds & mask])
    ids = ids[ids > 0]
    return np.isin(lab, ids)


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reach_from_face_matches_scipy_label(seed, connectivity):
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.normal(size=(24, 20, 22)), 1.2) > 0.05  # near-critical, tortuous
    seeds = np.zeros_like(mask)
    seeds[0] = True
    got = np.asarray(reachable_from_face(mask, axis=0, connectivity=connectivity))
    np.testing.assert_array_equal(got, reference_reach(mask, seeds, connectivity))


def test_percolating_cluster_and_flag():
    rng = np.random.default_rng(5)
    mask = ndimage.gaussian_filter(rng.normal(size=(20, 20, 20)), 1.0) > 0.0
    for axis in range(3):
        cluster, perc = percolating_cluster(mask, axis=axis)
        lab, _ = ndimage.label(mask, structure=STRUCT[6])
        first = np.unique(np.take(lab, 0, axis=axis))
        last = np.unique(np.take(lab, -1, axis=axis))
        both = np.intersect1d(first[first > 0], last[last > 0])
        np.testing.assert_array_equal(np.asarray(cluster), np.isin(lab, both))
        assert bool(perc) == (both.size > 0)


@pytest.mark.parametrize("connectivity", [6, 26])
def test_blocked_last_axis_sweeps_and_percolation_match_scipy(connectivity, monkeypatch):
    # blocks of 4 axis-0 slices for the sweeps along axis 2 (19 = 4 * 4 + 3: the last block overlaps)
    monkeypatch.setattr(jaxcba.morphology, "_BLOCK", 4 * 15 * 17)
    rng = np.random.default_rng(11)
    mask = ndimage.gaussian_filter(rng.normal(size=(19, 15, 17)), 1.1) > 0.1
    seeds = np.zeros_like(mask)
    seeds[:, :, 0] = True
    got = np.asarray(reconstruct(mask, seeds, connectivity))
    np.testing.assert_array_equal(got, reference_reach(mask, seeds, connectivity))
    lab, _ = ndimage.label(mask, structure=STRUCT[connectivity])
    both = np.intersect1d(np.unique(lab[:, :, 0]), np.unique(lab[:, :, -1]))
    cluster, perc = percolating_cluster(mask, axis=2, connectivity=connectivity)
    np.testing.assert_array_equal(np.asarray(cluster), np.isin(lab, both[both > 0]))
    assert bool(perc) == bool((both > 0).any())


def test_corner_and_edge_connected_paths():
    # a space diagonal (corner neighbours only) and a zig-zag in the (z, x) plane (edge neighbours only)
    diag = np.zeros((9, 9, 9), bool)
    diag[np.arange(9), np.arange(9), np.arange(9)] = True
    zig = np.zeros((12, 3, 5), bool)
    for z in range(12):
        zig[z, 1, [0, 1, 2, 3, 4, 3, 2, 1][z % 8]] = True
    for m in (diag, diag[::-1], zig, np.ascontiguousarray(np.swapaxes(zig, 0, 2))):
        seeds = np.zeros_like(m)
        seeds[tuple(np.argwhere(m)[0])] = True
        assert np.array_equal(np.asarray(reconstruct(m, seeds, 26)), m)
        assert np.asarray(reconstruct(m, seeds, 6)).sum() == 1


def test_spiral_path_needs_many_turns():
    # A serpentine channel: 6 turns; reconstruction must follow all of them.
    m = np.zeros((3, 15, 15), bool)
    for k, row in enumerate(range(1, 14, 2)):
        m[1, row, 1:14] = True
        m[1, row + 1 if row + 1 < 14 else row, 13 if k % 2 == 0 else 1] = True
    seeds = np.zeros_like(m)
    seeds[1, 1, 1] = True
    got = np.asarray(reconstruct(m, seeds))
    np.testing.assert_array_equal(got, reference_reach(m, seeds, 6))
    assert got[1, 13, 7]


def test_blocked_layer_does_not_percolate_and_vmap():
    m = np.ones((4, 8, 8, 8), bool)
    m[1, 4] = False  # sample 1 has a blocking layer normal to z
    cluster, perc = jax.vmap(lambda a: percolating_cluster(a, axis=0))(m)
    assert np.asarray(perc).tolist() == [True, False, True, True]
    assert not np.asarray(cluster[1]).any()


def test_bad_input():
    with pytest.raises(ValueError, match="axis"):
        reachable_from_face(np.ones((3, 3, 3), bool), axis=3)
    with pytest.raises(ValueError, match="3D"):
        reachable_from_face(np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="connectivity"):
        reconstruct(np.ones((3, 3, 3), bool), np.ones((3, 3, 3), bool), connectivity=18)
