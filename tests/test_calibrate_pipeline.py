"""The staged pipeline and `jaxcba calibrate` on a small synthetic twin (jaxcba.simulate, 64^3 at 40 nm)."""

import json
import math

import jax
import numpy as np
import pytest

import jaxcba
from jaxcba.calibrate.pipeline import CalibrationWarning, calibrate, parse_stages
from jaxcba.cli import main

VOXEL = 40.0
TRUTH = jaxcba.CBAParams.paper().replace(lambda_x=1.5e-8, alpha1=80.0, alpha2=400.0, gamma=2.0)


@pytest.fixture(scope="module")
def twin():
    return np.asarray(jaxcba.simulate(TRUTH, (64, 64, 64), VOXEL, jax.random.PRNGKey(7)))


@pytest.fixture(scope="module")
def staged(twin):
    return calibrate(twin, VOXEL, "1,2,3", n_realizations=1)


def test_staged_pipeline_recovers_fractions(twin, staged):
    from jaxcba.theory import volume_fractions

    assert staged.stages == (1, 2, 3)
    got = volume_fractions(staged.params, VOXEL)
    n = twin.size
    # model fractions vs the image's (the twin's own window; 5 % relative as in the issue, 8 % for cb
    # whose split into V2 and V3 is weakly identified at 64^3)
    assert float(got.graphite) == pytest.approx(np.count_nonzero(twin == 2) / n, rel=0.05)
    assert float(got.solid) == pytest.approx(np.count_nonzero(twin) / n, rel=0.05)
    assert float(got.cb) == pytest.approx(np.count_nonzero(twin == 1) / n, rel=0.08)
    assert staged.params.eta == pytest.approx(TRUTH.eta, rel=0.15)
    rows = {r.name: r for r in staged.rows}
    assert "graphite V_V" in rows and "pore CPSD L1 distance" in rows
    assert set(staged.seconds_by_stage) >= {"stage1", "stage2", "stage3", "total"}
    json.dumps(staged.to_dict())  # JSON-serialisable
    assert "parameters:" in staged.table()


def test_subset_of_stages_keeps_initial(twin):
    res = calibrate(twin, VOXEL, [2], initial=TRUTH)
    assert res.stage1 is None and res.stage3 is None
    assert res.params.lambda_x == TRUTH.lambda_x and res.params.theta == TRUTH.theta
    assert res.params.mu != TRUTH.mu


def test_non_converged_stage_is_flagged(twin):
    with pytest.warns(CalibrationWarning, match="stage 1 did not converge"):
        res = calibrate(twin, VOXEL, [1], stage1_starts=1, stage1_options={"max_steps": 2})  # 2 steps: no convergence
    assert not res.converged and "stage 1" in res.warnings[0] and "max_steps" in res.warnings[0]
    assert "converged: False" in res.table()


def test_bad_input(twin):
    with pytest.raises(ValueError, match="no graphite"):
        calibrate(np.where(twin == 2, 1, twin).astype(np.uint8), VOXEL, [1])
    with pytest.raises(ValueError, match="labels must be"):
        calibrate(np.full((16, 16, 16), 7, np.uint8), VOXEL)
    with pytest.raises(ValueError, match="not finite"):
        calibrate(twin, VOXEL, [1], graphite_targets=[0.1, float("nan"), 1e-7, 1e-9])
    with pytest.raises(ValueError, match="subset"):
        parse_stages("1,4")
    with pytest.raises(ValueError, match="joint"):
        calibrate(twin, VOXEL, "joint")
    with pytest.raises(ValueError, match="voxel_nm"):
        calibrate(twin, -1.0)


def test_cli(twin, tmp_path, capsys):
    vol = tmp_path / "twin.npy"
    np.save(vol, twin)
    out = tmp_path / "params.json"
    rc = main(["calibrate", str(vol), "--voxel-nm", "40", "--stages", "1,2", "--out", str(out), "--json",
               "--no-progress", "--initial", "paper"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    p = jaxcba.CBAParams.from_json(out)
    assert p.mu == pytest.approx(report["params"]["mu"]) and math.isfinite(p.eta)
    assert report["converged"] is True
    # table output
    assert main(["calibrate", str(vol), "--voxel-nm", "40", "--stages", "2", "--no-progress"]) == 0
    assert "C(h) rms misfit" in capsys.readouterr().out
    # bad input -> one line, exit 2
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((8, 8, 8), 3, np.uint8))
    for argv in (["calibrate", str(bad), "--voxel-nm", "40"],
                 ["calibrate", str(tmp_path / "missing.npy"), "--voxel-nm", "40"],
                 ["calibrate", str(vol), "--voxel-nm", "40", "--stages", "5"],
                 ["calibrate", str(vol), "--voxel-nm", "40", "--stages", "2", "--cutout", "0:0,0:8,0:8"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err
