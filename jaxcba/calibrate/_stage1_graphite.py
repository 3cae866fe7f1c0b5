"""Stage 1 (paper Section 3.2.1): the graphite Boolean model (lambda_X, alpha1, alpha2, gamma) from
the intrinsic-volume densities (V, S, K, N) of the graphite phase, minimising Eq. 17.

Eq. 17 with weights ``w = (1, l, l^2, l^3)`` (``l = weight_nm``, 20 nm in the paper):

    L(p) = sum_i w_i^2 (D_i(p) - D_i_hat)^2,   D = (V, S, K, N) by Miles' formulas (Eqs. 10-13).

The optimiser minimises ``L(p) / L0`` with the constant ``L0 = sum_i (w_i D_i_hat)^2`` (the loss
of an empty model), so its loss is O(1) whatever the units and the minimiser is Eq. 17's.

Coordinates (:func:`from_coords`): ``x = (log(lambda_X / lambda_start), s_k1, s_k2, s_gamma)``;
the gamma shapes ``k_i = alpha_i / voxel_nm`` and the rate ``gamma`` live in a box,
``log q = log lo + (log hi - log lo) * sigmoid(s)`` (:data:`DEFAULT_BOUNDS`: ``k_i in [0.1, 2000]``,
``gamma in [0.01, 100]``).

A fit is *not converged* (``converged=False``, the reason in ``message``) when the optimiser did
not converge, when a bounded parameter ends within 0.1 % (in the sigmoid) of its box edge, or
when the values are absurd: a mean half-axis below a quarter voxel or above
:data:`MAX_HALF_AXIS_VOX` voxels, or a fitted volume fraction more than 10 % (relative) off its
target (:func:`sanity`).

Starts (:func:`default_starts`) are moment-matched: for a few aspect ratios ``delta`` and rates
``gamma`` the mean half-axes make a deterministic spheroid with the volume-to-surface ratio
``V_bar / S_bar = -ln(1 - V)(1 - V) / S`` implied by Eqs. 10-11, and ``lambda_X = -ln(1 - V) / V_bar``.
Why the box and what the K, N of coarse images do to this stage: docs/calibration.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba._checks import check_positive, check_voxel_nm
from jaxcba.calibrate._optimize import OptimResult, Solver, make_solver, run_starts
from jaxcba.calibrate._result import Result, field
from jaxcba.calibrate._targets import TERMS, GraphiteTargets, as_targets
from jaxcba.model.params import CBAParams
from jaxcba.theory import graphite_densities
from jaxcba.theory.spheroid import spheroid_functionals

GRAPHITE_FIELDS = ("lambda_x", "alpha1", "alpha2", "gamma")

#: Box of the bounded coordinates: gamma shapes ``k_i = alpha_i / voxel_nm`` and the rate ``gamma``.
DEFAULT_BOUNDS = {"shape": (0.1, 2000.0), "gamma": (0.01, 100.0)}
#: A fit whose mean half-axis ``alpha_i / gamma`` exceeds this many voxels is reported as absurd.
MAX_HALF_AXIS_VOX = 1.0e4
_EDGE = 1e-3  # sigmoid fraction within which a bounded parameter counts as "at the box edge"

# placeholder values for the parameters stage 1 does not touch (any valid numbers)
_OTHER = {"mu": 0.0, "eta": 1.0, "theta": 1.0, "lambda_y": 1.0}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage1Result(Result):
    """Outcome of stage 1 (Eq. 17 or the contact distribution).

    Attributes:
        params: fitted ``{lambda_x [nm^-3], alpha1 [nm], alpha2 [nm], gamma [1]}``.
        loss: the stage's loss at ``params`` (Eq. 17 unscaled, in the paper's units, with the
            term multipliers; or the contact loss).
        residuals: Eq. 17: per term ``w_i (D_i - D_i_hat)`` (their squares sum to ``loss``);
            contact: ``{"V": relative V residual, "y_rms": rms relative y(r) residual}``.
        fitted: Miles' densities ``(V, S, K, N)`` of ``params``; ``targets``: the image's.
        weight_nm: the length ``l`` of Eq. 17's weights; ``voxel_nm``: the half-axis convention's voxel.
        term_weights: multipliers of the four Eq. 17 terms (1 = the paper's Eq. 17).
        bounds: the box of the bounded coordinates (:data:`DEFAULT_BOUNDS`).
        best_run: index of the reported run; ``n_reaching_best``: runs within 1 % of its loss.
        converged, message: the reported run's optimiser state and the sanity checks (module docstring).
        descriptor: ``"eq17"`` or ``"contact"``; ``contact``: measured and fitted ``y(r)`` (contact only).
        starts: the start parameters; ``runs``: one :class:`OptimResult` per start (``x`` in the
            bounded coordinates; JSON without ``x`` and ``loss_history``); ``run_params``: each
            run's final parameters (not in JSON).
        seconds: the runs' wall time [s].
    """

    _json_order = ("params", "loss", "residuals", "fitted", "targets", "weight_nm", "voxel_nm", "term_weights",
                   "bounds", "best_run", "n_reaching_best", "converged", "message", "descriptor", "contact",
                   "seconds", "starts", "runs")

    params: dict[str, float]
    loss: float
    residuals: dict[str, float]
    fitted: dict[str, float]
    targets: GraphiteTargets
    weight_nm: float
    voxel_nm: float
    term_weights: tuple[float, ...]
    bounds: dict[str, tuple[float, float]]
    best_run: int
    n_reaching_best: int
    converged: bool
    message: str
    descriptor: str = "eq17"
    contact: dict | None = None
    starts: tuple[dict, ...] = ()
    runs: tuple[OptimResult, ...] = field((), omit=("loss_history", "x"))
    run_params: tuple[dict, ...] = field((), json=False)

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.runs))


# ---------------------------------------------------------------------------- the loss
def graphite_params(lambda_x, alpha1, alpha2, gamma) -> CBAParams:
    """A :class:`CBAParams` with the four graphite fields set (the others are placeholders)."""
    return CBAParams(lambda_x=lambda_x, alpha1=alpha1, alpha2=alpha2, gamma=gamma, **_OTHER)


def model_densities(values, voxel_nm) -> jax.Array:
    """Miles' ``(V, S, K, N)`` (Eqs. 10-13) of ``values = (lambda_x, alpha1, alpha2, gamma)``, shape (4,)."""
    d = graphite_densities(graphite_params(*[values[i] for i in range(4)]), voxel_nm)
    return jnp.stack([d.V, d.S, d.K, d.N])


def eq17_weights(weight_nm: float) -> np.ndarray:
    """``(1, l, l^2, l^3)``: Eq. 17 weighs the squared residuals by their squares."""
    return np.array([1.0, weight_nm, weight_nm**2, weight_nm**3], dtype=float)


def eq17_loss(params: CBAParams | dict, targets: GraphiteTargets, voxel_nm: float = 20.0,
              weight_nm: float | None = None) -> float:
    """Eq. 17 of the paper for ``params`` (only the graphite fields are used)."""
    w = eq17_weights(voxel_nm if weight_nm is None else weight_nm)
    return _weighted_loss(graphite_values(params), targets, voxel_nm, w)


def _weighted_loss(values, targets, voxel_nm, w) -> float:
    d = np.asarray(model_densities(jnp.asarray(values), voxel_nm), dtype=float)
    return float(np.sum((w * (d - targets.as_array())) ** 2))


def from_coords(x, lam0, box, voxel_nm):
    """Bounded coordinates ``x`` (4,) -> ``(lambda [nm^-3], alpha1 [nm], alpha2 [nm], gamma)`` (module docstring);
    ``box`` (3, 2): log bounds of ``(k1, k2, gamma)``."""
    lo, hi = box[:, 0], box[:, 1]
    q = jnp.exp(lo + (hi - lo) * jax.nn.sigmoid(x[1:]))
    return jnp.stack([lam0 * jnp.exp(x[0]), q[0] * voxel_nm, q[1] * voxel_nm, q[2]])


def to_coords(values, box, voxel_nm) -> np.ndarray:
    """Inverse of :func:`from_coords` at ``lam0 = lambda``; values outside the box are clipped into it."""
    lam, a1, a2, g = (float(v) for v in values)
    q = np.log(np.array([a1 / voxel_nm, a2 / voxel_nm, g]))
    lo, hi = box[:, 0], box[:, 1]
    f = np.clip((q - lo) / (hi - lo), 1e-2, 1 - 1e-2)
    return np.concatenate([[0.0], np.log(f / (1 - f))])


def log_box(bounds) -> np.ndarray:
    """``bounds`` (keys ``shape``, ``gamma``; missing ones from :data:`DEFAULT_BOUNDS`) -> log bounds (3, 2)."""
    b = dict(DEFAULT_BOUNDS)
    b.update(bounds or {})
    unknown = set(b) - set(DEFAULT_BOUNDS)
    if unknown:
        raise ValueError(f"bounds keys must be among {sorted(DEFAULT_BOUNDS)}, got {sorted(unknown)}")
    rows = []
    for key in ("shape", "shape", "gamma"):
        lo, hi = (float(v) for v in b[key])
        if not (0 < lo < hi and math.isfinite(hi)):
            raise ValueError(f"bounds[{key!r}] must be (lo, hi) with 0 < lo < hi < inf, got {b[key]}")
        rows.append((math.log(lo), math.log(hi)))
    return np.array(rows)


def _scaled_loss(x, lam0, box, target, weights, voxel_nm):
    """Eq. 17 / L0 in the bounded coordinates (:func:`from_coords`)."""
    d = model_densities(from_coords(x, lam0, box, voxel_nm), voxel_nm)
    return jnp.sum((weights * (d - target)) ** 2) / jnp.sum((weights * target) ** 2)


# ------------------------------------------------------------------------------ starts
def default_starts(targets: GraphiteTargets, voxel_nm: float = 20.0, n: int = 4) -> list[dict]:
    """``n`` moment-matched starting points (module docstring), of different shapes.

    The ``(delta, gamma)`` pairs cycle through ``(0.05, 2), (0.2, 1), (0.5, 4), (0.1, 8),
    (0.3, 0.5), (0.02, 3)``; ``alpha_i = gamma * mean half-axis_i`` [nm].
    """
    pairs = [(0.05, 2.0), (0.2, 1.0), (0.5, 4.0), (0.1, 8.0), (0.3, 0.5), (0.02, 3.0)]
    if not 1 <= n <= len(pairs):
        raise ValueError(f"n (number of default starts) must be in 1..{len(pairs)}, got {n}")
    nu = -math.log1p(-targets.V)  # lambda * V_bar
    ratio = nu * (1.0 - targets.V) / targets.S  # V_bar / S_bar [nm]
    starts = []
    for delta, gamma in pairs[:n]:
        vol, surf, _ = (float(v) for v in spheroid_functionals(jnp.asarray(delta), jnp.asarray(1.0)))
        c = ratio * surf / vol  # major half-axis [nm]
        v_bar = vol * c**3
        starts.append({"lambda_x": nu / v_bar, "alpha1": gamma * delta * c, "alpha2": gamma * c, "gamma": gamma})
    return starts


def stage1_solver(method: "str | Solver", adam_rate: float | None = None, **options) -> Solver:
    """Stage 1's optimiser: ``max_steps=1000, gtol=1e-9, ftol=1e-10`` (and Adam's step ``adam_rate``
    if given) unless ``options`` say otherwise; a solver object is used as is."""
    if not isinstance(method, str):
        return make_solver(method, **options)
    defaults = {"max_steps": 1000, "gtol": 1e-9, "ftol": 1e-10}
    if method == "adam" and adam_rate is not None:
        defaults["learning_rate"] = adam_rate
    return make_solver(method, **(defaults | options))


def run_bounded_starts(loss_fn, start_list, box_np, voxel_nm: float, solver: Solver, args_tail: tuple, *,
                       progress: bool, desc: str) -> tuple[list, list]:
    """One optimiser run per start in the bounded coordinates (:func:`from_coords`).

    ``loss_fn(x, lam0, box, *args_tail)``; returns the runs and each run's final
    ``(lambda_x, alpha1, alpha2, gamma)`` as float arrays.
    """
    box = jnp.asarray(box_np)
    starts = [np.asarray(graphite_values(s), dtype=float) for s in start_list]
    for i, start in enumerate(starts):
        if not (np.all(start > 0) and np.all(np.isfinite(start))):
            raise ValueError(f"start {i} must have four finite positive graphite parameters, got {start_list[i]}")
    x0s = [jnp.asarray(to_coords(s, box_np, voxel_nm)) for s in starts]
    runs = run_starts(loss_fn, x0s, solver, lambda i: (jnp.asarray(starts[i][0]), box) + args_tail,
                      progress=progress, desc=f"{desc} start")
    finals = [np.asarray(from_coords(r.x, jnp.asarray(s[0]), box, voxel_nm), dtype=float) for r, s in zip(runs, starts)]
    return runs, finals


def sanity(x, values, fitted, targets, voxel_nm) -> list[str]:
    """Reasons why a stage 1 optimum is not a fit (box edge, absurd values); empty if none."""
    out = []
    frac = 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)[1:]))
    for name, f in zip(("shape k1 = alpha1/voxel_nm", "shape k2 = alpha2/voxel_nm", "rate gamma"), frac):
        if f < _EDGE or f > 1 - _EDGE:
            out.append(f"{name} at the {'lower' if f < 0.5 else 'upper'} edge of its box (bounds)")
    lam, a1, a2, g = values
    for name, a in (("alpha1/gamma", a1 / g), ("alpha2/gamma", a2 / g)):
        if not (0.25 * voxel_nm <= a <= MAX_HALF_AXIS_VOX * voxel_nm):
            out.append(f"mean half-axis {name} = {a:.4g} nm is absurd at voxel {voxel_nm:g} nm "
                       f"(allowed {0.25 * voxel_nm:g} nm to {MAX_HALF_AXIS_VOX:g} voxels)")
    if not np.all(np.isfinite(values)):
        out.append("non-finite parameters")
    elif abs(fitted[0] / targets.V - 1.0) > 0.1:
        out.append(f"fitted volume fraction {fitted[0]:.4g} is > 10 % off the target {targets.V:.4g}")
    return out


