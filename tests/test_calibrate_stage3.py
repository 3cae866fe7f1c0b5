"""Stage 3 (Eqs. 24-26): theta and lambda_Y of the large-pore balls on small synthetic twins (jaxcba.simulate).

In small windows (64^3 at 40 nm, mean ball radius 2.4-3.6 voxels) the image's own CPSD is
dominated by its few largest balls (exponential radii put most pore-ball volume in a handful of
balls), so theta is identifiable only to a factor ~1.5 here; the tolerance below is a factor 1.6
(measured with 3 realizations over the default wide scan: 0.0105 -> 0.0098, 0.007 -> 0.0078 on
seed 11; with 1 realization the 64^3 objective is too flat and noisy, its minimum fell on the
scan's large-ball edge). The issue's 15 % on 200^3 twins is run by experiments/benchmarks/bench_calibrate.py.
"""

import functools
import math

import jax
import numpy as np
import pytest

import jaxcba
from _references import cpsd_scipy

from jaxcba.calibrate._measure import l1_distance, pore_cpsd
from jaxcba.calibrate.stage3_pores import fit_pores, lambda_y_for
from jaxcba.theory import ball_fraction, volume_fractions

VOXEL = 40.0
# paper's Xi2/Xi3 with small graphite (mean half-axes 40 / 200 nm) so that 64^3 windows are representative
SMALL_GRAPHITE = dict(lambda_x=1.5e-8, alpha1=80.0, alpha2=400.0, gamma=2.0)


@functools.lru_cache(maxsize=None)
def _twin(theta, seed, n=64):
    p = jaxcba.CBAParams.paper().replace(**SMALL_GRAPHITE, theta=theta)
    p = p.replace(lambda_y=float(-math.log1p(-0.18) * theta**3 / (8 * math.pi)))  # V3 = 0.18
    img = np.asarray(jaxcba.simulate(p, (n, n, n), VOXEL, jax.random.PRNGKey(seed)))
    return p, img


@pytest.mark.parametrize("theta, search, n_real", [(0.0105, "both", 3), (0.007, "golden", 3)])
def test_theta_recovered_on_twin(theta, search, n_real):
    truth, img = _twin(theta, seed=11)
    v2 = float(volume_fractions(truth, VOXEL).excursion)
    res = fit_pores(img, VOXEL, truth.replace(theta=1.0, lambda_y=1.0), v2, search=search, n_realizations=n_real,
                    theta_hint=theta * 1.3)
    assert theta / 1.6 < res.theta < theta * 1.6, [(s.thetas, s.l1s) for s in res.searches]
    # lambda_Y is Eq. 25's for the chosen theta, with the image's V and V1
    v_img = np.count_nonzero(img) / img.size
    v1_img = np.count_nonzero(img == 2) / img.size
    assert res.lambda_y == pytest.approx(lambda_y_for(v_img, v1_img, v2, res.theta), rel=1e-9)
    # so 1 - V3 = q / V2 with q the cb fraction of the graphite-free voxels
    q = np.count_nonzero(img == 1) / np.count_nonzero(img != 2)
    assert 1 - float(ball_fraction(res.lambda_y, res.theta)) == pytest.approx(q / v2, rel=1e-9)
    assert {s.method for s in res.searches} == ({"grid", "golden"} if search == "both" else {"golden"})
    best = min(res.searches, key=lambda s: s.l1)
    assert res.best is best and res.l1 == best.l1
    golden = [s for s in res.searches if s.method == "golden"][0]
    assert golden.realizations <= n_real * (len(golden.thetas) + 1) and golden.converged, golden.message
    if search == "both":  # the bracketing search is at least as good as the paper's grid on the same numbers
        grid = [s for s in res.searches if s.method == "grid"][0]
        assert golden.l1 <= grid.l1 * 1.05 and len(grid.thetas) == 7
    d = res.to_dict()
    assert d["theta"] == res.theta and len(d["r_nm"]) == len(d["cpsd_image"])


@pytest.mark.parametrize("seed", [11, 12])
def test_wrong_hint_does_not_restrict_the_scan(seed):
    # the hint is 3x too small, so (hint / 2, 2 hint) excludes the truth (the old bracket's failure on
    # the 200^3 paper twin); the default scan spans mean radii 1 voxel .. min(W / 4, 2 x largest pore).
    # 80^3 window, 3 realizations: measured 0.0110 and 0.0083 for the truth 0.0105 (tolerance factor 1.4;
    # 64^3 windows are too noisy: one seed of three ended at the scan's small-ball edge, a factor 2.4 off)
    theta = 0.0105
    truth, img = _twin(theta, seed=seed, n=80)
    v2 = float(volume_fractions(truth, VOXEL).excursion)
    hint = theta / 3.0
    res = fit_pores(img, VOXEL, truth, v2, theta_hint=hint)
    g = res.best
    assert g.method == "golden" and g.converged and res.converged, g.message
    assert max(g.thetas) > 2 * hint and min(g.thetas) < hint  # the scan reaches beyond the old bracket
    assert any(t == pytest.approx(hint, rel=1e-9) for t in g.scan)  # the hint is one more scan point
    assert g.thetas[: len(g.scan)] == g.scan and len(g.scan) >= 6
    assert theta / 1.4 < res.theta < theta * 1.4, sorted(zip(g.thetas, g.l1s))
    # the refinement (Brent inside the best scan point's neighbours) ends at the smallest value seen
    assert g.l1 == pytest.approx(min(g.l1s)) and res.l1 == g.l1


