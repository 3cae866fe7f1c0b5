"""Distance transform, CPSD, intrusion, local thickness and constrictivity (paper Eq. 26, Section 3.3)."""

import jax
import numpy as np
import pytest
from _references import cpsd_scipy
from scipy import ndimage

from jaxcba.descriptors.distance import edt, edt_squared, squared_distance_to
from jaxcba.descriptors.pore_size import (
    constrictivity,
    cpsd,
    default_radii_vox,
    intrusion,
    local_thickness,
    radius_at_half,
)


def _blobs(n, porosity, seed, sigma=2.0):
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), sigma, mode="wrap")
    return f > np.quantile(f, 1 - porosity)


def _cylinder(n, radius, length, axis=0, centre=None):
    c = (n - 1) / 2 if centre is None else centre
    y, x = np.mgrid[:n, :n]
    disk = (y - c) ** 2 + (x - c) ** 2 < radius**2
    vol = np.broadcast_to(disk, (length, n, n))
    return np.ascontiguousarray(np.moveaxis(vol, 0, axis))


@pytest.mark.parametrize("seed,porosity", [(0, 0.5), (1, 0.3), (2, 0.8)])
def test_edt_exact_against_scipy(seed, porosity):
    m = _blobs(40, porosity, seed)
    ref = np.rint(ndimage.distance_transform_edt(m) ** 2)
    np.testing.assert_array_equal(np.asarray(edt_squared(m)), ref)
    np.testing.assert_allclose(np.asarray(edt(m)), np.sqrt(ref), rtol=1e-6)
    # a window W is exact wherever the distance is <= W and says "> W^2" elsewhere
    w = 2
    d2 = np.asarray(edt_squared(m, w))
    exact = ref <= w * w
    np.testing.assert_array_equal(d2[exact], ref[exact])
    assert np.all(d2[~exact] > w * w)


def test_distance_to_anisotropic_box_and_no_sites():
    sites = np.zeros((7, 20, 33), bool)
    sites[3, 5, 30] = True
    z, y, x = np.indices(sites.shape)
    np.testing.assert_array_equal(np.asarray(squared_distance_to(sites)), (z - 3) ** 2 + (y - 5) ** 2 + (x - 30) ** 2)
    assert np.all(np.isinf(np.asarray(squared_distance_to(np.zeros((4, 5, 6), bool)))))


@pytest.mark.parametrize("seed,porosity", [(0, 0.5), (3, 0.35)])
def test_cpsd_equals_scipy_reference(seed, porosity):
    m = _blobs(48, porosity, seed)
    radii = default_radii_vox(m)
    assert radii[0] == 1.0 and np.isclose(radii[-1], np.floor(2 * ndimage.distance_transform_edt(m).max()) / 2)
    res = cpsd(m, 20.0, radii_vox=radii)
    np.testing.assert_allclose(np.asarray(res.fraction), cpsd_scipy(m, radii), atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.r_nm), radii * 20.0, rtol=1e-6)
    f = np.asarray(res.fraction)
    i = np.flatnonzero(f >= 0.5)[-1]
    expect = radii[i] + (f[i] - 0.5) / (f[i] - f[i + 1]) * (radii[i + 1] - radii[i])
    assert float(res.r_max_nm) == pytest.approx(20.0 * expect, rel=1e-5)


def test_calibrate_measure_uses_this_cpsd():
    from jaxcba.calibrate._measure import pore_cpsd

    m = _blobs(32, 0.5, 4)
    labels = np.where(m, 0, 1).astype(np.uint8)
    radii = np.arange(1.0, 5.01, 0.5)
    np.testing.assert_allclose(pore_cpsd(labels, 20.0, radii), cpsd_scipy(m, radii), atol=1e-6)


def _intrusion_scipy(mask, radii, axis=0):
    """Host reference: erosion, 6-connected components touching the inlet face (scipy.ndimage.label), dilation."""
    depth = ndimage.distance_transform_edt(mask)
    out = []
    for r in radii:
        lab, _ = ndimage.label(depth >= r)
        face = np.take(lab, 0, axis=axis)
        keep = np.isin(lab, np.unique(face[face > 0]))
        out.append(np.count_nonzero(ndimage.distance_transform_edt(~keep) < r) / mask.sum() if keep.any() else 0.0)
    return np.array(out)


@pytest.mark.parametrize("seed,axis", [(0, 0), (1, 2)])
def test_intrusion_equals_scipy_reference(seed, axis):
    m = _blobs(40, 0.55, seed)
    radii = default_radii_vox(m)
    res = intrusion(m, 1.0, radii_vox=radii, axis=axis)
    np.testing.assert_allclose(np.asarray(res.fraction), _intrusion_scipy(m, radii, axis), atol=1e-6)


