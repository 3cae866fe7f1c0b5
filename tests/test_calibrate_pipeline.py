"""The staged pipeline, the joint mode and `jaxcba calibrate` on a small synthetic twin (jaxcba.simulate,
64^3 at 40 nm). One module-scoped joint run (stages 1-3, then a few joint steps in a 24^3 soft
window) serves the staged and the joint assertions."""

import json
import warnings
import math

import jax
import numpy as np
import pytest

import jaxcba
from jaxcba.calibrate import CalibrationWarning, Joint, calibrate, parse_stages
from jaxcba.cli import main

VOXEL = 40.0
TRUTH = jaxcba.CBAParams.paper().replace(lambda_x=1.5e-8, alpha1=80.0, alpha2=400.0, gamma=2.0)


@pytest.fixture(scope="module")
def twin():
    return np.asarray(jaxcba.simulate(TRUTH, (64, 64, 64), VOXEL, jax.random.PRNGKey(7)))


# learning rate 0.01: from the staged start (soft loss ~0.0065) steps of 0.05 in the log-parameters overshoot
JOINT = dict(soft_voxel_nm=40.0, window=24, n_noise=1, max_steps=4, learning_rate=0.01, n_hard=1, hard_window=None)


@pytest.fixture(scope="module")
def joint(twin):
    with pytest.warns(CalibrationWarning):  # 4 joint steps (and 1 stage-3 realization) do not converge
        return calibrate(twin, VOXEL, "joint", n_realizations=1, joint_options=JOINT)


@pytest.fixture(scope="module")
def staged(joint):
    return joint


@pytest.mark.slow
def test_staged_pipeline_recovers_fractions(twin, staged):
    from jaxcba.theory import volume_fractions

    assert staged.stages == "joint" and staged.stage3 is not None
    got = volume_fractions(staged.joint.initial, VOXEL)  # the staged parameters
    n = twin.size
    # model fractions vs the image's (the twin's own window; 5 % relative as in the issue, 8 % for cb
    # whose split into V2 and V3 is weakly identified at 64^3)
    assert float(got.graphite) == pytest.approx(np.count_nonzero(twin == 2) / n, rel=0.05)
    assert float(got.solid) == pytest.approx(np.count_nonzero(twin) / n, rel=0.05)
    assert float(got.cb) == pytest.approx(np.count_nonzero(twin == 1) / n, rel=0.08)
    assert staged.joint.initial.eta == pytest.approx(TRUTH.eta, rel=0.15)
    rows = {r.name: r for r in staged.rows}
    assert "graphite V_V" in rows and "pore CPSD L1 distance" in rows
    assert set(staged.seconds_by_stage) >= {"stage1", "stage2", "stage3", "joint", "total"}
    json.dumps(staged.to_dict())  # JSON-serialisable
    assert "parameters:" in staged.table()


@pytest.mark.slow
def test_joint_mode(joint):
    j = joint.joint
    assert joint.params.to_dict() == pytest.approx(j.params.to_dict())
    # fixed noise: a deterministic loss; Adam's best iterate lowers it, and its recomputed value is the reported one
    hist = j.optim.loss_history
    assert len(hist) == j.optim.n_steps + 1 and np.all(np.isfinite(hist)) and hist[0] == pytest.approx(j.loss_initial)
    assert j.loss < j.loss_initial and j.loss == pytest.approx(j.optim.loss, rel=1e-5)
    assert np.isfinite(j.optim.grad_norm) and j.optim.n_grad == j.optim.n_fev
    # bias correction: at the start the model's descriptors are the image pipeline's on hard realizations
    assert j.model_initial["fractions"].sum() == pytest.approx(1.0, abs=1e-5)
    for g in ("fractions", "sv", "c2", "gran"):
        assert np.all(np.isfinite(j.model[g])) and j.model[g].shape == j.image[g].shape
    # every parameter moved (the gradient reaches all eight), none left the noise's validity range
    x = np.asarray(j.optim.x)
    assert x.shape == (8,) and np.all(x != 0)
    assert j.params.lambda_x <= 1.5 * j.initial.lambda_x and j.params.theta <= 1.5 * j.initial.theta
    ho = j.held_out
    assert len(ho.names) == 5 and np.all(np.isfinite(ho.image)) and np.all(np.isfinite(ho.joint))
    # the errors are |model - image| / |image| of the listed values, their means over the finite ones
    np.testing.assert_allclose(ho.err_joint, np.abs(np.subtract(ho.joint, ho.image)) / np.abs(ho.image), rtol=1e-12)
    ok = np.isfinite(ho.err_staged) & np.isfinite(ho.err_joint)
    assert ho.mean_err_joint == pytest.approx(np.mean(np.asarray(ho.err_joint)[ok]), rel=1e-12)
    assert any("held out" in r.name for r in joint.rows)
    assert not joint.converged and any("joint mode did not converge" in w for w in joint.warnings)
    d = json.loads(json.dumps(joint.to_dict()))
    assert d["stages"] == "joint" and d["joint"]["held_out"]["names"][0].startswith("pore r_max")


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
    with pytest.raises(ValueError, match="this image has none"):
        calibrate(np.where(twin == 2, 1, twin).astype(np.uint8), VOXEL, [1])
    with pytest.raises(ValueError, match="labels must be"):
        calibrate(np.full((16, 16, 16), 7, np.uint8), VOXEL)
    with pytest.raises(ValueError, match="not finite"):
        calibrate(twin, VOXEL, [1], graphite_targets=[0.1, float("nan"), 1e-7, 1e-9])
    with pytest.raises(ValueError, match="subset"):
        parse_stages("1,4")
    with pytest.raises(ValueError, match="gradient method"):
        calibrate(twin, VOXEL, "joint", method="nelder-mead")
    with pytest.raises(ValueError, match="voxel_nm"):
        calibrate(twin, -1.0)


