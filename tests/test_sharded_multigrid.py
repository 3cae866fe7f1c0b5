"""The multigrid preconditioner of the sharded transport solver equals the single-device one.

As in tests/test_sharded.py, the measurements run in one subprocess with 4 forced host
devices (this file run as a script prints them as JSON) and are judged here against the
single-device code computed in that same subprocess:

* the V-cycle itself: ``z = M^-1 r`` of a random residual on a random positive field,
  sharded over 4 devices, against ``multigrid.v_cycle`` of the whole residual, to
  float32 rounding (1e-5 of max |z|), for hierarchies whose gathered level ``K`` is an
  intermediate one (two replicated levels) and the finest (odd slabs);
* the solve: M of the pore phase, the solid and the two-conductivity solid (graphite 1,
  carbon black + binder 0.01) of a realization (``K`` the coarsest level on 1 and 2
  devices, the one above it on 4), within 1e-5 relative of
  ``transport.effective_conductivity``, in the single-device number of CG iterations (+-2)
  on 1, 2 and 4 devices; Jacobi, kept as an option, needs more;
* bad input raises ValueError before the solver program runs.
"""

from __future__ import annotations

import json

import pytest
from helpers import run_on_host_devices

DEVICES = (1, 2, 4)
#: slabs of 48, 24 and 12 planes: the gathered level K is the coarsest on 1 and 2 devices, the
#: one above it on 4 (slabs of 3 planes there)
SOLVE_SHAPE = (48, 48, 40)


def _worker() -> dict:  # runs in the subprocess
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import PartitionSpec as P

    from jaxcba import sharded as S
    from jaxcba import transport as T
    from jaxcba.model import simulate
    from jaxcba.model.params import CBAParams
    from jaxcba.sharded import _mesh as M
    from jaxcba.sharded import _multigrid as SM
    from jaxcba.sharded import _transport as ST
    from jaxcba.transport import multigrid as mg
    from jaxcba.transport import stencil as sten

    out: dict = {"devices": len(jax.devices())}

    # --- the V-cycle as a linear map
    out["cycle"] = []
    rng = np.random.default_rng(0)
    for shape, devices in (((48, 40, 36), (4,)), ((36, 16, 16), (4,))):
        sigma = rng.uniform(0.01, 1.0, shape).astype(np.float32)
        r = rng.standard_normal(shape).astype(np.float32)
        h = mg.build(sten.from_conductivity(jnp.asarray(sigma)))
        z_ref = np.asarray(sten.interior(jax.jit(mg.v_cycle)(h, sten.pad(jnp.asarray(r)))))
        for n in devices:
            mesh = M.make_mesh(n)

            def local(s, rr, mesh=mesh):
                ax, k = M.axis_of(mesh), M.size_of(mesh)
                hier = SM.build(SM.local_stencil(s, ax, k, 2.0), shape, ax, k)
                return SM.v_cycle(hier, rr)

            f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("z"), P("z")), out_specs=P("z"), check_vma=False))
            z = np.asarray(f(M.put_z(sigma, mesh), M.put_z(r, mesh)))
            out["cycle"].append({"shape": shape, "n": n, "gather_level": SM.gather_level(shape, n),
                                 "levels": len(SM.level_shapes(shape)),
                                 "err": float(np.abs(z - z_ref).max() / np.abs(z_ref).max()),
                                 "sym": float(abs(np.vdot(r, z) - np.vdot(r, z_ref)) / abs(np.vdot(r, z_ref)))})

    # --- the solve: three phase fields of one realization
    lab = np.asarray(simulate(CBAParams.paper(), SOLVE_SHAPE, 80.0, 0))
    out["fractions"] = (np.bincount(lab.ravel(), minlength=3) / lab.size).tolist()
    fields = {"pore": {0: 1.0}, "solid": {1: 1.0, 2: 1.0}, "two": {2: 1.0, 1: 0.01}}
    out["solve"] = []
    refs = {}
    for phase, cond in fields.items():
        sig = np.zeros(lab.shape, np.float32)
        for k, v in cond.items():
            sig[lab == k] = v
        r0 = refs[phase] = T.effective_conductivity(jnp.asarray(sig), 0, rtol=1e-6)
        for n in DEVICES:
            r = S.effective_conductivity(sig, mesh=n, rtol=1e-6)
            out["solve"].append({"phase": phase, "n": n, "M": float(r.m_factor), "M_ref": float(r0.m_factor),
                                 "tau": float(r.tau_eff), "tau_ref": float(r0.tau_eff),
                                 "it": int(r.iterations), "it_ref": int(r0.iterations),
                                 "converged": bool(r.converged), "converged_ref": bool(r0.converged)})
    # the labelled entry point (what `jaxcba tortuosity --devices N` runs; the same field) and Jacobi
    r, r0 = S.label_conductivity(lab, fields["two"], mesh=4, rtol=1e-6), refs["two"]
    out["label"] = {"M": float(r.m_factor), "M_ref": float(r0.m_factor), "it": int(r.iterations),
                    "it_ref": int(r0.iterations), "converged": bool(r.converged)}
    r = S.effective_conductivity((lab == 0).astype(np.float32), mesh=4, rtol=1e-6, preconditioner="jacobi")
    out["jacobi"] = {"M": float(r.m_factor), "it": int(r.iterations), "converged": bool(r.converged)}
    # the options object of the single-device solver, as there (the same settings as the keywords)
    r = S.effective_conductivity((lab == 0).astype(np.float32), mesh=4,
                                 options=T.SolverOptions(rtol=1e-6, preconditioner="jacobi"))
    out["jacobi_options"] = {"M": float(r.m_factor), "it": int(r.iterations)}

    # --- bad input: a ValueError before the solver program runs
    calls = []
    real = ST._solve_program
    ST._solve_program = lambda *a, **k: calls.append(1)

    def error(f):
        try:
            f()
        except ValueError as e:
            return str(e)
        return None

    out["errors"] = {
        "divide": error(lambda: S.effective_conductivity(np.ones((30, 8, 8), np.float32), mesh=4)),
        # fewer planes than devices (the solver's halo is one plane, so any split that divides
        # nz leaves every slab thick enough; odd slabs are gathered, not refused)
        "fewer_planes": error(lambda: S.effective_conductivity(np.ones((2, 8, 8), np.float32), mesh=4)),
        "label_divide": error(lambda: S.label_conductivity(np.zeros((18, 8, 8), np.uint8), {0: 1.0}, mesh=4)),
        "preconditioner": error(lambda: S.effective_conductivity(np.ones((8, 8, 8), np.float32), mesh=4,
                                                                 preconditioner="none")),
        "initial_guess": error(lambda: S.effective_conductivity(np.ones((8, 8, 8), np.float32), mesh=4,
                                                                initial_guess="zero")),
        "unknown_option": error(lambda: S.effective_conductivity(np.ones((8, 8, 8), np.float32), mesh=4, tol=1e-3)),
    }
    out["program_calls"] = len(calls)
    ST._solve_program = real
    return out


