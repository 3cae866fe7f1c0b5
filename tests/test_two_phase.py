"""Two-phase (pore/solid) images (#17): calibrate fits the sub-model without graphite (lambda_x = 0,
stages 2 and 3) and says so; simulate, theory and the soft realizations take lambda_x = 0; an
image with too little graphite for stage 1 is refused with what was found and what is needed."""

import json
import warnings

import jax
import numpy as np
import pytest

import jaxcba
from jaxcba.calibrate import MIN_GRAPHITE_PARTICLES, calibrate, check_graphite_for_stage1
from jaxcba.cli import main

VOXEL = 40.0
TRUTH = jaxcba.CBAParams.paper().replace(lambda_x=0.0)


@pytest.fixture(scope="module")
def twin():
    return np.asarray(jaxcba.simulate(TRUTH, (64, 64, 64), VOXEL, jax.random.PRNGKey(11)))


@pytest.fixture(scope="module")
def fit(twin):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calibrate(twin, VOXEL, n_realizations=2)


def test_lambda_x_zero_everywhere():
    from jaxcba.model import draw_noise, simulate_soft
    from jaxcba.theory import volume_fractions

    vf = volume_fractions(TRUTH, VOXEL)
    assert float(vf.graphite) == 0.0
    assert float(vf.solid) == pytest.approx(float(vf.excursion) * (1 - float(vf.pores_removed)), rel=1e-6)
    vol = np.asarray(jaxcba.simulate(TRUTH, (24, 24, 24), VOXEL, jax.random.PRNGKey(0)))
    assert set(np.unique(vol)) <= {0, 1} and np.any(vol == 1)
    noise = draw_noise(jax.random.key(0), 16, 80.0, TRUTH, softness_max=0.5)
    graphite, cb = simulate_soft(TRUTH, noise, (16, 16, 16), 80.0, 0.5)
    assert float(np.max(graphite)) == 0.0 and 0.05 < float(np.mean(cb)) < 0.6


def test_two_phase_twin_is_fitted_without_graphite(twin, fit):
    assert fit.params.lambda_x == 0.0 and fit.stages == (2, 3) and fit.stage1 is None
    assert any("two-phase" in n for n in fit.notes) and "two-phase" in fit.table()
    from jaxcba.theory import volume_fractions

    vf = volume_fractions(fit.params, VOXEL)
    assert float(vf.solid) == pytest.approx(np.mean(twin == 1), rel=0.05)  # the image's solid fraction
    assert 1 / fit.params.eta == pytest.approx(1 / TRUTH.eta, rel=0.15)
    u = fit.uncertainty.delta
    assert u.get("V1").method == "fixed" and u.get("lambda_x").method == "fixed"
    for name in ("mu", "eta", "V2", "1/eta"):
        iv = u.get(name)
        assert iv.method == "delta" and iv.lo < iv.value < iv.hi, name
    for name in ("theta", "lambda_y", "1/theta"):  # stage 3's: no interval unless it converged
        iv = u.get(name)
        if fit.stage3.converged:
            assert iv.method == "delta" and iv.lo < iv.value < iv.hi, name
        else:
            assert iv.method == "unavailable" and "did not converge" in iv.note, name


def test_two_phase_cli_and_the_params_in_simulate_and_theory(twin, tmp_path, capsys):
    vol = tmp_path / "twin.npy"
    np.save(vol, twin[:48, :48, :48])
    out = tmp_path / "p.json"
    rc = main(["calibrate", str(vol), "--voxel-nm", "40", "--realizations", "1", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc in (0, 1) and "two-phase" in text and "95 % interval" in text
    data = json.loads(out.read_text())
    assert data["lambda_x"] == 0.0 and data["uncertainty"]["delta"]["parameters"]["lambda_x"]["method"] == "fixed"
    assert main(["theory", "--params", str(out)]) == 0
    assert "graphite (V1)" in capsys.readouterr().out
    sim = tmp_path / "sim.npy"
    assert main(["simulate", "--params", str(out), "--shape", "24", "--voxel-nm", "40", "--out", str(sim),
                 "--no-progress"]) == 0
    assert not np.any(np.load(sim) == 2)


def test_too_little_graphite_is_refused_with_what_was_found(twin, capsys, tmp_path):
    vol = twin.copy()
    vol[30:34, 30:34, 30:34] = 2  # one small particle
    with pytest.raises(ValueError, match=r"too little graphite.*64 voxels.*1 particle.*at least "
                       + str(MIN_GRAPHITE_PARTICLES)):
        check_graphite_for_stage1(vol)
    with pytest.raises(ValueError, match="too little graphite"):
        calibrate(vol, VOXEL)
    path = tmp_path / "little.npy"
    np.save(path, vol)
    assert main(["calibrate", str(path), "--voxel-nm", "40", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "too little graphite" in err and len(err.strip().splitlines()) == 1
    check_graphite_for_stage1(twin)  # no graphite at all: the two-phase path, not refused


def test_stage1_alone_on_a_two_phase_image_is_refused(twin):
    with pytest.raises(ValueError, match="has none"):
        calibrate(twin, VOXEL, stages=(1,))