def test_cli_joint_options(twin, tmp_path, monkeypatch):
    import jaxcba.calibrate as pipeline

    seen = {}

    def fake(vol, voxel_nm, stages, method, **kw):
        seen.update(stages=stages, method=method, **kw)
        raise ValueError("stop here")

    monkeypatch.setattr(pipeline, "calibrate", fake)
    vol = tmp_path / "twin.npy"
    np.save(vol, twin)
    argv = ["calibrate", str(vol), "--voxel-nm", "40", "--stages", "joint", "--joint-steps", "7", "--joint-window",
            "32", "--joint-noise", "3", "--joint-voxel-nm", "80", "--joint-method", "lbfgs", "--no-progress"]
    assert main(argv) == 2
    j = seen["joint"]
    assert seen["stages"] == "joint" and isinstance(j, Joint)
    assert (j.window, j.n_noise, j.soft_voxel_nm, j.solver.method, j.solver.max_steps) == (32, 3, 80.0, "lbfgs", 7)
    with pytest.raises(SystemExit) as exc:  # a usage error: argparse exits
        main(argv[:6] + ["--joint-steps", "0"])
    assert exc.value.code == 2


def _no_constant(name):
    raise AssertionError(f"bare {name} in JSON output")


def test_cli(twin, tmp_path, capsys):
    vol = tmp_path / "twin.npy"
    np.save(vol, twin)
    out = tmp_path / "params.json"
    rep = tmp_path / "report.json"
    rc = main(["calibrate", str(vol), "--voxel-nm", "40", "--stages", "1,2", "--out", str(out), "--json",
               "--no-progress", "--initial", "paper", "--report", str(rep)])
    report = json.loads(capsys.readouterr().out, parse_constant=_no_constant)  # strict JSON (#18)
    assert json.loads(rep.read_text(), parse_constant=_no_constant) == report
    json.loads(out.read_text(), parse_constant=_no_constant)
    p = jaxcba.CBAParams.from_json(out)
    assert p.mu == pytest.approx(report["params"]["mu"]) and math.isfinite(p.eta)
    # this twin's graphite is ~1 voxel thick at 40 nm: stage 1 may end on a flat ridge towards
    # the gamma box edge, which must be reported (exit 1), never returned as a converged fit
    assert rc == (0 if report["converged"] else 1)
    assert report["converged"] or any("stage 1" in w for w in report["warnings"])
    assert report["stage2"]["converged"] is True
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


@pytest.mark.slow
def test_graphite_two_point_row_separates_true_from_wrong_sizes():
    """Held-out stage 1 check: 80^3 at 40 nm, 3 seeds; the true model's graphite correlation
    misfit measured 0.018-0.026, a model with both half-axes halved (same V) 0.12."""
    import jax

    from jaxcba import simulate
    from jaxcba.calibrate._pipeline import _graphite_two_point_row  # the held-out row of the table
    from jaxcba.model.params import CBAParams

    truth = CBAParams.paper().replace(lambda_x=4.0e-10, alpha1=160.0, alpha2=1600.0, gamma=2.0)
    halved = truth.replace(alpha1=80.0, alpha2=800.0, lambda_x=3.2e-9)
    for seed in range(3):
        lab = np.asarray(simulate(truth, (80, 80, 80), 40.0, jax.random.PRNGKey(seed)))
        assert _graphite_two_point_row(lab, 40.0, truth).fitted < 0.05
        assert _graphite_two_point_row(lab, 40.0, halved).fitted > 0.08


@pytest.mark.slow
def test_stage3_profile_sets_mu_eta_and_can_be_switched_off(twin, joint):
    # default: stage 3 re-fits stage 2's (eta, V3) at its theta, and the staged mu, eta are that refit's
    ex = joint.stage3.excursion
    assert ex is not None and ex.theta == joint.stage3.theta
    assert joint.joint.initial.mu == pytest.approx(ex.mu) and joint.joint.initial.eta == pytest.approx(ex.eta)
    assert joint.stage3.v2 == ex.v2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        off = calibrate(twin, VOXEL, (2, 3), n_realizations=1, stage3_profile=False)
    assert off.stage3.excursion is None
    assert off.params.mu == pytest.approx(off.stage2.mu) and off.params.eta == pytest.approx(off.stage2.eta)