def test_radius_at_half_edge_cases():
    r = np.array([1.0, 2.0, 3.0])
    assert float(radius_at_half(r, np.array([1.0, 0.6, 0.4]))) == pytest.approx(2.5)
    assert float(radius_at_half(r, np.array([0.4, 0.3, 0.1]))) == 0.0
    assert float(radius_at_half(r, np.array([1.0, 0.9, 0.8]))) == 3.0


def test_straight_cylinder_has_constrictivity_one():
    R = 6.0
    m = _cylinder(24, R, 40, axis=0)
    con = constrictivity(m, 10.0, axis=0)
    assert bool(con.percolates)
    assert float(con.beta) == pytest.approx(1.0, abs=1e-6)
    assert float(con.r_min_nm) == pytest.approx(float(con.r_max_nm))
    assert 10.0 * (R - 1) <= float(con.r_max_nm) <= 10.0 * R  # discrete disk: CPSD drops between R - 1 and R


def test_bottleneck_radius_gives_r_min_and_beta_below_one():
    R, rb = 8.0, 3.0
    m = _cylinder(22, R, 64, axis=0)
    neck = _cylinder(22, rb, 4, axis=0)
    m[12:16] = neck  # short constriction near the inlet: 75 % of the channel lies behind it
    con = constrictivity(m, 1.0, axis=0)
    assert bool(con.percolates)
    # a ball of radius <= rb passes the neck (its centre line has dt = rb), one of rb + 0.5 does not
    assert rb - 0.5 <= float(con.r_min_nm) <= rb + 0.5  # within the 0.5-voxel radius grid
    assert R - 1.5 <= float(con.r_max_nm) <= R
    beta = float(con.beta)
    assert beta == pytest.approx((float(con.r_min_nm) / float(con.r_max_nm)) ** 2, rel=1e-5)
    assert ((rb - 0.5) / R) ** 2 < beta < ((rb + 0.5) / (R - 1.5)) ** 2
    # intrusion never covers more than the opening
    assert np.all(np.asarray(con.intrusion) <= np.asarray(con.cpsd) + 1e-7)


def test_not_percolating_phase_reports_nan_r_min():
    m = _blobs(32, 0.6, 5)
    m[16] = False  # a wall across the axis
    con = constrictivity(m, 1.0, axis=0)
    assert not bool(con.percolates)
    assert np.isnan(float(con.r_min_nm)) and np.isnan(float(con.beta))
    assert np.isfinite(float(con.r_max_nm))


def test_vmap_equals_loop():
    batch = np.stack([_blobs(20, p, s) for s, p in enumerate((0.45, 0.7))])
    radii = (1.0, 2.0, 3.0, 4.0)
    fn = jax.jit(jax.vmap(lambda m: constrictivity(m, 20.0, radii_vox=radii, axis=1)))
    got = fn(batch)
    for k in range(len(batch)):
        one = constrictivity(batch[k], 20.0, radii_vox=radii, axis=1)
        for field in ("cpsd", "intrusion", "r_max_nm", "r_min_nm", "beta", "percolates"):
            np.testing.assert_array_equal(np.asarray(getattr(got, field))[k], np.asarray(getattr(one, field)))
    c = jax.vmap(lambda m: cpsd(m, 20.0, radii_vox=radii))(batch)
    np.testing.assert_array_equal(np.asarray(c.fraction), np.asarray(got.cpsd))


def test_bad_input():
    m = _blobs(16, 0.5, 0)
    with pytest.raises(ValueError, match="3D"):
        cpsd(m[0])
    with pytest.raises(ValueError, match="empty"):
        cpsd(np.zeros((8, 8, 8), bool))
    with pytest.raises(ValueError, match="radii_vox"):
        cpsd(m, radii_vox=[1.0, -2.0])
    with pytest.raises(ValueError, match="increasing"):
        cpsd(m, radii_vox=[2.0, 1.0])
    with pytest.raises(ValueError, match="axis"):
        constrictivity(m, axis=3)


@pytest.mark.peers
def test_cpsd_and_local_thickness_against_porespy():
    ps = pytest.importorskip("porespy")
    m = _blobs(48, 0.6, 7)
    radii = default_radii_vox(m)
    lt = np.asarray(local_thickness(m, radii_vox=radii))
    lt_ps = ps.filters.local_thickness(m)  # integer ball radii from the distance transform
    whole = radii[radii == np.floor(radii)]
    ours = np.asarray(cpsd(m, 1.0, radii_vox=radii).fraction)[radii == np.floor(radii)]
    theirs = np.array([np.mean(lt_ps[m] >= r) for r in whole])
    np.testing.assert_allclose(ours, theirs, atol=0.01)
    # voxel-wise local thickness: identical on >= 98 % of the phase at integer radii
    agree = np.mean(np.floor(lt[m]) == np.floor(lt_ps[m]))
    assert agree >= 0.98, agree