@pytest.mark.parametrize("bracket, edge", [((0.001, 0.0025), "upper"), ((0.02, 0.04), "lower")])
def test_truth_outside_the_scan_range_is_not_converged(bracket, edge):
    theta = 0.0105
    truth, img = _twin(theta, seed=11)
    v2 = float(volume_fractions(truth, VOXEL).excursion)
    res = fit_pores(img, VOXEL, truth, v2, bracket=bracket, theta_hint=theta)  # the hint lies outside: ignored
    g = res.best
    assert not res.converged and not g.converged
    assert f"{edge} edge" in g.message and "widen" in g.message and "bracket" in g.message
    assert res.theta == pytest.approx(bracket[1] if edge == "upper" else bracket[0])
    assert bracket[0] * (1 - 1e-9) <= min(g.thetas) and max(g.thetas) <= bracket[1] * (1 + 1e-9)
    assert g.scan[0] == pytest.approx(bracket[0]) and g.scan[-1] == pytest.approx(bracket[1])
    with pytest.raises(ValueError, match="bracket"):
        fit_pores(img, VOXEL, truth, v2, bracket=(0.01, 0.005))


def test_cpsd_and_l1_reference():
    # a digital ball of radius 6: covered completely by r = 1, mostly up to r = 6, not at all beyond its depth
    z, y, x = np.ogrid[:24, :24, :24]
    labels = np.ones((24, 24, 24), np.uint8)
    labels[(z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 36] = 0
    radii = np.array([1.0, 3.0, 5.5, 6.5, 8.0])
    c = pore_cpsd(labels, 20.0, radii)
    assert c[0] == 1.0 and c[1] > 0.9 and c[2] > 0.5 and c[3] == 0.0 and c[4] == 0.0
    # the descriptors layer's CPSD equals the scipy EDT reference on a random structure
    rng = np.random.default_rng(0)
    from scipy import ndimage

    pore = ndimage.uniform_filter(rng.uniform(size=(32, 32, 32)), 5) > 0.5
    lab = np.where(pore, 0, 1).astype(np.uint8)
    r = np.arange(1.0, 6.0, 0.5)
    np.testing.assert_allclose(pore_cpsd(lab, 20.0, r), cpsd_scipy(pore, r), atol=1e-12)
    r = np.array([0.0, 1.0, 2.0])
    assert l1_distance(r, [1, 1, 0], [1, 0, 0]) == pytest.approx(1.0)


def test_bad_input():
    truth, img = _twin(0.0105, seed=11)
    v2 = float(volume_fractions(truth, VOXEL).excursion)
    with pytest.raises(ValueError, match="no solution"):
        fit_pores(img, VOXEL, truth, 0.05)  # V2 too small to leave room for balls
    with pytest.raises(ValueError, match="search"):
        fit_pores(img, VOXEL, truth, v2, search="random")
    with pytest.raises(ValueError, match="thetas"):
        fit_pores(img, VOXEL, truth, v2, search="grid", thetas=[0.01, -1.0], n_realizations=1)
    with pytest.raises(ValueError, match="labels"):
        fit_pores(img.astype(np.float32) + 0.5, VOXEL, truth, v2)
    with pytest.raises(ValueError, match="pore"):
        fit_pores(np.ones((16, 16, 16), np.uint8), VOXEL, truth, v2)


def test_profile_search_takes_mu_eta_from_the_refit_at_each_theta():
    # excursion_for_theta is called at every trial theta; the result carries the refit at the chosen theta,
    # lambda_Y is Eq. 25's with that refit's V2, and the chosen theta is the truth's within the tolerance
    # of the small window (factor 1.6, module docstring). The stub returns the image's own realized Xi2
    # fraction (the twin re-simulated from its key without balls), as a perfect fit of C_G would, with a
    # small theta-dependent twist so that the realizations differ between trial theta.
    from jaxcba.calibrate.stage2_excursion import ExcursionGivenTheta

    theta = 0.0105
    truth, img = _twin(theta, seed=11)
    v2 = float(volume_fractions(truth, VOXEL).excursion)
    xi2 = np.asarray(jaxcba.simulate(truth.replace(lambda_y=1e-30), img.shape, VOXEL, jax.random.PRNGKey(11)))
    v2_img = np.count_nonzero(xi2 == 1) / np.count_nonzero(xi2 != 2)
    calls = []

    def profile(t):
        calls.append(t)
        v2_t = v2_img * (1.0 + 0.01 * math.log(t / theta))
        return ExcursionGivenTheta(theta=t, mu=truth.mu, eta=truth.eta, v2=v2_t, v3=0.0, loss=0.0, converged=True)

    res = fit_pores(img, VOXEL, truth, v2, excursion_for_theta=profile)
    assert theta / 1.6 < res.theta < theta * 1.6, sorted(zip(res.best.thetas, res.best.l1s))
    assert set(calls) == set(res.best.thetas)
    assert res.excursion is not None and res.excursion.theta == res.theta
    v_img = np.count_nonzero(img) / img.size
    v1_img = np.count_nonzero(img == 2) / img.size
    assert res.lambda_y == pytest.approx(lambda_y_for(v_img, v1_img, res.excursion.v2, res.theta), rel=1e-9)
    assert res.v2 == res.excursion.v2 and res.to_dict()["excursion"]["theta"] == res.theta
    with pytest.raises(ValueError, match="condition_on_graphite"):
        fit_pores(img, VOXEL, truth, v2, window=(32, 32, 32))
