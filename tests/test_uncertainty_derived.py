"""Derived quantities of the uncertainty (V2, 1/eta, ...) never get a zero-width interval from a
parameter whose variance is not finite: they are unavailable and the note names the parameter
(the snow image of docs/real_image.md printed V2 and 1/eta with std. err. 0); with finite
variances they follow the closed forms of the delta method."""

import math

import numpy as np
import pytest
import scipy.stats

import jaxcba
from jaxcba.calibrate._uncertainty import intervals
from jaxcba.model.params import FIELDS

NAMES = list(FIELDS)
VOXEL_NM = 10000.0
#: The snow image's fit (docs/real_image.md): a two-phase excursion set, no large pores.
SNOW = jaxcba.CBAParams(lambda_x=0.0, alpha1=1.0, alpha2=1.0, gamma=1.0, mu=-0.232, eta=1.0 / 31100.0,
                        theta=1.0 / 120000.0, lambda_y=6.1e-31)
FITTED = {"lambda_x": "fixed", "alpha1": "fixed", "alpha2": "fixed", "gamma": "fixed", "mu": "fit", "eta": "fit",
          "theta": "stage 3 did not converge (see the warnings): no interval",
          "lambda_y": "stage 3 did not converge (see the warnings): no interval"}
Q = float(scipy.stats.t.ppf(0.975, 7))


def _cov(var_mu, var_eta):
    cov = np.zeros((8, 8))
    cov[NAMES.index("mu"), NAMES.index("mu")] = var_mu
    cov[NAMES.index("eta"), NAMES.index("eta")] = var_eta
    return cov


def _get(out, name):
    return next(i for i in out[0] + out[1] if i.name == name)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_parameter_without_a_finite_variance_makes_its_derived_quantities_unavailable(bad):
    cov = _cov(0.01, 0.04)
    e = NAMES.index("eta")
    cov[e, :] = cov[:, e] = bad  # what J with 1e300 entries gives: inf (or nan) in eta's row and column
    out = intervals(SNOW, VOXEL_NM, cov, FITTED, Q, "delta")
    eta, inv_eta = _get(out, "eta"), _get(out, "1/eta")
    assert eta.method == "unavailable"
    assert inv_eta.method == "unavailable" and "eta" in inv_eta.note, inv_eta
    assert math.isnan(inv_eta.se) and math.isnan(inv_eta.lo) and math.isnan(inv_eta.hi)
    # V2 depends on mu alone, whose variance is finite: its interval is kept (V2 = 1 - Phi(mu), Eq. 18)
    v2 = _get(out, "V2")
    assert v2.method == "delta" and v2.se == pytest.approx(scipy.stats.norm.pdf(-0.232) * 0.1, rel=1e-6)
    # theta's unavailability propagates too, naming it
    inv_theta, v3 = _get(out, "1/theta"), _get(out, "V3")
    assert inv_theta.method == "unavailable" and "theta" in inv_theta.note and "did not converge" in inv_theta.note
    assert v3.method == "unavailable" and "theta" in v3.note


def test_mu_and_eta_both_non_finite_as_on_the_snow_image():
    cov = _cov(math.inf, math.inf)
    out = intervals(SNOW, VOXEL_NM, cov, FITTED, Q, "delta")
    for name, dep in (("V2", "mu"), ("1/eta", "eta"), ("V", "mu")):
        i = _get(out, name)
        assert i.method == "unavailable" and dep in i.note and i.se != 0.0, i
    assert _get(out, "V1").method == "fixed"  # two-phase: V1 = 0 is not fitted
    assert all(i.method != "delta" or i.hi > i.lo for i in out[0] + out[1])  # no zero-width interval anywhere


def test_finite_variances_give_the_closed_form_intervals():
    """1/eta = exp(-log eta): se = (1/eta) sd(log eta), interval exp(-log eta -+ t sd); V2 = 1 - Phi(mu)."""
    sd_mu, sd_le = 0.05, 0.2
    out = intervals(SNOW, VOXEL_NM, _cov(sd_mu**2, sd_le**2), FITTED, Q, "delta")
    inv_eta = _get(out, "1/eta")
    assert inv_eta.method == "delta"
    assert inv_eta.se == pytest.approx(31100.0 * sd_le, rel=1e-9)
    assert (inv_eta.lo, inv_eta.hi) == pytest.approx((31100.0 * math.exp(-Q * sd_le), 31100.0 * math.exp(Q * sd_le)),
                                                     rel=1e-9)
    v2 = _get(out, "V2")
    v = 1.0 - scipy.stats.norm.cdf(-0.232)
    sd_logit = scipy.stats.norm.pdf(-0.232) * sd_mu / (v * (1 - v))
    logit = math.log(v / (1 - v))
    assert v2.value == pytest.approx(v, rel=1e-9)
    assert (v2.lo, v2.hi) == pytest.approx(tuple(1 / (1 + math.exp(-(logit + s * Q * sd_logit))) for s in (-1, 1)),
                                           rel=1e-6)


def test_twins_at_zero_and_two_phase_fixed_in_the_bootstrap():
    """Twins with lambda_y = 0 (no large pores): lambda_y and V3 on the natural scale (t se about
    the fit, cut at 0; V3 = 1 - exp(-8 pi lambda_y / theta^3), Eq. 24), no -inf; a two-phase fit
    (lambda_x = 0) fixes the graphite parameters, V1 and the half-axes, with the reason; the
    quantities equal in every twin get no interval."""
    from jaxcba.calibrate import bootstrap_set

    p = jaxcba.CBAParams.paper().replace(lambda_x=0.0)
    lys = [0.0, 0.0, 0.0] + [p.lambda_y * math.exp(0.2 * k) for k in range(-3, 4)]
    rows = [{"params": {**p.to_dict(), "lambda_y": ly}, "converged": True} for ly in lys]
    s = bootstrap_set(p, 40.0, rows)
    q = float(scipy.stats.t.ppf(0.975, 9))
    ly = s.get("lambda_y")
    se = np.std(lys, ddof=1)
    assert ly.method == "bootstrap" and ly.scale == "identity" and "3 of 10 twins at 0" in ly.note
    assert (ly.se, ly.lo, ly.hi) == pytest.approx((se, max(p.lambda_y - q * se, 0.0), p.lambda_y + q * se), rel=1e-9)
    v3s = [1 - math.exp(-8 * math.pi * v / p.theta**3) for v in lys]
    v3 = s.get("V3")
    assert v3.scale == "identity" and v3.se == pytest.approx(np.std(v3s, ddof=1), rel=1e-6)
    given = [i for i in s.parameters + s.derived if i.method == "bootstrap"]
    assert all(math.isfinite(i.lo) and math.isfinite(i.hi) for i in given)
    # the quantities the twins share (only lambda_y varies) did not spread: no interval, not a zero width
    same = {i.name for i in s.parameters + s.derived if i.method == "unavailable"}
    assert same == {"mu", "eta", "theta", "V2", "1/eta", "1/theta"}
    assert all("did not spread" in s.get(k).note for k in same)
    for name in ("lambda_x", "alpha1", "alpha2", "gamma", "alpha1/gamma"):
        assert s.get(name).method == "fixed" and "two-phase" in s.get(name).note, name
    assert s.get("V1").method == "fixed" and "no graphite" in s.get("V1").note

