"""Stage 2 (paper Section 3.2.2, Eqs. 18-21): the excursion set Ξ2 = {Z >= mu} of carbon black
and binder — ``mu`` by the plug-in (Eq. 19), ``eta`` by least squares of Eq. 21 (with the
1/(2 pi) restored) against a measured two-point coverage.

Two estimators (strategy objects, ``fit_excursion(labels, voxel_nm, estimator=...)``):

:class:`Cutout` (the paper's): in a box free of graphite and large pores (given, or found by
:func:`jaxcba.calibrate.find_cutout`), ``V2_hat`` = cb fraction of the box (graphite voxels in a
user box are excluded), ``mu = Phi^-1(1 - V2_hat)``, and ``eta`` by ``theory.fit_eta`` on the
box's C(h). Unbiased only if the box meets no ball of Ξ3 and was chosen independently of Ξ2.

:class:`Masked` (default; no box): the whole graphite-free region G = (Ξ1)^c. Because Ξ1, Ξ2, Ξ3
are independent, for x, x + h in G

    q    = P(x in cb | G)                     = V2 (1 - V3),
    C_G(h) = P(x, x + h in cb | G)            = C2(h; mu, eta) * Q3(h),
    Q3(h) = P(x, x + h not in Ξ3) = (1 - V3)^2 exp(nu e^{-theta h / 2} (1 + theta h / 4)),

with ``nu = -ln(1 - V3) = 8 pi lambda_Y / theta^3`` (Eq. 24); ``Q3`` uses the mean volume of
the lens of two balls of radius ``R ~ Exp(theta)`` at distance h,
``E|B(0,R) ∩ B(h,R)| = pi e^{-theta h/2} (8/theta^3 + 2h/theta^2)``. Given q from the image,
``(eta, theta, V3)`` are fitted by least squares of ``C_G`` (three starts); then
``V2 = q / (1 - V3)`` and ``mu`` by Eq. 19. :func:`refit_given_theta` is the same fit with
``theta`` held fixed (stage 3's profile search). Measured limits: docs/calibration.md.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.calibrate._box import Box
from jaxcba.calibrate._cutout import find_cutout
from jaxcba.calibrate._measure import checked_labels, masked_axis_two_point
from jaxcba.calibrate._optimize import OptimResult, Solver, best_finite, make_solver, run_starts
from jaxcba.calibrate._result import Result, field
from jaxcba.theory import fit_eta, mu_from_fraction, two_point_coverage

ESTIMATORS = ("masked", "cutout")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage2Result(Result):
    """Outcome of stage 2.

    Attributes:
        mu: threshold [1] (Eq. 19); ``eta``: inverse correlation length [nm^-1];
            ``v2``: volume fraction of Ξ2 (Eq. 18), ``1 - Phi(mu)``.
        estimator: ``"masked"`` or ``"cutout"``.
        q: cb fraction of the graphite-free voxels used.
        h_nm, c_obs, c_fit: lags [nm] (n,), measured and fitted two-point coverage (n,).
        box: the cutout (``None`` for ``"masked"``) and ``box_info`` (how it was found).
        v3, theta: ``"masked"`` only: the fitted V3 and theta [nm^-1] of Ξ3 (else nan; JSON null).
        loss: least-squares residual sum of the fit.
        converged, message: the fit's state (``"cutout"``: converged unless ``fit_eta`` failed).
        seconds: wall time [s]; ``optim``: the masked fit's best run (not in JSON).
    """

    mu: float
    eta: float
    v2: float
    estimator: str
    q: float
    h_nm: np.ndarray
    c_obs: np.ndarray
    c_fit: np.ndarray
    box: Box | None = None
    box_info: dict = field(default_factory=dict)
    v3: float = float("nan")
    theta: float = float("nan")
    loss: float
    converged: bool
    message: str
    seconds: float
    optim: OptimResult | None = field(None, json=False)


@dataclasses.dataclass(frozen=True)
class ExcursionGivenTheta(Result):
    """The masked fit of ``(eta, V3)`` at a fixed ``theta`` [nm^-1] (:func:`refit_given_theta`):
    ``mu`` [1], ``eta`` [nm^-1], ``v2``, ``v3`` [1], the least-squares ``loss``, ``converged``."""

    theta: float
    mu: float
    eta: float
    v2: float
    v3: float
    loss: float
    converged: bool


# --------------------------------------------------------------------------- the model
def ball_pair_survival(h_nm, v3, theta):
    """``Q3(h) = P(x, x + h not in Ξ3)`` for a Boolean model of balls with ``Exp(theta)`` radii.

    ``v3`` is its volume fraction (Eq. 24); see the module docstring.
    """
    nu = -jnp.log1p(-v3)
    th = theta * h_nm
    return (1.0 - v3) ** 2 * jnp.exp(nu * jnp.exp(-0.5 * th) * (1.0 + 0.25 * th))


def masked_model(h_nm, q, eta, theta, v3):
    """``C_G(h) = C2(h; mu(V2), eta) Q3(h)`` with ``V2 = q / (1 - V3)``; ``h_nm`` [nm], ``eta``, ``theta`` [nm^-1]."""
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


# ------------------------------------------------------------------------- estimators
#: The masked fits' optimiser options (a method name adds them; a solver object is used as is).
MASKED_OPTIONS = {"max_steps": 500, "gtol": 1e-10, "ftol": 1e-12}
PROFILE_OPTIONS = {"max_steps": 300, "gtol": 1e-10, "ftol": 1e-12}


class _Observed:
    """The region's two-point data: ``q`` (cb fraction of its graphite-free voxels), lags ``h_all``
    [nm] (0..max_lag voxels) and the coverage ``c_all`` at them; ``side``: its smallest side [voxels]."""

    def __init__(self, region_labels, voxel_nm: float, max_lag_nm: float | None, what: str):
        region = region_labels != 2
        cb = region_labels == 1
        n_region = int(np.count_nonzero(region))
        if n_region == 0:
            raise ValueError("the cutout is empty: it holds no graphite-free voxels" if what == "cutout"
                             else "the volume is all graphite: no carbon black/binder region to fit stage 2")
        n_cb = int(np.count_nonzero(cb))
        if n_cb == 0 or n_cb == n_region:
            raise ValueError(f"the {what} holds {'no' if n_cb == 0 else 'only'} carbon black/binder (label 1): "
                             "the excursion set Ξ2 cannot be fitted from it")
        self.q = n_cb / n_region
        self.side = min(region_labels.shape)
        max_lag = (max(2, min(40, self.side // 4)) if max_lag_nm is None
                   else max(1, int(round(max_lag_nm / voxel_nm))))
        max_lag = min(max_lag, self.side - 1)
        self.c_all, _ = masked_axis_two_point(cb, region, max_lag)
        self.h_all = np.arange(max_lag + 1) * float(voxel_nm)
        self.h, self.c = self.h_all[1:], self.c_all[1:]


@dataclasses.dataclass(frozen=True)
class Cutout:
    """The paper's estimator in a box (module docstring).

    ``box``: ``None``/``"auto"`` (the largest box free of graphite and large pores,
    :func:`jaxcba.calibrate.find_cutout`), a :class:`Box`, 6 integers ``(z0, z1, y0, y1, x0, x1)``
    or ``"z0:z1,y0:y1,x0:x1"``; ``large_pore_nm``: radius [nm] from which a pore counts as large
    (automatic box); ``max_lag_nm``: largest lag of C(h) [nm] (default ``min(40, side / 4)`` voxels).
    """

    box: object = None
    large_pore_nm: float | None = None
    max_lag_nm: float | None = None
    name = "cutout"

    def __post_init__(self):
        if self.box is not None and not isinstance(self.box, (Box, str)):
            object.__setattr__(self, "box", tuple(int(v) for v in np.ravel(np.asarray(self.box, dtype=object))))
        for name in ("large_pore_nm", "max_lag_nm"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"Cutout.{name} must be a finite number > 0 [nm], got {v}")

    def fit(self, labels, voxel_nm: float, method: "str | Solver" = "lbfgs", progress: bool = False) -> Stage2Result:
        """``mu`` by Eq. 19 and ``eta`` by least squares of Eq. 21 in the box (``method`` unused)."""
        t0 = time.perf_counter()
        vol = checked_labels(labels)
        if self.box is None or self.box == "auto":
            box, info = find_cutout(vol, voxel_nm, self.large_pore_nm)
            box_info = {"found": "auto", **info}
        else:
            box, box_info = Box.parse(self.box, vol.shape), {"found": "given"}
        obs = _Observed(vol[box.slices], voxel_nm, self.max_lag_nm, "cutout")
        mu = float(mu_from_fraction(jnp.asarray(obs.q)))
        eta = float(fit_eta(jnp.asarray(obs.h), jnp.asarray(obs.c), jnp.asarray(mu)))
        c_fit = np.asarray(two_point_coverage(jnp.asarray(obs.h_all), mu, eta))
        converged = bool(np.isfinite(eta) and eta > 0)
        return Stage2Result(
            mu=mu, eta=eta, v2=obs.q, estimator="cutout", q=obs.q, h_nm=obs.h_all, c_obs=obs.c_all, c_fit=c_fit,
            box=box, box_info=box_info, loss=float(np.sum((c_fit[1:] - obs.c) ** 2)), converged=converged,
            message="plug-in mu (Eq. 19) and least-squares eta (Eq. 21)" if converged else "fit_eta failed",
            seconds=time.perf_counter() - t0,
        )


@dataclasses.dataclass(frozen=True)
class Masked:
    """The whole graphite-free region, ``(eta, theta, V3)`` by least squares of ``C_G(h)`` (module
    docstring). ``max_lag_nm``: largest lag [nm] (default ``min(40, side / 4)`` voxels); ``solver``:
    the optimiser (default: the ``method`` given to ``fit`` with :data:`MASKED_OPTIONS`)."""

    max_lag_nm: float | None = None
    solver: Solver | None = None
    name = "masked"

    def __post_init__(self):
        if self.max_lag_nm is not None and not (math.isfinite(self.max_lag_nm) and self.max_lag_nm > 0):
            raise ValueError(f"Masked.max_lag_nm must be a finite number > 0 [nm], got {self.max_lag_nm}")

    def fit(self, labels, voxel_nm: float, method: "str | Solver" = "lbfgs", progress: bool = False) -> Stage2Result:
        """Fit ``C_G(h)`` from three starts; ``mu`` by Eq. 19 at ``V2 = q / (1 - V3)``."""
        t0 = time.perf_counter()
        obs = _Observed(checked_labels(labels), voxel_nm, self.max_lag_nm, "graphite-free region")
        q = obs.q
        mu0 = float(mu_from_fraction(jnp.asarray(q)))
        eta0 = float(fit_eta(jnp.asarray(obs.h), jnp.asarray(obs.c), jnp.asarray(mu0)))  # ignores Ξ3: a start only
        if not (np.isfinite(eta0) and eta0 > 0):
            eta0 = 1.0 / (4.0 * voxel_nm)
        starts = [jnp.asarray([math.log(eta_s), math.log(theta_fac * eta_s), _v3_coord(v3_s, q)])
                  for eta_s, theta_fac, v3_s in ((eta0, 1.0, 0.1), (eta0 * 1.3, 0.5, 0.25), (eta0, 2.0, 0.03))]
        solver = self.solver or _masked_solver(method, MASKED_OPTIONS)
        args = _masked_args(obs.h, obs.c, q)
        best = best_finite(run_starts(_masked_loss, starts, solver, lambda i: args, progress=progress,
                                      desc="stage 2 (masked C(h) fit) start"))
        eta, theta, v3 = _unpack(best.x, q)
        v2 = q / (1.0 - v3)
        c_fit = np.asarray(masked_model(jnp.asarray(obs.h_all), q, eta, theta, v3))
        problems = _masked_sanity(v2, v3, theta, eta, voxel_nm, obs.side)
        return Stage2Result(
            mu=float(mu_from_fraction(jnp.asarray(v2))), eta=eta, v2=v2, estimator="masked", q=q, h_nm=obs.h_all,
            c_obs=obs.c_all, c_fit=c_fit, v3=v3, theta=theta, loss=float(np.sum((c_fit[1:] - obs.c) ** 2)),
            converged=bool(best.converged) and not problems,
            message=best.message + ("" if not problems else "; not a fit: " + "; ".join(problems)),
            seconds=time.perf_counter() - t0, optim=best,
        )


def _masked_solver(method, options) -> Solver:
    return make_solver(method) if not isinstance(method, str) else make_solver(method, **options)


def estimator_of(estimator="masked", cutout=None, large_pore_nm=None, max_lag_nm=None) -> "Masked | Cutout":
    """A stage 2 strategy from ``estimator`` (``"masked"``, ``"cutout"`` or a strategy object) and the
    legacy keywords ``cutout``, ``large_pore_nm``, ``max_lag_nm`` (which only a name may take)."""
    if isinstance(estimator, (Masked, Cutout)):
        if cutout is not None or large_pore_nm is not None or max_lag_nm is not None:
            raise ValueError("give cutout, large_pore_nm and max_lag_nm on the estimator object")
        return estimator
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown stage-2 estimator {estimator!r}; allowed: {', '.join(ESTIMATORS)}")
    if estimator == "cutout":
        return Cutout(box=cutout, large_pore_nm=large_pore_nm, max_lag_nm=max_lag_nm)
    if cutout is not None:
        raise ValueError("a cutout is only used by estimator='cutout'")
    return Masked(max_lag_nm=max_lag_nm)


def fit_excursion(labels, voxel_nm: float, *, estimator="masked", cutout=None, large_pore_nm: float | None = None,
                  max_lag_nm: float | None = None, method: "str | Solver" = "lbfgs",
                  progress: bool = False) -> Stage2Result:
    """Stage 2: ``(mu, eta)`` of Ξ2 from a labelled ``(z, y, x)`` image (0 pore, 1 cb, 2 graphite).

    ``estimator``: :class:`Masked` (default, ``"masked"``) or :class:`Cutout` (``"cutout"``);
    with a name, ``cutout``, ``large_pore_nm`` and ``max_lag_nm`` are that object's fields
    (:func:`estimator_of`). ``method``: optimiser of the masked fit (a name or solver object).
    """
    return estimator_of(estimator, cutout, large_pore_nm, max_lag_nm).fit(labels, voxel_nm, method, progress)


def refit_given_theta(s2: Stage2Result, theta: float, method: "str | Solver" = "lbfgs") -> ExcursionGivenTheta:
    """Re-fit the masked model ``C_G(h)`` of a ``"masked"`` stage 2 with ``theta`` [nm^-1] held fixed.

    Uses ``s2.h_nm``, ``s2.c_obs`` and ``s2.q``; starts from ``s2.eta`` and V3 in (0.03, 0.15, 0.4);
    the lowest loss wins. Stage 3's profile search calls it at every trial ``theta``.
    """
    if s2.estimator != "masked":
        raise ValueError("refit_given_theta needs a stage 2 fitted with estimator='masked'")
    if not (math.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a finite number > 0 [nm^-1], got {theta}")
    q = s2.q
    args = _masked_args(np.asarray(s2.h_nm)[1:], np.asarray(s2.c_obs)[1:], q) + (jnp.asarray(float(theta)),)
    starts = [jnp.asarray([math.log(s2.eta), _v3_coord(v3_s, q)]) for v3_s in (0.03, 0.15, 0.4)]
    best = best_finite(run_starts(_masked_loss_fixed_theta, starts, _masked_solver(method, PROFILE_OPTIONS),
                                  lambda i: args))
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
