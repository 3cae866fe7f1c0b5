"""Stage 1 by the graphite contact distribution: measurement vs an independent scipy
computation and vs Steiner's formula on realizations, recovery on twins, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxcba import simulate
from jaxcba.calibrate import Contact, Eq17, calibrate, contact_distribution, fit_graphite_contact, stage1_strategy
from jaxcba.calibrate._stage1_contact import model_contact
from jaxcba.model.params import CBAParams

SMALL = CBAParams.paper().replace(lambda_x=4.0e-10, alpha1=160.0, alpha2=1600.0, gamma=2.0)
GRAPHITE_ONLY = SMALL.replace(mu=12.0, lambda_y=1e-30)


def _scipy_contact(labels, r_values):
    """Reference: scipy EDT of the non-graphite phase, minus half a voxel, minus sampling."""
    g = labels == 2
    d = ndimage.distance_transform_edt(~g) - 0.5
    idx = np.indices(g.shape)
    face = np.min([np.minimum(i, n - 1 - i) for i, n in zip(idx, g.shape)], axis=0)
    out = []
    for r in r_values:
        region = (face >= r) & ~g
        out.append(-np.log(np.count_nonzero(d[region] > r) / np.count_nonzero(region)))
    return np.array(out)


def test_contact_distribution_matches_scipy_reference():
    lab = np.asarray(simulate(SMALL, (64, 64, 64), 40.0, jax.random.PRNGKey(3)))
    cd = contact_distribution(lab, 40.0)
    r_vox = np.round(cd.r_nm / 40.0).astype(int)
    assert r_vox[0] == 3 and np.array_equal(contact_distribution(lab, 40.0, r_min_vox=2).r_nm[1:], cd.r_nm)
    assert np.all(np.diff(r_vox) == 1) and r_vox[-1] <= 64 // 8
    np.testing.assert_allclose(cd.y, _scipy_contact(lab, r_vox), rtol=1e-12)


@pytest.mark.slow
def test_contact_distribution_follows_steiner_formula():
    """Mean over 3 seeds of 96^3 at 40 nm (graphite only) vs lambda (S r + K r^2 + 4 pi r^3 / 3):
    measured +6 % to +7 % at r = 3..5 voxels and +3 % to +5 % beyond (the half-voxel boundary
    convention); tolerance 12 % for r >= 3 voxels."""
    ys = []
    for seed in range(3):
        cd = contact_distribution(np.asarray(simulate(GRAPHITE_ONLY, (96,) * 3, 40.0, jax.random.PRNGKey(seed))), 40.0)
        ys.append(cd.y[:8])
    values = jnp.asarray([SMALL.lambda_x, SMALL.alpha1, SMALL.alpha2, SMALL.gamma])
    theory = np.asarray(model_contact(values, jnp.asarray(cd.r_nm[:8]), 40.0))
    rel = np.mean(ys, 0) / theory - 1
    assert np.all(np.abs(rel[1:]) < 0.12), rel


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2])
def test_contact_fit_recovers_half_axes(seed):
    """128^3 twins at 40 nm: measured mean half-axes within 14 % (seeds 0-2); tolerance 20 %."""
    lab = np.asarray(simulate(SMALL, (128,) * 3, 40.0, jax.random.PRNGKey(seed)))
    res = fit_graphite_contact(lab, 40.0)
    q = res.params
    assert res.converged and res.descriptor == "contact"
    assert q["alpha1"] <= q["alpha2"]
    assert abs(q["alpha1"] / q["gamma"] / 80.0 - 1) < 0.2
    assert abs(q["alpha2"] / q["gamma"] / 800.0 - 1) < 0.2
    assert abs(res.fitted["V"] / res.targets.V - 1) < 0.01


def test_bad_input():
    empty = np.zeros((32, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="no graphite"):
        fit_graphite_contact(empty, 40.0)
    tiny = np.zeros((12, 12, 12), np.uint8)
    tiny[5:7, 5:7, 5:7] = 2
    with pytest.raises(ValueError, match="too small"):
        contact_distribution(tiny, 40.0)
    with pytest.raises(ValueError, match="voxel_nm"):
        contact_distribution(tiny, -40.0)
    with pytest.raises(ValueError, match="voxel_nm"):
        fit_graphite_contact(tiny, float("nan"))
    with pytest.raises(ValueError, match="stage1_descriptor"):
        stage1_strategy("minkowski", 40.0)
    assert stage1_strategy("auto", 40.0) == Contact()
    assert stage1_strategy("auto", 20.0) == Eq17()
    assert stage1_strategy("auto", 40.0, 48) == Eq17()  # too few radii in a 48^3 window
    assert stage1_strategy("auto", 40.0, starts=2) == Contact(starts=2)
    with pytest.raises(ValueError, match="cannot use given graphite_targets"):  # the keyword form
        calibrate(tiny, 40.0, [1], stage1_descriptor="contact", graphite_targets=[0.1, 1e-3, 1e-7, 1e-10])
    with pytest.raises(ValueError, match="starts"):
        Contact(starts=0)