def stage1_result(runs, finals, best: int, values, targets, voxel_nm: float, losses, **fields) -> Stage1Result:
    """The :class:`Stage1Result` of run ``best`` reported at ``values`` (the sanity checks at run ``best``'s end)."""
    fitted = np.asarray(model_densities(jnp.asarray(values), voxel_nm), dtype=float)
    problems = sanity(runs[best].x, finals[best], fitted, targets, voxel_nm)
    return Stage1Result(
        params=dict(zip(GRAPHITE_FIELDS, map(float, values))), fitted=dict(zip(TERMS, map(float, fitted))),
        targets=targets, voxel_nm=float(voxel_nm), runs=tuple(runs),
        run_params=tuple(dict(zip(GRAPHITE_FIELDS, map(float, v))) for v in finals), best_run=best,
        n_reaching_best=int(np.sum(np.asarray(losses) <= fields["loss"] * (1 + 1e-2) + 1e-300)),
        converged=bool(runs[best].converged) and not problems,
        message=runs[best].message + ("" if not problems else "; not a fit: " + "; ".join(problems)), **fields,
    )


# ------------------------------------------------------------------------------ fitting
@dataclasses.dataclass(frozen=True)
class Eq17:
    """Stage 1 by Eq. 17 on the graphite's (V, S, K, N) (the paper's; pipeline ``stage1=Eq17(...)``).

    Attributes:
        starts: number of default starts (:func:`default_starts`, 1..6) or explicit start
            parameters (dicts with the four graphite keys, or ``CBAParams``).
        weight_nm: ``l`` of Eq. 17's weights ``(1, l, l^2, l^3)``; default the voxel side.
        term_weights: multipliers ``(m_V, m_S, m_K, m_N)`` of the residuals (ones: Eq. 17;
            ``m_V, m_S > 0``); ``bounds``: the box of the bounded coordinates (:data:`DEFAULT_BOUNDS`).
        solver: the optimiser (default :func:`stage1_solver` of the pipeline's ``method``).
        targets: given targets (:class:`GraphiteTargets`, dict or 4 numbers) instead of the
            image's (:meth:`fit_image`).
    """

    starts: int | tuple = 4
    weight_nm: float | None = None
    term_weights: tuple = (1.0, 1.0, 1.0, 1.0)
    bounds: dict | None = None
    solver: Solver | None = None
    targets: GraphiteTargets | None = None

    def __post_init__(self):
        if self.targets is not None:
            object.__setattr__(self, "targets", as_targets(self.targets))
        tw = np.asarray(self.term_weights, dtype=float).ravel()
        if tw.shape != (4,) or not np.all(np.isfinite(tw)) or np.any(tw < 0) or not (tw[0] > 0 and tw[1] > 0):
            raise ValueError(f"term_weights must be 4 finite numbers >= 0 with the V and S weights > 0, "
                             f"got {self.term_weights}")
        object.__setattr__(self, "term_weights", tuple(float(v) for v in tw))
        log_box(self.bounds)
        if self.weight_nm is not None:
            check_positive(self.weight_nm, "weight_nm", unit="nm")
        if not isinstance(self.starts, int):
            if not len(self.starts):
                raise ValueError("starts is empty: give at least one start")
            object.__setattr__(self, "starts", tuple(self.starts))

    def fit_image(self, labels, voxel_nm: float, method: "str | Solver" = "lbfgs",
                  progress: bool = False) -> Stage1Result:
        """Fit to ``targets``, or to the (V, S, K, N) of the image's graphite when none were given."""
        targets = self.targets if self.targets is not None else GraphiteTargets.from_labels(labels, voxel_nm)
        return self.fit(targets, voxel_nm, method, progress)

    def fit(self, targets, voxel_nm: float, method: "str | Solver" = "lbfgs", progress: bool = False) -> Stage1Result:
        """Fit ``(lambda_X, alpha1, alpha2, gamma)`` to ``targets`` (:class:`GraphiteTargets`, dict or 4 numbers)."""
        targets = as_targets(targets)
        voxel_nm = check_voxel_nm(voxel_nm)
        weight_nm = voxel_nm if self.weight_nm is None else float(self.weight_nm)
        start_list = (default_starts(targets, voxel_nm, self.starts) if isinstance(self.starts, int)
                      else [dict(zip(GRAPHITE_FIELDS, graphite_values(s))) for s in self.starts])
        solver = self.solver or stage1_solver(method, adam_rate=0.02)
        w_np = eq17_weights(weight_nm) * np.asarray(self.term_weights)
        args = (jnp.asarray(targets.as_array()), jnp.asarray(w_np), jnp.asarray(voxel_nm))
        runs, finals = run_bounded_starts(_scaled_loss, start_list, log_box(self.bounds), voxel_nm, solver, args,
                                          progress=progress, desc="stage 1")
        losses = np.asarray([_weighted_loss(v, targets, voxel_nm, w_np) for v in finals])
        losses = np.where(np.isfinite(losses), losses, np.inf)
        best = int(np.argmin(losses))
        if not np.isfinite(losses[best]):
            raise ValueError("stage 1 failed: every start ended with a non-finite Eq. 17 loss")
        # equally good runs (loss within 1 %): prefer one whose optimiser converged (a flat direction,
        # e.g. gamma when K and N carry little information, can exhaust one run's budget)
        tied = [i for i in np.argsort(losses) if losses[i] <= losses[best] * (1 + 1e-2) and runs[i].converged]
        if tied and not runs[best].converged:
            best = int(tied[0])
        fitted = np.asarray(model_densities(jnp.asarray(finals[best]), voxel_nm), dtype=float)
        resid = w_np * (fitted - targets.as_array())
        return stage1_result(
            runs, finals, best, finals[best], targets, voxel_nm, losses, loss=float(np.sum(resid**2)),
            residuals=dict(zip(TERMS, map(float, resid))), weight_nm=float(weight_nm), starts=tuple(start_list),
            term_weights=self.term_weights, bounds=_bounds_dict(self.bounds),
        )