@pytest.fixture(scope="module")
def run():
    return run_on_host_devices(__file__)


@pytest.mark.slow  # one subprocess of ~1.5 min CPU, mostly XLA compiling the sharded solver 4 times
def test_four_host_devices(run):
    assert run["devices"] == 4


@pytest.mark.slow  # one subprocess of ~1.5 min CPU, mostly XLA compiling the sharded solver 4 times
def test_v_cycle_equals_single_device(run):
    rows = run["cycle"]
    assert len(rows) == 2
    # the cases cover a gather at an intermediate level (two replicated levels) and at the finest
    ks = {(tuple(r["shape"]), r["n"]): (r["gather_level"], r["levels"]) for r in rows}
    assert ks[((48, 40, 36), 4)] == (2, 4) and ks[((36, 16, 16), 4)][0] == 0
    for row in rows:
        assert row["err"] <= 1e-5, row
        assert row["sym"] <= 1e-5, row


@pytest.mark.slow  # one subprocess of ~1.5 min CPU, mostly XLA compiling the sharded solver 4 times
def test_solve_equals_single_device_in_the_same_iterations(run):
    assert min(run["fractions"]) > 0.05, run["fractions"]  # pores, carbon black and graphite all present
    rows = run["solve"]
    assert len(rows) == 9
    for row in rows:
        assert row["converged"] and row["converged_ref"], row
        assert row["M"] > 0
        assert abs(row["M"] / row["M_ref"] - 1) <= 1e-5, row
        assert abs(row["tau"] / row["tau_ref"] - 1) <= 1e-5, row
        assert abs(row["it"] - row["it_ref"]) <= 2, row
    for phase in ("pore", "solid", "two"):
        its = [r["it"] for r in rows if r["phase"] == phase]
        assert max(its) - min(its) <= 2, (phase, its)  # independent of the device count


@pytest.mark.slow  # one subprocess of ~1.5 min CPU, mostly XLA compiling the sharded solver 4 times
def test_label_path_and_jacobi(run):
    lab, jac = run["label"], run["jacobi"]
    assert lab["converged"] and abs(lab["M"] / lab["M_ref"] - 1) <= 1e-5, lab
    assert abs(lab["it"] - lab["it_ref"]) <= 2, lab
    pore = next(r for r in run["solve"] if r["phase"] == "pore" and r["n"] == 4)
    assert jac["converged"] and abs(jac["M"] / pore["M_ref"] - 1) <= 1e-5, jac
    assert jac["it"] > 3 * pore["it"], (jac, pore)  # what the V-cycle saves
    assert run["jacobi_options"] == {"M": jac["M"], "it": jac["it"]}  # options= is the keywords' solve


@pytest.mark.slow  # one subprocess of ~1.5 min CPU, mostly XLA compiling the sharded solver 4 times
def test_bad_input_before_any_work(run):
    e = run["errors"]
    assert "must divide the z axis" in e["divide"] and "30" in e["divide"], e
    assert "must divide the z axis" in e["fewer_planes"] and "(2 voxels)" in e["fewer_planes"], e
    assert "must divide the z axis" in e["label_divide"] and "18" in e["label_divide"], e
    assert "preconditioner must be one of" in e["preconditioner"] and "'none'" in e["preconditioner"], e
    assert "initial_guess must be 'linear'" in e["initial_guess"], e
    assert "unknown solver option(s) 'tol'" in e["unknown_option"], e
    assert run["program_calls"] == 0


def test_gather_level_rule():
    from jaxcba.sharded._multigrid import gather_level, level_shapes

    assert level_shapes((64, 48, 40)) == [(64, 48, 40), (32, 24, 20), (16, 12, 10), (8, 6, 5)]
    assert gather_level((64, 48, 40), 4) == 3  # slabs of 16, 8, 4 planes, then the coarsest
    assert [gather_level(SOLVE_SHAPE, n) for n in DEVICES] == [3, 3, 2]
    assert gather_level((48, 48, 48), 4) == 2  # slabs of 12, 6, then 3 (odd): gathered
    assert gather_level((40, 8, 8), 8) == 0  # 5 planes per slab: gathered at once
    assert gather_level((8, 8, 8), 2) == 0  # 512 voxels: one level, the coarsest


if __name__ == "__main__":
    print(json.dumps(_worker()))
