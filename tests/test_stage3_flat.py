"""Stage 3 on a flat (tied) objective: theta is "not identified", not converged, never SciPy's
bracketing error reported as bad input (a pore-free twin of the snow image in docs/real_image.md
ended `jaxcba calibrate` with exit 2 and "Bracketing values (xa, xb, xc) do not fulfill this
requirement"); a failure of the objective itself is an internal error (exit 3)."""

import json
import math

import numpy as np
import pytest

import jaxcba
from jaxcba.calibrate import FromStage2, Grid, Realizations, ScanBrent, fit_pores
from jaxcba.calibrate import _stage3_pores
from jaxcba.cli import main
from jaxcba.model import simulate


class FakeObjective:
    """Stage 3's objective interface with a prescribed L1 distance [nm] of theta [nm^-1]."""

    n_realizations = 1

    def __init__(self, l1):
        self.l1, self.calls = l1, []

    @property
    def n_evaluated(self):
        return len(set(self.calls))

    def __call__(self, theta):
        self.calls.append(float(theta))
        return 1e-20, float(self.l1(float(theta))), np.zeros(3)


SCAN = np.geomspace(1e-5, 1e-4, 6)  # ratio 1.585


def _plateau(theta):
    """High for the largest balls, then a plateau of equal L1 (no balls carved), then rising."""
    if theta < 1.2e-5:
        return 200.0
    return 100.0 if theta < 3.0e-5 else 100.0 + 50.0 * math.log(theta / 3.0e-5) ** 2


def test_interior_tie_is_not_identified_instead_of_scipys_bracket_error():
    obj = FakeObjective(_plateau)
    s = ScanBrent().run(obj, SCAN)  # scan: 200, 100, 100, rising: the best point ties with its right neighbour
    assert not s.converged and "not identified" in s.message and "flat" in s.message, s.message
    assert s.theta == pytest.approx(SCAN[1]) and s.l1 == 100.0
    assert "2 of 6 scan values" in s.message
    assert f"theta = {SCAN[1]:.4g}, {SCAN[2]:.4g} nm^-1" in s.message  # the tied values themselves


def test_the_message_names_only_the_tied_values():
    """Ties at the first and third scan values, a larger distance between them: the message lists
    the two tied values, not a span that would include the one between."""
    l1 = {0: 100.0, 1: 130.0, 2: 100.0, 3: 150.0, 4: 170.0, 5: 190.0}
    s = ScanBrent().run(FakeObjective(lambda t: l1[int(np.argmin(abs(SCAN - t)))]), SCAN)
    assert not s.converged and "2 of 6 scan values" in s.message, s.message
    assert f"theta = {SCAN[0]:.4g}, {SCAN[2]:.4g} nm^-1" in s.message and f"{SCAN[1]:.4g}" not in s.message


def test_all_equal_scan_is_flat_not_an_edge():
    s = ScanBrent().run(FakeObjective(lambda t: 42.0), SCAN)
    assert not s.converged and "not identified" in s.message and "edge" not in s.message, s.message
    assert "6 of 6 scan values" in s.message


def test_a_strict_interior_minimum_still_converges_by_brent():
    true = 3.3e-5
    s = ScanBrent().run(FakeObjective(lambda t: 10.0 + math.log(t / true) ** 2), SCAN)
    assert s.converged and "Brent" in s.message
    assert s.theta == pytest.approx(true, rel=0.02)


def test_grid_tie_is_not_identified_and_duplicates_are_no_tie():
    g = Grid(thetas=(1e-5, 2e-5, 3e-5, 4e-5)).run(FakeObjective(lambda t: 100.0 if t < 3.5e-5 else 120.0),
                                                  np.array([1e-5, 2e-5, 3e-5, 4e-5]))
    assert not g.converged and "not identified" in g.message
    g = Grid().run(FakeObjective(lambda t: (t - 2e-5) ** 2), np.array([1e-5, 2e-5, 2e-5, 3e-5]))
    assert g.converged and g.theta == 2e-5


def test_non_finite_l1_is_an_internal_error():
    with pytest.raises(RuntimeError, match="not finite"):
        ScanBrent().run(FakeObjective(lambda t: math.nan if t > 2e-5 else 1.0), SCAN)


def test_pore_free_realizations_tie_in_fit_pores():
    """A real (small) stage 3: the realizations' excursion set is sparser than the image's, so
    matching the image's cb fraction never carves a ball: every trial theta gives the same CPSD."""
    vox = 10000.0
    img_p = jaxcba.CBAParams(lambda_x=0.0, alpha1=1.0, alpha2=1.0, gamma=1.0, mu=-0.232, eta=1.0 / 31100.0,
                             theta=1.0 / 120000.0, lambda_y=1e-30)
    img = np.asarray(simulate(img_p, (16, 16, 16), vox, 1))
    q = float(np.mean(img == 1))
    base = img_p.replace(mu=1.0)  # realizations' V2 = 0.16, far below the image's q ~ 0.6
    res = fit_pores(img, vox, base, FromStage2(min(q + 0.01, 0.99)), realizations=Realizations(n=1))
    s = res.best
    assert np.ptp(s.l1s) == 0.0  # the tie this test is about
    assert not res.converged and "not identified" in res.message, res.message


def _flat_call(self, theta):
    return 1e-20, 7.0, np.array(self.image.cpsd, float)


def _nan_call(self, theta):
    return 1e-20, math.nan, np.array(self.image.cpsd, float)


@pytest.mark.parametrize("call, code, text", [(_flat_call, 1, "not identified"), (_nan_call, 3, "internal error")])
def test_cli_flat_stage3_exits_1_and_internal_failure_3(monkeypatch, tmp_path, capsys, call, code, text):
    p = jaxcba.CBAParams(lambda_x=0.0, alpha1=1.0, alpha2=1.0, gamma=1.0, mu=-0.232, eta=1.0 / 31100.0,
                         theta=1.0 / 120000.0, lambda_y=1e-30)
    np.save(tmp_path / "v.npy", np.asarray(simulate(p, (16, 16, 16), 10000.0, 0)))
    (tmp_path / "init.json").write_text(json.dumps(p.to_dict()))
    monkeypatch.setattr(_stage3_pores.CpsdObjective, "__call__", call)
    rc = main(["calibrate", str(tmp_path / "v.npy"), "--voxel-nm", "10000", "--stages", "3", "--initial",
               str(tmp_path / "init.json"), "--realizations", "1", "--quiet", "--out", str(tmp_path / "fit.json")])
    out, err = capsys.readouterr()
    assert rc == code, (out, err)
    assert text in out + err and "Bracketing" not in err
