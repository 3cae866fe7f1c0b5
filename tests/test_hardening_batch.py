"""Batch measures on degenerate volumes (issue #18): r_max is never the radius grid's cap.

When the CPSD does not drop below 0.5 on the batch's static radius grid (a phase filling the
window, one whose pores outgrow the grid, or an empty phase), ``r_max_nm``, ``r_min_nm`` and
``beta`` are NaN in the measure values and ``null`` in ``results.jsonl``, with
``radii_bounded: false`` beside them - as ``describe`` reports it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

VOXEL_NM = 80.0
N = 16  # batch radius grid: 1, 1.5, ..., min(N / 4, 1500 nm / 80 nm) = 4 voxels


def _slab():
    """Pore at x < 3, solid beyond (16^3). Pore: dt = 3, 2, 1 at x = 0, 1, 2 (the border is no
    wall), so its CPSD is 1 up to r = 3 and 0 at 3.5 -> r_max = 3.25 voxels = 260 nm exactly; every
    centre touches the inlet face, so r_min = r_max, beta = 1. Solid: 13 voxels thick, dt up to
    12 > 4, so its CPSD is 1 on the whole grid -> not bounded."""
    lab = np.ones((N, N, N), np.uint8)
    lab[:, :, :3] = 0
    return lab


def _batch():
    return np.stack([np.zeros((N,) * 3, np.uint8), np.full((N,) * 3, 1, np.uint8), _slab()])


@pytest.fixture(scope="module")
def values():
    from jaxcba.batch.measures import measure_batch

    return {m: measure_batch(m, _batch(), VOXEL_NM) for m in ("cpsd", "constrictivity")}


def test_all_pore_and_all_solid_report_no_radius(values):
    for measure in ("cpsd", "constrictivity"):
        for job in (0, 1):  # all-pore, all-solid: one phase fills the window, the other is empty
            for phase in ("pore", "solid"):
                v = values[measure][phase]
                assert not bool(v["radii_bounded"][job]), (measure, job, phase)
                assert np.isnan(v["r_max_nm"][job]), (measure, job, phase, v["r_max_nm"][job])
    for job, filled in ((0, "pore"), (1, "solid")):
        c = values["constrictivity"][filled]
        assert bool(c["percolates"][job])  # it percolates; only its radii are unbounded
        assert np.isnan(c["r_min_nm"][job]) and np.isnan(c["beta"][job])
        assert np.all(values["cpsd"][filled]["fraction"][job] == 1.0)


def test_bounded_phase_keeps_its_closed_form_radius(values):
    for measure in ("cpsd", "constrictivity"):
        pore, solid = values[measure]["pore"], values[measure]["solid"]
        assert bool(pore["radii_bounded"][2]) and pore["r_max_nm"][2] == pytest.approx(3.25 * VOXEL_NM, rel=1e-6)
        assert not bool(solid["radii_bounded"][2]) and np.isnan(solid["r_max_nm"][2])
    c = values["constrictivity"]["pore"]
    assert c["r_min_nm"][2] == pytest.approx(3.25 * VOXEL_NM, rel=1e-6)
    assert c["beta"][2] == pytest.approx(1.0, rel=1e-6)


def test_rows_of_a_run_hold_null_and_the_flag(tmp_path, monkeypatch):
    """End to end through run_batch (its simulation replaced by the three volumes): the rows
    are strict JSON, the unbounded radii null with radii_bounded false."""
    import jaxcba.model
    from jaxcba.batch import run_batch

    vols = iter(_batch())
    monkeypatch.setattr(jaxcba.model, "simulate", lambda *a, **k: next(vols))
    spec = {"params": "paper", "seeds": [0, 1, 2], "shape": N, "voxel_nm": VOXEL_NM,
            "measure": ["cpsd", "constrictivity"], "per_device": 3}
    run_batch(spec, tmp_path / "runs", progress=False, force=True)
    lines = (tmp_path / "runs" / "results.jsonl").read_text().splitlines()
    rows = {r["seed"]: r for r in (json.loads(x, parse_constant=lambda c: pytest.fail(f"bare {c}")) for x in lines)}
    assert sorted(rows) == [0, 1, 2]
    for seed, filled in ((0, "pore"), (1, "solid")):
        for phase in ("pore", "solid"):
            c = rows[seed]["constrictivity"][phase]
            assert (c["r_max_nm"], c["r_min_nm"], c["beta"], c["radii_bounded"]) == (None, None, None, False)
            assert (rows[seed]["cpsd"][phase]["r_max_nm"], rows[seed]["cpsd"][phase]["radii_bounded"]) == (None, False)
        assert rows[seed]["constrictivity"][filled]["percolates"] is True
    pore = rows[2]["constrictivity"]["pore"]
    assert pore["radii_bounded"] is True and pore["r_max_nm"] == pytest.approx(260.0, rel=1e-6)
    assert rows[2]["cpsd"]["solid"]["r_max_nm"] is None


def test_distributed_in_one_process_is_a_no_op(tmp_path, monkeypatch):
    """``run_batch(distributed=True)`` in a job of one process (no SLURM, Open MPI or
    JAX_NUM_PROCESSES) runs as without it: jax.distributed.initialize() is not called (it would
    fail without a coordinator)."""
    import jax

    from jaxcba._distributed import initialize_distributed
    from jaxcba.batch import run_batch

    for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES"):
        monkeypatch.delenv(k, raising=False)
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: called.append(1))
    assert initialize_distributed({}) == (False, 1, None)
    spec = {"params": "paper", "shape": [16, 16, 16], "voxel_nm": 80.0, "seeds": [0], "measure": ["fractions"]}
    s = run_batch(spec, tmp_path / "runs", progress=False, distributed=True, force=True)
    assert called == [] and (tmp_path / "runs" / "results.jsonl").read_text().count("\n") == 1, s
    env = {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1", "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"}
    monkeypatch.setattr(jax.distributed, "initialize", lambda **k: called.append(k))
    assert initialize_distributed(env) == (True, 2, "JAX_NUM_PROCESSES")
    assert called == [{"coordinator_address": "127.0.0.1:1", "num_processes": 2, "process_id": 1}]
