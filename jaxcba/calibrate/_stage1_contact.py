"""Stage 1 from the spherical contact distribution of the graphite phase (for coarse voxels,
where the 2x2x2 estimates of K and N of thin platelets are biased; docs/calibration.md).

For a Boolean model of convex grains, the probability that a point outside Xi1 is farther
than ``r`` from it is (Steiner's formula; Chiu et al., Eq. 3.22)

    -ln(1 - H_s(r)) = lambda (S_bar r + K_bar r^2 + 4 pi r^3 / 3) =: y(r),

with the grain means ``S_bar``, ``K_bar`` of Eqs. 15-16 (``K`` normalised so that a ball has
``4 pi r``). Fitted: ``V`` (Eq. 10, weight :data:`V_WEIGHT`, relative) and ``y(r)`` (relative
residuals, mean over the radii); ``S`` is not a target (``y``'s linear term holds ``lambda S_bar``).

Measurement (:func:`contact_distribution`): exact Euclidean distances from non-graphite voxel
centres to graphite voxel centres minus half a voxel (the digitised boundary lies half-way
between a graphite and a non-graphite centre), border-corrected (minus sampling: for radius
``r`` only voxels at least ``r`` from every face count), at ``r = R_MIN_VOX, R_MIN_VOX + 1, ...``
voxels up to an eighth of the smallest side while the survival ``1 - H_s`` stays above
:data:`MIN_SURVIVAL`.

The model is symmetric in ``(alpha1, alpha2)`` (the spheroid has half-axes ``min``, ``max``,
``max`` of the two), so the fit is reported with ``alpha1 <= alpha2``.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxcba._checks import check_voxel_nm
from jaxcba.calibrate._measure import checked_labels
from jaxcba.calibrate._optimize import Solver
from jaxcba.calibrate._result import Result
from jaxcba.calibrate._stage1_graphite import (
    DEFAULT_BOUNDS,
    Stage1Result,
    default_starts,
    from_coords,
    graphite_params,
    log_box,
    model_densities,
    run_bounded_starts,
    sanity,
    stage1_result,
    stage1_solver,
)
from jaxcba.calibrate._targets import graphite_densities_of_image
from jaxcba.descriptors.distance import squared_distance_to
from jaxcba.theory import grain_moments

V_WEIGHT = 100.0  # weight of the relative V residual against the mean relative y residual
MIN_SURVIVAL = 0.05
R_MIN_VOX = 3  # smallest radius of y(r) [voxels] (module docstring)


@dataclasses.dataclass(frozen=True)
class ContactDistribution(Result):
    """Measured ``y(r) = -ln(1 - H_s(r))`` of the graphite phase: radii ``r_nm`` [nm] (n,), ``y`` [1] (n,),
    and the number of voxels each value rests on (n,)."""

    r_nm: np.ndarray
    y: np.ndarray
    n_voxels: np.ndarray


def contact_distribution(labels, voxel_nm: float, r_min_vox: int = R_MIN_VOX) -> ContactDistribution:
    """Border-corrected spherical contact distribution of the graphite phase (module docstring)."""
    voxel_nm = check_voxel_nm(voxel_nm)
    vol = checked_labels(labels)
    graphite = vol == 2
    if not graphite.any():
        raise ValueError("the volume has no graphite (label 2): stage 1 is impossible")
    if graphite.all():
        raise ValueError("the volume is all graphite: its contact distribution is undefined")
    r_max = max(2, min(vol.shape) // 8)
    d, face = contact_maps(graphite, r_max)
    outside = ~graphite
    radii, ys, counts = [], [], []
    for r in range(int(r_min_vox), r_max + 1):
        region = outside & (face >= r)
        n_region = int(np.count_nonzero(region))
        if n_region == 0:
            break
        survival = np.count_nonzero(d[region] > r) / n_region
        if survival < MIN_SURVIVAL:
            break
        radii.append(r * float(voxel_nm))
        ys.append(-math.log(survival))
        counts.append(n_region)
    if len(radii) < 3:
        raise ValueError(f"the graphite contact distribution has only {len(radii)} usable radii (needs 3): the window "
                         f"{vol.shape} is too small or the graphite too dense for the contact estimator; use the "
                         "paper's Eq. 17 (descriptor='eq17')")
    return ContactDistribution(np.asarray(radii), np.asarray(ys), np.asarray(counts))


def contact_maps(graphite, r_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``(d, face)``: distance [voxels] from each voxel centre to the graphite minus half a voxel
    (exact up to ``r_max + 2``), and each voxel's distance to the nearest window face [voxels]."""
    d = np.sqrt(np.asarray(squared_distance_to(jnp.asarray(graphite), r_max + 2), dtype=np.float64)) - 0.5
    face = np.full(graphite.shape, np.iinfo(np.int32).max, dtype=np.int32)
    for axis, n in enumerate(graphite.shape):
        idx = np.arange(n, dtype=np.int32)
        shape = [1, 1, 1]
        shape[axis] = n
        face = np.minimum(face, np.minimum(idx, n - 1 - idx).reshape(shape))
    return d, face


def model_contact(values, r_nm, voxel_nm):
    """``y(r)`` of the graphite model ``values = (lambda_x, alpha1, alpha2, gamma)``, shape of ``r_nm`` [nm]."""
    gm = grain_moments(graphite_params(*[values[i] for i in range(4)]), voxel_nm)
    return values[0] * (gm.S * r_nm + gm.K * r_nm**2 + (4.0 * math.pi / 3.0) * r_nm**3)