@pytest.mark.peers
def test_intrusion_against_porespy_porosimetry():
    ps = pytest.importorskip("porespy")
    m = _blobs(40, 0.6, 8)
    inlets = np.zeros_like(m)
    inlets[0] = True
    po = ps.filters.porosimetry(m, inlets=inlets)
    radii = default_radii_vox(m)
    whole = radii[radii == np.floor(radii)]
    ours = np.asarray(intrusion(m, 1.0, radii_vox=radii, axis=0).fraction)[radii == np.floor(radii)]
    theirs = np.array([np.mean(po[m] >= r) for r in whole])
    np.testing.assert_allclose(ours, theirs, atol=0.02)


def _local_thickness_scipy(mask, radii):
    """Host reference: the largest grid radius whose opening (scipy EDTs, as ``cpsd_scipy``) covers the voxel."""
    depth = ndimage.distance_transform_edt(mask)
    lt = np.zeros(mask.shape)
    for r in radii:
        centres = depth >= r
        if centres.any():
            lt[ndimage.distance_transform_edt(~centres) < r] = r
    return lt


@pytest.mark.parametrize("slab_planes", [5, 13])
def test_z_slabs_give_the_same_curves(slab_planes):
    """Slab-by-slab evaluation (halo of the largest ball; last slab partly outside) = scipy references."""
    from jaxcba.descriptors.pore_size import _curves

    m = _blobs(36, 0.55, 11)[:, :30, :33]  # anisotropic box, 36 planes: slabs do not divide it
    radii = tuple(default_radii_vox(m))
    op, intr, _, perc = _curves(m, radii, axis=0, opening=True, intrude=True, slab_planes=slab_planes)
    np.testing.assert_allclose(np.asarray(op), cpsd_scipy(m, radii), atol=1e-6)
    np.testing.assert_allclose(np.asarray(intr), _intrusion_scipy(m, radii, 0), atol=1e-6)
    lab, _ = ndimage.label(m)
    assert bool(perc) == bool(np.intersect1d(lab[0][lab[0] > 0], lab[-1][lab[-1] > 0]).size)
    _, intr1, _, _ = _curves(m, radii, axis=1, opening=False, intrude=True, slab_planes=slab_planes)
    np.testing.assert_allclose(np.asarray(intr1), _intrusion_scipy(m, radii, 1), atol=1e-6)
    lt = np.asarray(_curves(m, radii, thickness=True, slab_planes=slab_planes)[2])
    np.testing.assert_array_equal(lt, _local_thickness_scipy(m, radii).astype(np.float32))


def test_local_thickness_equals_scipy_reference():
    m = _blobs(40, 0.6, 12)
    radii = default_radii_vox(m)
    np.testing.assert_array_equal(np.asarray(local_thickness(m, radii_vox=radii)), _local_thickness_scipy(m, radii).astype(np.float32))


def test_default_radii_of_wide_phases():
    """Largest distance-to-boundary beyond the first windows, and a phase filling the box (scipy)."""
    m = np.ones((24, 40, 40), bool)
    m[:, 0, 0] = False  # the farthest voxel is (x, y) = (39, 39) from the line (0, 0)
    dt = ndimage.distance_transform_edt(m).max()
    assert np.isclose(default_radii_vox(m)[-1], np.floor(2 * dt) / 2)
    assert default_radii_vox(np.ones((6, 9, 12), bool))[-1] == 11.0  # no wall at all: the box's largest extent - 1


def test_many_radii_use_wide_levels():
    """More than 254 radii (16-bit radius levels): still the scipy reference."""
    m = _blobs(20, 0.6, 13)
    radii = 1.0 + 0.02 * np.arange(300)
    np.testing.assert_allclose(np.asarray(cpsd(m, 1.0, radii_vox=radii).fraction), cpsd_scipy(m, radii), atol=1e-6)


@pytest.mark.parametrize("nz, slab_planes", [(49, 16), (37, 10), (48, 16)])
def test_largest_distance_slabs_do_not_reach_past_the_volume(nz, slab_planes):
    """The largest squared distance by z-slabs equals scipy's EDT maximum, also where the slabs do
    not divide the volume (49 = 4 x 13 - 3: the last slab used to cover 3 planes past the end,
    counted as phase, and gave 9 instead of 1 for layers of one plane)."""
    from jaxcba.descriptors import pore_size

    layers = np.ones((nz, 12, 12), bool)
    layers[::3] = False
    layers[-1] = False
    rng = np.random.default_rng(nz)
    blobs = ndimage.gaussian_filter(rng.standard_normal((nz, 12, 12)), 1.5) > 0
    for m in (layers, blobs):
        ref = int(round(ndimage.distance_transform_edt(m).max() ** 2))
        assert int(pore_size._max_dt2(m, 11, 12**2, slab_planes=slab_planes)) == min(ref, 12**2)
