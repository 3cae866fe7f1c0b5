"""Stage 2 (paper Section 3.2.2, Eqs. 18-21): the excursion set Ξ2 = {Z >= mu} of carbon black
and binder — ``mu`` by the plug-in (Eq. 19), ``eta`` by least squares of Eq. 21 (with the
1/(2 pi) restored) against a measured two-point coverage.

Two estimators:

``"cutout"`` (the paper's): in a box free of graphite and large pores (given, or found by
:func:`jaxcba.calibrate.cutout.find_cutout`), ``V2_hat`` = cb fraction of the box (graphite
voxels in a user box are excluded), ``mu = Phi^-1(1 - V2_hat)``, and ``eta`` by
``theory.fit_eta`` on the box's C(h). Unbiased only if the box meets no ball of Ξ3 and was
chosen independently of Ξ2; a box chosen by looking at the pores fails both (it avoids the
widest pores of Ξ2 and keeps the small balls of Ξ3), see ``docs/calibration.md``.

``"masked"`` (default; unbiased, no box): uses the whole graphite-free region G = (Ξ1)^c as
observed. Because Ξ1, Ξ2, Ξ3 are independent, for x, x + h in G

    q    = P(x in cb | G)                     = V2 (1 - V3),
    C_G(h) = P(x, x + h in cb | G)            = C2(h; mu, eta) * Q3(h),
    Q3(h) = P(x, x + h not in Ξ3) = (1 - V3)^2 exp(nu e^{-theta h / 2} (1 + theta h / 4)),

with ``nu = -ln(1 - V3) = 8 pi lambda_Y / theta^3`` (Eq. 24); ``Q3`` uses the mean volume of
the lens of two balls of radius ``R ~ Exp(theta)`` at distance h,
``E|B(0,R) ∩ B(h,R)| = pi e^{-theta h/2} (8/theta^3 + 2h/theta^2)``. Given q from the
image, ``(eta, theta, V3)`` are fitted by least squares of ``C_G`` (L-BFGS, a few starts);
then ``V2 = q / (1 - V3)`` and ``mu`` by Eq. 19. The conditioning on G is independent of Ξ2
and Ξ3, so this uses every graphite-free voxel and no selection. Its by-products ``V3`` and
``theta`` are reported; stage 3 re-fits ``theta`` from the pore sizes and takes ``lambda_Y``
from Eq. 25 with this ``V2`` (so the total volume fraction is matched exactly).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.calibrate._measure import checked_labels, masked_axis_two_point
from jaxcba.calibrate.cutout import Box, find_cutout
from jaxcba.calibrate.optimize import OptimResult, minimize

ESTIMATORS = ("masked", "cutout")


@dataclasses.dataclass(frozen=True)
class Stage2Result:
    """Outcome of stage 2.

    Attributes:
        mu: threshold [1] (Eq. 19).
        eta: inverse correlation length [nm^-1].
        v2: volume fraction of Ξ2 (Eq. 18), ``1 - Phi(mu)``.
        estimator: ``"masked"`` or ``"cutout"``.
        q: cb fraction of the graphite-free voxels used.
        h_nm, c_obs, c_fit: lags [nm], measured and fitted two-point coverage.
        box: the cutout (``None`` for ``"masked"``) and ``box_info`` (how it was found).
        v3, theta: ``"masked"`` only: the fitted V3 and theta [nm^-1] of Ξ3 (else nan).
        loss: least-squares residual sum of the fit.
        converged, message: the fit's optimiser state (``"cutout"``: always True).
        seconds: wall time.
    """

    mu: float
    eta: float
    v2: float
    estimator: str
    q: float
    h_nm: np.ndarray
    c_obs: np.ndarray
    c_fit: np.ndarray
    box: Box | None
    box_info: dict
    v3: float
    theta: float
    loss: float
    converged: bool
    message: str
    seconds: float
    optim: OptimResult | None = None

    def to_dict(self) -> dict:
        return {
            "mu": self.mu, "eta": self.eta, "v2": self.v2, "estimator": self.estimator, "q": self.q,
            "h_nm": np.asarray(self.h_nm).tolist(), "c_obs": np.asarray(self.c_obs).tolist(),
            "c_fit": np.asarray(self.c_fit).tolist(),
            "box": None if self.box is None else self.box.to_dict(), "box_info": dict(self.box_info),
            "v3": _jsonable(self.v3), "theta": _jsonable(self.theta), "loss": self.loss,
            "converged": self.converged, "message": self.message, "seconds": self.seconds,
        }


def _jsonable(x):
    return None if x is None or not math.isfinite(x) else float(x)


# --------------------------------------------------------------------------- the model
def ball_pair_survival(h_nm, v3, theta):
    """``Q3(h) = P(x, x + h not in Ξ3)`` for a Boolean model of balls with ``Exp(theta)`` radii.

    ``v3`` is its volume fraction (Eq. 24); see the module docstring.
    """
    nu = -jnp.log1p(-v3)
    th = theta * h_nm
    return (1.0 - v3) ** 2 * jnp.exp(nu * jnp.exp(-0.5 * th) * (1.0 + 0.25 * th))


def masked_model(h_nm, q, eta, theta, v3):
    """``C_G(h) = C2(h; mu(V2), eta) Q3(h)`` with ``V2 = q / (1 - V3)``."""
    from jaxcba.theory import mu_from_fraction, two_point_coverage

    v2 = q / (1.0 - v3)
    mu = mu_from_fraction(v2)
    return two_point_coverage(h_nm, mu, eta) * ball_pair_survival(h_nm, v3, theta)


def _masked_loss(u, h_nm, c_obs, weight, q):
    eta, theta = jnp.exp(u[0]), jnp.exp(u[1])
    v3 = (1.0 - q) * jax.nn.sigmoid(u[2])
    r = masked_model(h_nm, q, eta, theta, v3) - c_obs
    return jnp.sum(weight * r**2)


def _masked_loss_fixed_theta(u, h_nm, c_obs, weight, q, theta):
    return _masked_loss(jnp.stack([u[0], jnp.log(theta), u[1]]), h_nm, c_obs, weight, q)


def _v3_coord(v3, q):
    """Unconstrained coordinate of ``V3`` in ``(0, 1 - q)`` (a start; capped at half the range)."""
    v3 = min(v3, 0.5 * (1.0 - q))
    return math.log(v3 / (1.0 - q - v3))


def _v3_value(u, q):
    return float((1.0 - q) / (1.0 + np.exp(-float(u))))


def _unpack(u, q):
    u = np.asarray(u, dtype=float)
    return float(np.exp(u[0])), float(np.exp(u[1])), _v3_value(u[2], q)


def _masked_args(h, c, q) -> tuple:
    """``(h, c, weight, q)`` of the masked loss; ``weight`` normalises by C_G's spread about q^2."""
    weight = 1.0 / max(float(np.sum((c - q * q) ** 2)), 1e-30)
    return (jnp.asarray(h), jnp.asarray(c), jnp.asarray(weight), jnp.asarray(q))


