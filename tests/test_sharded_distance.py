"""The distributed EDT, CPSD and r_max of jaxcba.sharded on 1, 2 and 4 host devices.

As in tests/test_sharded.py, the multi-device checks run in one subprocess with
``--xla_force_host_platform_device_count=4`` (this file run as a script), which prints its
measurements as JSON; they are judged here against the single-device functions and scipy
computed in that subprocess: squared distances bit for bit, CPSD curves to 1e-6 (they are
integer counts over the same float32 division, so in fact equal), r_max exactly. The
in-process tests (one device) compare the sharded CPSD with a brute-force opening by scipy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_on_host_devices

DEVICES = (1, 2, 4)


def _blobs(shape, seed, sigma=2.0):
    """A smooth random phase of ``shape``: Gaussian-filtered noise above its mean (about half the voxels)."""
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma) > 0


def _worker() -> dict:  # runs in the subprocess
    import jax
    import jax.numpy as jnp
    from scipy import ndimage as ndi

    from jaxcba import sharded as S
    from jaxcba.descriptors import distance as DD
    from jaxcba.descriptors import pore_size as PS
    from jaxcba.model import simulate
    from jaxcba.model.params import CBAParams
    from jaxcba.sharded import _descriptors as SD
    from jaxcba.sharded import _distance as SDd

    import time

    out: dict = {"devices": len(jax.devices()), "edt": [], "cpsd": [], "errors": {}, "seconds": {}}
    t0 = time.perf_counter()

    def lap(name):
        nonlocal t0
        out["seconds"][name] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()

    lab = np.asarray(simulate(CBAParams.paper(), (64, 48, 40), 40.0, 0))
    sparse = np.ones((32, 40, 36), bool)  # two voxels off the mask: distances up to ~40 (windows 16, 32, 39)
    sparse[3, 5, 7] = sparse[30, 2, 33] = False
    vols = {
        "pore": lab == 0,
        "blobs": _blobs((44, 33, 31), 1),  # odd y and x (the y-rows padded for the all_to_all), 11 planes a slab on 4
        "sparse": sparse,
        "full": np.ones((8, 6, 5), bool),  # nothing off the mask: +inf everywhere
    }
    # --- the distance transform (the one-device path has no all_to_all: only the realization and
    # the tiny full mask take it)
    edt_devices = {"pore": DEVICES, "blobs": (2, 4), "sparse": (4,), "full": DEVICES}
    for name, m in vols.items():
        ref = np.asarray(DD.edt_squared(jnp.asarray(m)))
        ref3 = np.asarray(DD.edt_squared(jnp.asarray(m), 3))
        sp = None if name == "full" else ndi.distance_transform_edt(m) ** 2
        limit = max(m.shape) - 1
        for n in edt_devices[name]:
            got = S.edt_squared(m, mesh=n)
            g = np.asarray(got)
            out["edt"].append({
                "name": name, "shape": m.shape, "n": n, "equal": bool(np.array_equal(g, ref)),
                "inf": int(np.isinf(g).sum()), "max": float(np.max(np.where(np.isfinite(g), g, 0))),
                "scipy_diff": None if sp is None else float(np.abs(g - np.rint(sp)).max()),
                "window3_equal": bool(np.array_equal(np.asarray(S.edt_squared(m, 3, mesh=n)), ref3)),
                "edt_equal": bool(np.array_equal(np.asarray(S.edt(m, mesh=n)), np.asarray(DD.edt(jnp.asarray(m))))),
                "sites_equal": bool(np.array_equal(np.asarray(S.squared_distance_to(~m, mesh=n)), ref)),
                "z_sharded": got.sharding.spec == jax.sharding.PartitionSpec("z") or n == 1,
                "shards": sorted({s.data.shape for s in got.addressable_shards}),
                "largest": S.largest_distance(m, mesh=n), "largest_ref": PS._largest_dt(m, limit),
                "largest_scipy": None if sp is None else float(np.sqrt(np.rint(sp).max())),
            })

    lap("edt")
    # --- CPSD and r_max: (name, mask, voxel_nm, radii or None, device counts)
    cases = [
        ("solid", lab > 0, 40.0, None, DEVICES),
        ("pore", lab == 0, 40.0, (1.0, 2.0, 3.0, 4.5, 6.0), (4,)),
        ("blobs", vols["blobs"], 10.0, None, (2, 4)),
    ]
    for name, m, vnm, radii, devices in cases:
        ref = PS.cpsd(m, vnm, radii)
        for n in devices:
            sh = S.shard_volume(m, n)
            got = S.cpsd(sh, vnm, radii)  # a z-sharded array: its own mesh
            out["cpsd"].append({
                "name": name, "n": n, "R": int(ref.r_nm.shape[0]),
                "r_equal": bool(np.array_equal(np.asarray(got.r_nm), np.asarray(ref.r_nm))),
                "fraction": np.asarray(got.fraction).tolist(), "fraction_ref": np.asarray(ref.fraction).tolist(),
                "r_max": float(got.r_max_nm), "r_max_ref": float(ref.r_max_nm), "voxel_nm": vnm,
                "grid_equal": bool(np.array_equal(S.default_radii_vox(sh), PS.default_radii_vox(m))),
            })
    lap("cpsd")
    # the opening in sub-slabs of 4 planes (11 planes a slab on 4 devices: the last sub-slab partial)
    m = vols["blobs"]
    radii = tuple(PS.default_radii_vox(m))
    sh = S.shard_volume(m, 4)
    counts = SD._host_sum(SD._opening_program(sh, radii, S.make_mesh(4), slab_planes=4))
    frac = counts.astype(np.float32) / np.float32(m.sum())
    out["subslab_diff"] = float(np.abs(frac - np.asarray(PS.cpsd(m, 1.0, radii).fraction)).max())

    lap("subslab")
    # --- bad input: a ValueError before any program runs
    calls = {"n": 0}

    def counted(f):
        def g(*a, **k):
            calls["n"] += 1
            return f(*a, **k)
        return g

    SD._opening_program = counted(SD._opening_program)
    SD._counts_program = counted(SD._counts_program)
    SDd._distance_program = counted(SDd._distance_program)
    SDd._max_distance_program = counted(SDd._max_distance_program)

    def error(f):
        before = calls["n"]
        try:
            f()
        except ValueError as e:
            return {"message": str(e), "programs_run": calls["n"] - before}
        return None

    ball = np.zeros((8, 24, 24), bool)
    zz, yy, xx = np.ogrid[:8, :24, :24]
    ball |= (zz - 3.5) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 < 30  # radius ~5.5 in a window of 8 planes
    out["errors"] = {
        "edt_divide": error(lambda: S.edt_squared(np.ones((30, 8, 8), bool), mesh=4)),
        "edt_window": error(lambda: S.edt_squared(np.ones((8, 8, 8), bool), -1, mesh=4)),
        "edt_not_3d": error(lambda: S.edt_squared(np.ones((8, 8), bool), mesh=4)),
        "cpsd_divide": error(lambda: S.cpsd(np.ones((30, 8, 8), bool), mesh=4)),
        "cpsd_halo": error(lambda: S.cpsd(ball, 1.0, (1.0, 2.0, 3.0, 4.0), mesh=4)),  # halo 3 > 2 planes a slab
        "cpsd_radii": error(lambda: S.cpsd(ball, 1.0, (2.0, 1.0), mesh=2)),
        "cpsd_voxel": error(lambda: S.cpsd(ball, 0.0, (1.0,), mesh=2)),
        "cpsd_empty": error(lambda: S.cpsd(np.zeros((8, 8, 8), bool), 1.0, (1.0,), mesh=2)),
        "cpsd_halo_default": error(lambda: S.cpsd(ball, 1.0, mesh=4)),  # found after the largest distance
    }
    out["ball_ok_on_2"] = float(S.cpsd(ball, 1.0, (1.0, 2.0, 3.0, 4.0), mesh=2).fraction[-1])
    out["ball_ref"] = float(PS.cpsd(ball, 1.0, (1.0, 2.0, 3.0, 4.0)).fraction[-1])
    lap("errors")
    return out


@pytest.fixture(scope="module")
def run():
    return run_on_host_devices(__file__)


def test_four_host_devices(run):
    assert run["devices"] == 4


def test_edt_bit_identical_to_single_device_and_to_scipy(run):
    rows = run["edt"]
    assert {(r["name"], r["n"]) for r in rows} == {(k, n) for k, ns in (("pore", DEVICES), ("blobs", (2, 4)),
                                                                        ("sparse", (4,)), ("full", DEVICES)) for n in ns}
    for r in rows:
        assert r["equal"] and r["window3_equal"] and r["edt_equal"] and r["sites_equal"], r
        assert r["z_sharded"], r
        nz, ny, nx = r["shape"]
        assert r["shards"] == [[nz // r["n"], ny, nx]], r
        if r["name"] == "full":
            assert r["inf"] == nz * ny * nx  # no voxel off the mask is within reach
            assert r["largest"] == r["largest_ref"] == max(r["shape"]) - 1
        else:
            assert r["inf"] == 0 and r["scipy_diff"] == 0.0, r  # exact integers
            assert r["largest"] == r["largest_ref"] == pytest.approx(r["largest_scipy"], abs=1e-6), r
    # the sparse volume's largest distance needs the windows beyond the first (16)
    assert min(r["largest"] for r in rows if r["name"] == "sparse") > 32
    assert min(r["max"] for r in rows if r["name"] == "pore") >= 9  # distances beyond the window 3


def test_cpsd_and_r_max_equal_single_device(run):
    rows = run["cpsd"]
    assert {(r["name"], r["n"]) for r in rows} == {("solid", 1), ("solid", 2), ("solid", 4), ("pore", 4),
                                                   ("blobs", 2), ("blobs", 4)}
    for r in rows:
        assert r["r_equal"] and r["grid_equal"], r
        assert r["R"] >= 5, r
        f, f_ref = np.asarray(r["fraction"]), np.asarray(r["fraction_ref"])
        assert np.abs(f - f_ref).max() <= 1e-6, r
        assert f_ref[0] == 1.0 and f_ref[-1] < 0.5, r  # a real curve: r_max inside the grid
        assert r["r_max"] == r["r_max_ref"] and r["r_max"] > r["voxel_nm"], r
    assert run["subslab_diff"] <= 1e-6


def test_bad_input_is_a_clear_error_before_any_work(run):
    e = run["errors"]
    for k, v in e.items():
        assert v is not None, k
        if k != "cpsd_halo_default":
            assert v["programs_run"] == 0, (k, v)
    assert "must divide the z axis" in e["edt_divide"]["message"] and "30" in e["edt_divide"]["message"]
    assert "window = -1" in e["edt_window"]["message"]
    assert "3D" in e["edt_not_3d"]["message"]
    assert "must divide the z axis" in e["cpsd_divide"]["message"]
    msg = e["cpsd_halo"]["message"]
    assert "2 z-planes thick" in msg and "halo of 3 planes" in msg and "largest ball" in msg, msg
    assert "increasing" in e["cpsd_radii"]["message"]
    assert "voxel_nm" in e["cpsd_voxel"]["message"]
    assert "empty" in e["cpsd_empty"]["message"]
    assert "thinner than the halo" in e["cpsd_halo_default"]["message"]
    # the same radii on 2 devices (4 planes a slab) are fine and equal the single device
    assert run["ball_ok_on_2"] == run["ball_ref"] and run["ball_ref"] > 0


# ----------------------------------------------------------------- in process, one device


def _brute_cpsd(m, radii):
    """Opening by open balls (Eq. 26) by scipy: centres {dt >= r}, dilated by {|k|^2 < r^2}."""
    from scipy import ndimage as ndi

    dt2 = np.rint(ndi.distance_transform_edt(m) ** 2)
    out = []
    for r in radii:
        k = int(np.ceil(r))
        g = np.arange(-k, k + 1)
        ball = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) < r * r
        cover = ndi.binary_dilation(dt2 >= r * r, structure=ball)
        out.append((cover & m).sum() / m.sum())
    return np.asarray(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_cpsd_one_device_against_brute_force_opening(seed):
    from jaxcba import sharded as S

    m = _blobs((24, 21, 19), seed, sigma=2.5)
    radii = (1.0, 1.5, 2.0, 3.0, 4.0)
    got = S.cpsd(m, 1.0, radii, mesh=1)
    ref = _brute_cpsd(m, radii)
    assert ref[0] == 1.0 and ref[-1] < ref[1]  # the balls do not fit everywhere
    np.testing.assert_allclose(np.asarray(got.fraction), ref, atol=1e-6)


def test_edt_one_device_against_scipy():
    from scipy import ndimage as ndi

    from jaxcba import sharded as S

    m = _blobs((20, 17, 15), 2)
    ref = ndi.distance_transform_edt(m) ** 2
    assert np.abs(ref - np.rint(ref)).max() < 1e-9  # integers, up to the float64 sqrt and square
    assert np.array_equal(np.asarray(S.edt_squared(m, mesh=1)), np.rint(ref))


if __name__ == "__main__":
    print(json.dumps(_worker()))