def _contact_loss(x, lam0, box, voxel_nm, v_target, r_nm, y):
    values = from_coords(x, lam0, box, voxel_nm)
    v = model_densities(values, voxel_nm)[0]
    ym = model_contact(values, r_nm, voxel_nm)
    return V_WEIGHT * ((v - v_target) / v_target) ** 2 + jnp.mean(((ym - y) / y) ** 2)


@dataclasses.dataclass(frozen=True)
class Contact:
    """Stage 1 by ``V`` and the contact distribution ``y(r)`` (module docstring; pipeline ``stage1=Contact(...)``).

    ``starts``: number of default starts (1..6); ``r_min_vox``: the smallest radius of ``y(r)``
    [voxels]; ``solver``: the optimiser (default :func:`stage1_solver` of the pipeline's ``method``).
    """

    starts: int = 4
    r_min_vox: int = R_MIN_VOX
    solver: Solver | None = None

    def __post_init__(self):
        if not (isinstance(self.starts, int) and 1 <= self.starts <= 6):
            raise ValueError(f"Contact.starts must be an integer in 1..6, got {self.starts!r}")
        if not (isinstance(self.r_min_vox, int) and self.r_min_vox >= 1):
            raise ValueError(f"Contact.r_min_vox must be an integer >= 1, got {self.r_min_vox!r}")

    def fit(self, labels, voxel_nm: float, method: "str | Solver" = "lbfgs", progress: bool = False) -> Stage1Result:
        """Fit ``(lambda_X, alpha1, alpha2, gamma)`` to the image's ``V`` and ``y(r)``.

        Returns a :class:`Stage1Result` (``descriptor="contact"``): ``targets`` are the image's
        ``(V, S, K, N)`` (for the table), ``fitted`` Miles' values of the fit, ``loss`` the contact
        loss, and ``contact`` the measured and fitted ``y(r)``.
        """
        voxel_nm = check_voxel_nm(voxel_nm)
        vol = checked_labels(labels)
        targets = graphite_densities_of_image(vol, voxel_nm)
        cd = contact_distribution(vol, voxel_nm, self.r_min_vox)
        args = (jnp.asarray(voxel_nm), jnp.asarray(targets.V), jnp.asarray(cd.r_nm), jnp.asarray(cd.y))
        start_list = default_starts(targets, voxel_nm, self.starts)
        runs, finals = run_bounded_starts(_contact_loss, start_list, log_box(None), voxel_nm,
                                          self.solver or stage1_solver(method), args, progress=progress,
                                          desc="stage 1 (contact)")
        losses = np.asarray([float(r.loss) if np.isfinite(r.loss) else np.inf for r in runs])
        if not np.any(np.isfinite(losses)):
            raise ValueError("stage 1 (contact) failed: every start ended with a non-finite loss")
        best = _best_fit(runs, finals, losses, targets, voxel_nm)
        values = finals[best].copy()
        if values[1] > values[2]:  # the model is symmetric in (alpha1, alpha2): report alpha1 <= alpha2
            values[1], values[2] = values[2], values[1]
        fitted = np.asarray(model_densities(jnp.asarray(values), voxel_nm), dtype=float)
        y_fit = np.asarray(model_contact(jnp.asarray(values), jnp.asarray(cd.r_nm), voxel_nm), dtype=float)
        return stage1_result(
            runs, finals, best, values, targets, voxel_nm, losses, loss=float(losses[best]),
            residuals={"V": float((fitted[0] - targets.V) / targets.V),
                       "y_rms": float(np.sqrt(np.mean(((y_fit - cd.y) / cd.y) ** 2)))},
            weight_nm=float(voxel_nm), starts=tuple(start_list), term_weights=(V_WEIGHT, 0.0, 0.0, 0.0),
            bounds={k: tuple(float(b) for b in v) for k, v in DEFAULT_BOUNDS.items()}, descriptor="contact",
            contact={**cd.to_dict(), "y_fit": y_fit.tolist()},
        )

    fit_image = fit  # the pipeline's entry point (the same for Eq17)


def _best_fit(runs, finals, losses, targets, voxel_nm) -> int:
    """The lowest-loss run that is a fit (converged, off the box edges, sane), else the lowest-loss run.

    The contact loss has a second family of minima at the lower edge of the shape box (half-axis
    spreads of 100-300 %) that can undercut the interior minimum (docs/calibration.md)."""
    fits = [i for i in range(len(runs)) if np.isfinite(losses[i]) and runs[i].converged
            and not sanity(runs[i].x, finals[i], np.asarray(model_densities(jnp.asarray(finals[i]), voxel_nm)),
                           targets, voxel_nm)]
    return min(fits, key=lambda i: losses[i]) if fits else int(np.nanargmin(losses))


def fit_graphite_contact(labels, voxel_nm: float, *, method: "str | Solver" = "lbfgs", starts: int = 4,
                         r_min_vox: int = R_MIN_VOX, progress: bool = False, **optimizer_options) -> Stage1Result:
    """Stage 1 by ``V`` and the contact distribution: ``Contact(starts, r_min_vox).fit(labels, voxel_nm, method)``
    (:class:`Contact`); ``**optimizer_options`` over :func:`stage1_solver`'s defaults (e.g. ``max_steps``)."""
    solver = stage1_solver(method, **optimizer_options)
    return Contact(starts=starts, r_min_vox=r_min_vox, solver=solver).fit(labels, voxel_nm, progress=progress)