def _best_start(loss_fn, starts, method, args, **options) -> OptimResult:
    """The lowest finite-loss run of ``minimize`` over ``starts``."""
    best = None
    for u0 in starts:
        res = minimize(loss_fn, jnp.asarray(u0), method, args=args, **options)
        if best is None or (np.isfinite(res.loss) and res.loss < best.loss):
            best = res
    return best


# ------------------------------------------------------------------------------ fitting
def fit_excursion(
    labels,
    voxel_nm: float,
    *,
    estimator: str = "masked",
    cutout=None,
    large_pore_nm: float | None = None,
    max_lag_nm: float | None = None,
    method: str = "lbfgs",
    progress: bool = False,
) -> Stage2Result:
    """Stage 2: ``(mu, eta)`` of Ξ2 from a labelled image (module docstring).

    Args:
        labels: ``(z, y, x)`` labels (0 pore, 1 cb, 2 graphite).
        voxel_nm: voxel side [nm].
        estimator: ``"masked"`` (default, whole graphite-free region, unbiased) or
            ``"cutout"`` (the paper's box).
        cutout: for ``"cutout"``: ``None``/``"auto"`` (found automatically), a :class:`Box`,
            6 integers ``(z0, z1, y0, y1, x0, x1)`` or ``"z0:z1,y0:y1,x0:x1"``.
        large_pore_nm: radius from which a pore counts as large (automatic cutout).
        max_lag_nm: largest lag of C(h) [nm]; default ``min(40, side / 4)`` voxels.
        method: optimiser of the ``"masked"`` fit (``lbfgs``/``adam``/``nelder-mead``).
        progress: tqdm bars on stderr.
    """
    from jaxcba.theory import fit_eta, mu_from_fraction, two_point_coverage

    t0 = time.perf_counter()
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown stage-2 estimator {estimator!r}; allowed: {', '.join(ESTIMATORS)}")
    vol = checked_labels(labels)
    box, box_info = None, {}
    if estimator == "cutout":
        if cutout is None or (isinstance(cutout, str) and cutout == "auto"):
            box, box_info = find_cutout(vol, voxel_nm, large_pore_nm)
            box_info = {"found": "auto", **box_info}
        else:
            box = Box.parse(cutout, vol.shape)
            box_info = {"found": "given"}
        region_labels = vol[box.slices]
    elif cutout is not None:
        raise ValueError("a cutout is only used by estimator='cutout'")
    else:
        region_labels = vol
    region = region_labels != 2
    cb = region_labels == 1
    n_region = int(np.count_nonzero(region))
    if n_region == 0:
        raise ValueError("the cutout is empty: it holds no graphite-free voxels" if box is not None
                         else "the volume is all graphite: no carbon black/binder region to fit stage 2")
    n_cb = int(np.count_nonzero(cb))
    if n_cb == 0 or n_cb == n_region:
        what = "cutout" if box is not None else "graphite-free region"
        raise ValueError(f"the {what} holds {'no' if n_cb == 0 else 'only'} carbon black/binder (label 1): "
                         "the excursion set Ξ2 cannot be fitted from it")
    q = n_cb / n_region
    side = min(region_labels.shape)
    max_lag = max(2, min(40, side // 4)) if max_lag_nm is None else max(1, int(round(max_lag_nm / voxel_nm)))
    max_lag = min(max_lag, side - 1)
    c_all, n_pairs = masked_axis_two_point(cb, region, max_lag)
    h_all = np.arange(max_lag + 1) * float(voxel_nm)
    h, c = h_all[1:], c_all[1:]

    if estimator == "cutout":
        v2 = q
        mu = float(mu_from_fraction(jnp.asarray(v2)))
        eta = float(fit_eta(jnp.asarray(h), jnp.asarray(c), jnp.asarray(mu)))
        c_fit = np.asarray(two_point_coverage(jnp.asarray(h_all), mu, eta))
        loss = float(np.sum((c_fit[1:] - c) ** 2))
        converged = bool(np.isfinite(eta) and eta > 0)
        return Stage2Result(
            mu=mu, eta=eta, v2=v2, estimator=estimator, q=q, h_nm=h_all, c_obs=c_all, c_fit=c_fit, box=box,
            box_info=box_info, v3=float("nan"), theta=float("nan"), loss=loss, converged=converged,
            message="plug-in mu (Eq. 19) and least-squares eta (Eq. 21)" if converged else "fit_eta failed",
            seconds=time.perf_counter() - t0,
        )

    # masked: (eta, theta, V3) by least squares of C_G(h) = C2(h) Q3(h)
    mu0 = float(mu_from_fraction(jnp.asarray(q)))
    eta0 = float(fit_eta(jnp.asarray(h), jnp.asarray(c), jnp.asarray(mu0)))  # ignores Ξ3: a start only
    if not (np.isfinite(eta0) and eta0 > 0):
        eta0 = 1.0 / (4.0 * voxel_nm)
    starts = [[math.log(eta_s), math.log(theta_fac * eta_s), _v3_coord(v3_s, q)]
              for eta_s, theta_fac, v3_s in ((eta0, 1.0, 0.1), (eta0 * 1.3, 0.5, 0.25), (eta0, 2.0, 0.03))]
    best = _best_start(_masked_loss, starts, method, _masked_args(h, c, q), max_steps=500, gtol=1e-10, ftol=1e-12,
                       progress=progress, desc="stage 2 (masked C(h) fit)")
    eta, theta, v3 = _unpack(best.x, q)
    v2 = q / (1.0 - v3)
    mu = float(mu_from_fraction(jnp.asarray(v2)))
    c_fit = np.asarray(masked_model(jnp.asarray(h_all), q, eta, theta, v3))
    problems = _masked_sanity(v2, v3, theta, eta, voxel_nm, side)
    return Stage2Result(
        mu=mu, eta=eta, v2=v2, estimator=estimator, q=q, h_nm=h_all, c_obs=c_all, c_fit=c_fit, box=None,
        box_info={}, v3=v3, theta=theta, loss=float(np.sum((c_fit[1:] - c) ** 2)),
        converged=bool(best.converged) and not problems,
        message=best.message + ("" if not problems else "; not a fit: " + "; ".join(problems)),
        seconds=time.perf_counter() - t0, optim=best,
    )


@dataclasses.dataclass(frozen=True)
class ExcursionGivenTheta:
    """The masked fit of ``(eta, V3)`` at a fixed ``theta`` [nm^-1] (:func:`refit_given_theta`)."""

    theta: float
    mu: float
    eta: float
    v2: float
    v3: float
    loss: float
    converged: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def refit_given_theta(s2: Stage2Result, theta: float, method: str = "lbfgs") -> ExcursionGivenTheta:
    """Re-fit the masked model ``C_G(h)`` of a ``"masked"`` stage 2 with ``theta`` held fixed.

    On windows of a few micrometres the free three-parameter fit is ill-conditioned: ``C2`` and
    ``Q3`` decay over similar lags (1/eta ~ 79 nm, 1/theta ~ 95 nm in the paper), and the least
    squares trade ball size against V3. Measured on the 200^3 paper twin at 40 nm: free fit
    1/theta = 264 nm, V3 = 0.10, mu = 0.64 (truth 95 nm, 0.18, 0.50); at the true theta the
    same data give 1/eta = 76 nm, V2 = 0.316, mu = 0.48. Stage 3 therefore chooses theta from
    the pore sizes and takes ``(mu, eta, V3)`` from this profile fit at each trial theta.
    Uses ``s2.h_nm``, ``s2.c_obs`` and ``s2.q``; starts from ``s2.eta`` and three V3 values.
    """
    if s2.estimator != "masked":
        raise ValueError("refit_given_theta needs a stage 2 fitted with estimator='masked'")
    if not (math.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a finite number > 0 [nm^-1], got {theta}")
    from jaxcba.theory import mu_from_fraction

    q = s2.q
    h, c = np.asarray(s2.h_nm)[1:], np.asarray(s2.c_obs)[1:]
    args = _masked_args(h, c, q) + (jnp.asarray(float(theta)),)
    starts = [[math.log(s2.eta), _v3_coord(v3_s, q)] for v3_s in (0.03, 0.15, 0.4)]
    best = _best_start(_masked_loss_fixed_theta, starts, method, args, max_steps=300, gtol=1e-10, ftol=1e-12)
    u = np.asarray(best.x, dtype=float)
    eta, v3 = float(np.exp(u[0])), _v3_value(u[1], q)
    v2 = q / (1.0 - v3)
    return ExcursionGivenTheta(theta=float(theta), mu=float(mu_from_fraction(jnp.asarray(v2))), eta=eta, v2=v2,
                               v3=v3, loss=float(best.loss), converged=bool(best.converged))


def _masked_sanity(v2, v3, theta, eta, voxel_nm, side) -> list[str]:
    """Reasons why a masked fit is degenerate; empty if none. Measured on ~1 µm windows of pure
    excursion sets (96^3-128^3 at 10 nm): the C_G(h) fit then explains part of the field's own
    structure by balls of radius ~3 voxels, far below 1/eta, and trades V3 against V2 (mu from
    -5.8 to 0.8 for a truth of 0.5). Balls much smaller than the field's correlation length are
    not distinguishable from it (Q3 and C2 decay over the same lags)."""
    out = []
    if v3 > 0.01 and 1.0 / theta < 0.5 / eta:
        out.append(f"the fitted large pores (1/theta = {1.0 / theta:.4g} nm, V3 = {v3:.3f}) are smaller than half the "
                   f"field's correlation length 1/eta = {1.0 / eta:.4g} nm, so they are not identifiable against it; "
                   "use estimator='cutout' or a larger window")
    if v2 > 0.98:
        out.append(f"V2 = {v2:.3f}: the large-pore fraction V3 took all the room (mu -> -inf); "
                   "the window is too small for the masked estimator, use estimator='cutout' or a larger window")
    for name, length in (("1/theta", 1.0 / theta), ("1/eta", 1.0 / eta)):
        if not (0.25 * voxel_nm <= length <= side * voxel_nm):
            out.append(f"{name} = {length:.4g} nm lies outside [voxel/4, window side] = "
                       f"[{0.25 * voxel_nm:g}, {side * voxel_nm:g}] nm")
    return out


__all__ = ["Stage2Result", "ExcursionGivenTheta", "fit_excursion", "refit_given_theta", "ball_pair_survival", "masked_model", "ESTIMATORS"]