def _bounds_dict(bounds) -> dict:
    return {k: tuple(float(b) for b in v) for k, v in (DEFAULT_BOUNDS | dict(bounds or {})).items()}


#: The fields of :class:`Eq17` that :func:`fit_graphite` takes as keywords.
_EQ17_KEYWORDS = ("weight_nm", "term_weights", "bounds")


def fit_graphite(targets: GraphiteTargets | dict | Sequence[float], voxel_nm: float = 20.0, *,
                 method: "str | Solver" = "lbfgs", starts: int | Sequence[dict | CBAParams] = 4,
                 progress: bool = False, **options) -> Stage1Result:
    """Fit (lambda_X, alpha1, alpha2, gamma) to graphite densities by minimising Eq. 17
    (``Eq17(starts, weight_nm, term_weights, bounds).fit(targets, voxel_nm, method)``, :class:`Eq17`).

    ``targets``: :class:`GraphiteTargets` or a dict/sequence ``(V, S [nm^-1], K [nm^-2], N [nm^-3])``;
    ``voxel_nm``: the half-axis convention's voxel [nm]; ``method``: a method name or solver object;
    ``**options``: the :class:`Eq17` fields ``weight_nm`` [nm], ``term_weights`` and ``bounds``, and
    solver options over :func:`stage1_solver`'s defaults (e.g. ``max_steps``).

    Returns the :class:`Stage1Result` of the best start (the lowest Eq. 17 loss; among runs within
    1 % of it, a converged one); all runs kept.
    """
    fields = {k: options.pop(k) for k in _EQ17_KEYWORDS if k in options}
    solver = stage1_solver(method, adam_rate=0.02, **options)
    return Eq17(starts=starts, solver=solver, **fields).fit(targets, voxel_nm, progress=progress)


def graphite_values(p) -> list[float]:
    """``(lambda_x, alpha1, alpha2, gamma)`` of a :class:`CBAParams`, a dict or 4 numbers."""
    if isinstance(p, CBAParams):
        return [float(getattr(p, k)) for k in GRAPHITE_FIELDS]
    if isinstance(p, dict):
        missing = [k for k in GRAPHITE_FIELDS if k not in p]
        if missing:
            raise ValueError(f"graphite parameters need keys {list(GRAPHITE_FIELDS)}; missing {missing}")
        return [float(p[k]) for k in GRAPHITE_FIELDS]
    vals = [float(v) for v in p]
    if len(vals) != 4:
        raise ValueError(f"expected 4 graphite parameters {GRAPHITE_FIELDS}, got {len(vals)}")
    return vals
