"""jaxcba.sharded: one volume split along z over 1, 2 and 4 host devices equals the single-device results.

JAX fixes its device count at import and this pytest process has one CPU device, so the
checks run in one subprocess with ``--xla_force_host_platform_device_count=4`` (this file,
run as a script) that prints its measurements as JSON; the tests below judge them against
the single-device functions computed in that same subprocess: labels bit for bit, counts
exactly, curves to 1e-6, M to 1e-5 relative.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_on_host_devices

DEVICES = (1, 2, 4)


def _worker() -> dict:  # runs in the subprocess
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxcba import descriptors as D
    from jaxcba import sharded as S
    from jaxcba import transport as T
    from jaxcba.model import gaussian_field as GF
    from jaxcba.model import simulate
    from jaxcba.model.params import CBAParams
    from jaxcba.sharded import _fft

    import time

    out: dict = {"devices": len(jax.devices()), "seconds": {}}
    t0 = time.perf_counter()

    def lap(name):
        nonlocal t0
        out["seconds"][name] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()

    # small noise slabs and FFT chunks (before anything is traced), so that the slab-owner
    # logic and the overlapping last slabs of the single-device field are exercised at 64^3
    GF._SLAB_ELEMS = 1 << 14
    _fft._SLAB_ELEMS = 1 << 14

    # --- the excursion set and the field: even and odd nx, padded x-columns for 4 devices
    key = jax.random.key(7)
    out["field"] = []
    for shape, devices in (((64, 48, 50), DEVICES), ((32, 40, 45), (4,))):
        ref = np.asarray(GF.excursion_labels(key, shape, 0.11, 0.3))
        xi = GF.white_spectrum(key, shape)
        zref = np.asarray(jax.jit(lambda x, e: GF.field_and_gradient(x, shape, e))(xi, 0.11))
        for n in devices:
            lab = S.excursion_labels(key, shape, 0.11, 0.3, mesh=n)
            # the real field once per shape (labels bit-identical say the rest)
            z = np.asarray(S.gaussian_field(key, shape, 0.11, mesh=n)) if n == 4 else zref
            out["field"].append({"shape": shape, "n": n, "mismatch": int((np.asarray(lab) != ref).sum()),
                                 "max_dz": float(np.abs(z - zref).max()), "z_std": float(zref.std()),
                                 "shards": sorted({s.data.shape for s in lab.addressable_shards})})

    lap("field")
    # --- whole realizations: graphite + balls + field
    p = CBAParams.paper()
    out["simulate"] = []
    vols = {}
    for shape, vnm, seed, devices in (((64, 64, 64), 20.0, 0, DEVICES), ((96, 64, 48), 40.0, 2, (4,))):
        ref = np.asarray(simulate(p, shape, vnm, seed))
        vols[(shape, seed)] = ref
        for n in devices:
            v = S.simulate(p, shape, vnm, seed, mesh=n)
            out["simulate"].append({"shape": shape, "seed": seed, "n": n, "mismatch": int((np.asarray(v) != ref).sum()),
                                    "fractions": (np.bincount(ref.ravel(), minlength=3) / ref.size).tolist(),
                                    "z_sharded": v.sharding.spec == jax.sharding.PartitionSpec("z"), "n_shards": len(v.addressable_shards)})

    lap("simulate")
    # --- descriptors of the solid (labels 1, 2) of a realization
    lab = vols[((64, 64, 64), 0)]
    mask = lab > 0
    h1 = np.asarray(D.configuration_histogram(jnp.asarray(mask)))
    i1 = D.intrinsic_densities(jnp.asarray(mask), 20.0)
    t1 = D.two_point_coverage(jnp.asarray(mask), 20.0, 16)
    out["descriptors"] = []
    for n in DEVICES:
        sh = S.shard_volume(mask, n)
        i = S.intrinsic_densities(sh, 20.0)
        t = S.two_point_coverage(sh, 20.0, 16)
        out["descriptors"].append({
            "n": n,
            "counts": S.phase_counts(lab, mesh=n).tolist(), "counts_ref": np.bincount(lab.ravel(), minlength=3).tolist(),
            "hist_equal": bool(np.array_equal(np.asarray(S.configuration_histogram(sh)), h1)),
            "densities": {k: [float(getattr(i, k)), float(getattr(i1, k))] for k in ("V_V", "S_V", "M_V", "chi_V")},
            "C_diff": float(np.abs(np.asarray(t.C) - np.asarray(t1.C)).max()),
            "C_axes_diff": float(np.abs(np.asarray(t.C_axes) - np.asarray(t1.C_axes)).max()),
            "h_equal": bool(np.array_equal(np.asarray(t.h_nm), np.asarray(t1.h_nm))),
        })

    lap("descriptors")
    # --- transport: pores of a graphite-free window, and its carbon-binder phase
    q = dataclasses.replace(p, lambda_x=0.0, mu=0.2)
    lab2 = np.asarray(simulate(q, (64, 48, 40), 20.0, 0))
    out["transport"] = []
    for phase, code, devices in (("pore", 0, DEVICES), ("cb", 1, (4,))):
        sig = (lab2 == code).astype(np.float32)
        r0 = T.effective_conductivity(jnp.asarray(sig), 0, rtol=1e-6)
        for n in devices:
            r = S.effective_conductivity(sig, mesh=n, rtol=1e-6)
            out["transport"].append({"phase": phase, "n": n, "M": float(r.m_factor), "M_ref": float(r0.m_factor),
                                     "tau": float(r.tau_eff), "tau_ref": float(r0.tau_eff), "eps": float(r.eps),
                                     "eps_ref": float(r0.eps), "converged": bool(r.converged),
                                     "percolates": bool(r.percolates), "iterations": int(r.iterations)})
    r = S.label_conductivity(lab2, {0: 2.0, 1: 0.0}, mesh=4, rtol=1e-6)
    out["label_M"] = float(r.m_factor)

    lap("transport")
    # --- blocked window: a z-plane of insulator, nothing percolates
    blocked = np.ones((16, 8, 8), np.float32)
    blocked[9] = 0
    r = S.effective_conductivity(blocked, mesh=4)
    out["blocked"] = {"M": float(r.m_factor), "percolates": bool(r.percolates)}

    # --- bad input: errors before any work
    def error(f):
        try:
            f()
        except ValueError as e:
            return str(e)
        return None

    out["errors"] = {
        "simulate_divide": error(lambda: S.simulate(p, (66, 32, 32), 20.0, 0, mesh=4)),
        "field_divide": error(lambda: S.excursion_labels(key, (30, 16, 16), 0.1, 0.0, mesh=4)),
        "minkowski_halo": error(lambda: S.intrinsic_densities(np.ones((4, 8, 8), bool), mesh=4)),
        "transport_divide": error(lambda: S.effective_conductivity(np.ones((10, 8, 8), np.float32), mesh=4)),
        "transport_axis": error(lambda: S.effective_conductivity(np.ones((8, 8, 8), np.float32), "x", mesh=2)),
        "mesh_2d": error(lambda: S.phase_counts(lab, mesh=jax.make_mesh((2, 2), ("a", "b")))),
        "too_many": error(lambda: S.make_mesh(5)),
    }
    lap("rest")
    return out


@pytest.fixture(scope="module")
def run():
    return run_on_host_devices(__file__)


def test_four_host_devices(run):
    assert run["devices"] == 4


def test_field_labels_bit_identical_and_field_to_float_tolerance(run):
    assert len(run["field"]) == 4
    for row in run["field"]:
        assert row["mismatch"] == 0, row
        assert row["max_dz"] < 2e-5 * max(row["z_std"], 1.0), row  # float32 FFT rounding, not another field
        nz, ny, nx = row["shape"]
        assert row["shards"] == [[nz // row["n"], ny, nx]], row


def test_realization_bit_identical(run):
    rows = run["simulate"]
    assert len(rows) == 4
    for row in rows:
        assert row["mismatch"] == 0, row
        assert row["n_shards"] == row["n"]
        if row["n"] > 1:
            assert row["z_sharded"]
    # the windows hold all three phases (else the test would not test the grains)
    assert all(min(r["fractions"]) > 1e-3 for r in rows if r["seed"] in (0, 2)), rows


def test_descriptors_equal_single_device(run):
    for row in run["descriptors"]:
        assert row["counts"] == row["counts_ref"]
        assert row["hist_equal"]
        for k, (got, ref) in row["densities"].items():
            assert got == pytest.approx(ref, rel=1e-6, abs=0), (row["n"], k)
        assert row["C_diff"] <= 1e-6 and row["C_axes_diff"] <= 1e-6, row
        assert row["h_equal"]


def test_transport_equal_single_device(run):
    rows = run["transport"]
    assert {r["phase"] for r in rows} == {"pore", "cb"}
    for row in rows:
        assert row["converged"] and row["percolates"], row
        assert row["M"] > 0
        assert abs(row["M"] / row["M_ref"] - 1) <= 1e-5, row
        assert abs(row["tau"] / row["tau_ref"] - 1) <= 1e-5, row
        assert row["eps"] == pytest.approx(row["eps_ref"], rel=1e-6)
    pore = [r for r in rows if r["phase"] == "pore"][0]
    # M does not depend on the conductivity's scale: {0: 2, 1: 0} gives the pore M
    assert run["label_M"] == pytest.approx(pore["M_ref"], rel=1e-5)
    assert run["blocked"] == {"M": 0.0, "percolates": False}


def test_bad_input_is_a_clear_error(run):
    e = run["errors"]
    assert "must divide the z axis" in e["simulate_divide"] and "66" in e["simulate_divide"]
    assert "must divide the z axis" in e["field_divide"] and "30" in e["field_divide"]
    assert "thinner than the halo" in e["minkowski_halo"]
    assert "must divide the z axis" in e["transport_divide"]
    assert "axis must be 'z'" in e["transport_axis"]
    assert "1-D" in e["mesh_2d"]
    assert "devices must be in [1, 4]" in e["too_many"]


def test_split_check_in_process():
    from jaxcba.sharded._mesh import check_split

    assert check_split(64, 4, 2) == 16
    with pytest.raises(ValueError, match="must divide"):
        check_split(63, 4)
    with pytest.raises(ValueError, match="thinner than the halo"):
        check_split(8, 8, 2)


if __name__ == "__main__":
    print(json.dumps(_worker()))
