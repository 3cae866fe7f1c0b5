"""Stage 1 (paper Section 3.2.1): graphite Boolean model (lambda_X, alpha1, alpha2, gamma) from
the intrinsic-volume densities (V, S, K, N) of the graphite phase, minimising Eq. 17.

Eq. 17 with weights ``w = (1, l, l^2, l^3)`` (``l = weight_nm``, 20 nm in the paper):

    L(p) = sum_i w_i^2 (D_i(p) - D_i_hat)^2,   D = (V, S, K, N) by Miles' formulas (Eqs. 10-13).

The optimiser minimises ``L(p) / L0`` with the constant ``L0 = sum_i (w_i D_i_hat)^2`` (the
loss of an empty model): a constant factor, so the minimiser is exactly Eq. 17's, while
the loss the optimiser sees is O(1) at the start whatever the units.

Coordinates (a bounded reparametrisation, :data:`DEFAULT_BOUNDS`): ``log(lambda_X /
lambda_start)`` is free; the gamma shapes ``k_i = alpha_i / voxel_nm`` and the rate ``gamma``
live in a box, ``log q = log lo + (log hi - log lo) * sigmoid(s)``. Default box: shapes
``k_i in [0.1, 2000]`` (coefficient of variation of a half-axis ``1/sqrt(k)`` between 2 % and
316 %; Table 2 at 20 nm has k = 10 and 197) and ``gamma in [0.01, 100]``. Without it, targets
that no Boolean model of spheroids matches (e.g. K, N of thin platelets measured at a coarse
voxel size, see docs/calibration.md) drive the fit to degenerate grains (shapes 1e11: half-axes
of zero spread, alpha ~ 4e12 nm), whose grain extent the simulator cannot handle.

A fit is reported as *not converged* (``converged=False`` with the reason in ``message``)
when the optimiser did not converge, when a bounded parameter ends within 0.1 % (in the
sigmoid) of its box edge, or when the fitted values are absurd: a mean half-axis below a
quarter voxel or above :data:`MAX_HALF_AXIS_VOX` voxels, or a fitted volume fraction more than
10 % (relative) off its target.

Starts (:func:`default_starts`) are moment-matched: for a few aspect ratios ``delta`` and
rates ``gamma`` the mean half-axes are chosen so that a deterministic spheroid with those
axes has the volume-to-surface ratio ``V_bar / S_bar = -ln(1 - V)(1 - V) / S`` implied by
Eqs. 10-11, and ``lambda_X = -ln(1 - V) / V_bar``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcba.calibrate.optimize import minimize
from jaxcba.model.params import CBAParams

GRAPHITE_FIELDS = ("lambda_x", "alpha1", "alpha2", "gamma")
TERMS = ("V", "S", "K", "N")
UNITS = {"V": "1", "S": "nm^-1", "K": "nm^-2", "N": "nm^-3"}

#: Table 1 of the paper, "tomographic image data" row (voxel 20 nm).
PAPER_TARGETS = {"V": 0.10550, "S": 1.4526e-3, "K": 4.2043e-7, "N": 1.6344e-9}

#: Box of the bounded coordinates: gamma shapes ``k_i = alpha_i / voxel_nm`` and the rate ``gamma``.
DEFAULT_BOUNDS = {"shape": (0.1, 2000.0), "gamma": (0.01, 100.0)}
#: A fit whose mean half-axis ``alpha_i / gamma`` exceeds this many voxels is reported as absurd.
MAX_HALF_AXIS_VOX = 1.0e4
_EDGE = 1e-3  # sigmoid fraction within which a bounded parameter counts as "at the box edge"

# placeholder values for the parameters stage 1 does not touch (any valid numbers)
_OTHER = {"mu": 0.0, "eta": 1.0, "theta": 1.0, "lambda_y": 1.0}


@dataclasses.dataclass(frozen=True)
class GraphiteTargets:
    """Intrinsic-volume densities of the graphite phase: V [1], S [nm^-1], K [nm^-2], N [nm^-3].

    K is the density of the integral of mean curvature (the descriptors layer's ``M_V``),
    N the Euler characteristic density (``chi_V``).
    """

    V: float
    S: float
    K: float
    N: float

    def __post_init__(self):
        vals = {t: getattr(self, t) for t in TERMS}
        for t, v in vals.items():
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"graphite target {t} must be a number, got {v!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"graphite target {t} = {v} is not finite; all four targets V, S, K, N must be finite numbers")
            object.__setattr__(self, t, v)
        if not 0.0 < self.V < 1.0:
            if self.V == 0.0:
                raise ValueError("graphite volume fraction V is 0: the volume has no graphite (label 2), so stage 1 "
                                 "(graphite Boolean model, Eq. 17) is impossible")
            raise ValueError(f"graphite target V = {self.V} must lie in (0, 1)")
        if not self.S > 0.0:
            raise ValueError(f"graphite target S = {self.S} nm^-1 must be > 0")

    @classmethod
    def paper(cls) -> "GraphiteTargets":
        """Table 1, image row."""
        return cls(**PAPER_TARGETS)

    @classmethod
    def from_labels(cls, labels, voxel_nm: float) -> "GraphiteTargets":
        """Densities of the graphite phase (label 2) of a labelled volume (descriptors layer)."""
        from jaxcba.calibrate._measure import graphite_densities_of_image

        return graphite_densities_of_image(labels, voxel_nm)

    def as_array(self) -> np.ndarray:
        return np.array([self.V, self.S, self.K, self.N], dtype=float)

    def to_dict(self) -> dict:
        return {t: float(getattr(self, t)) for t in TERMS}


@dataclasses.dataclass(frozen=True)
class Stage1Result:
    """Outcome of stage 1.

    Attributes:
        params: fitted ``{lambda_x [nm^-3], alpha1 [nm], alpha2 [nm], gamma [1]}``.
        loss: Eq. 17 at ``params`` (unscaled, the paper's units).
        residuals: per term ``w_i (D_i - D_i_hat)`` (their squares sum to ``loss``).
        fitted: Miles' densities ``(V, S, K, N)`` of ``params``.
        targets: the targets.
        weight_nm: the length ``l`` in Eq. 17's weights.
        voxel_nm: voxel size of the gamma half-axis convention.
        runs: one :class:`OptimResult` per start (``x`` in log coordinates relative to the start).
        starts: the start parameters, one dict per run.
        run_params: the final parameters of every run (dicts like ``params``).
        term_weights: extra multipliers of the four Eq. 17 terms (1 = the paper's Eq. 17).
        bounds: the box of the bounded coordinates (:data:`DEFAULT_BOUNDS`).
        best_run: index of the run with the lowest loss.
        n_reaching_best: runs whose loss is within 1 % (relative) of the best.
        converged: the best run's optimiser converged, no bounded parameter is at its box
            edge and the values are not absurd (module docstring).
        message: the best run's stopping message, plus the reason when not converged.
        descriptor: ``"eq17"`` (this module) or ``"contact"`` (:mod:`jaxcba.calibrate.stage1_contact`).
        contact: ``"contact"`` only: measured and fitted ``y(r)``.
    """

    params: dict
    loss: float
    residuals: dict
    fitted: dict
    targets: GraphiteTargets
    weight_nm: float
    voxel_nm: float
    runs: tuple
    starts: tuple
    run_params: tuple
    term_weights: tuple
    bounds: dict
    best_run: int
    n_reaching_best: int
    converged: bool
    message: str
    descriptor: str = "eq17"
    contact: dict | None = None

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.runs))

    def to_dict(self) -> dict:
        return {
            "params": dict(self.params),
            "loss": self.loss,
            "residuals": dict(self.residuals),
            "fitted": dict(self.fitted),
            "targets": self.targets.to_dict(),
            "weight_nm": self.weight_nm,
            "voxel_nm": self.voxel_nm,
            "term_weights": list(self.term_weights),
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "best_run": self.best_run,
            "n_reaching_best": self.n_reaching_best,
            "converged": self.converged,
            "message": self.message,
            "descriptor": self.descriptor,
            "contact": self.contact,
            "seconds": self.seconds,
            "starts": [dict(s) for s in self.starts],
            "runs": [
                {k: v for k, v in r.to_dict().items() if k not in ("loss_history", "x")} for r in self.runs
            ],
        }


# ---------------------------------------------------------------------------- the loss
def graphite_params(lambda_x, alpha1, alpha2, gamma) -> CBAParams:
    """A :class:`CBAParams` with the four graphite fields set (the others are placeholders)."""
    return CBAParams(lambda_x=lambda_x, alpha1=alpha1, alpha2=alpha2, gamma=gamma, **_OTHER)


def model_densities(values, voxel_nm) -> jax.Array:
    """Miles' ``(V, S, K, N)`` (Eqs. 10-13) of ``values = (lambda_x, alpha1, alpha2, gamma)``, shape (4,)."""
    from jaxcba.theory import graphite_densities

    d = graphite_densities(graphite_params(*[values[i] for i in range(4)]), voxel_nm)
    return jnp.stack([d.V, d.S, d.K, d.N])


def eq17_weights(weight_nm: float) -> np.ndarray:
    """``(1, l, l^2, l^3)``: Eq. 17 weighs the squared residuals by their squares."""
    return np.array([1.0, weight_nm, weight_nm**2, weight_nm**3], dtype=float)


def eq17_loss(params: CBAParams | dict, targets: GraphiteTargets, voxel_nm: float = 20.0,
              weight_nm: float | None = None) -> float:
    """Eq. 17 of the paper for ``params`` (only the graphite fields are used)."""
    values = _graphite_values(params)
    w = eq17_weights(voxel_nm if weight_nm is None else weight_nm)
    d = np.asarray(model_densities(jnp.asarray(values), voxel_nm))
    return float(np.sum((w * (d - targets.as_array())) ** 2))


def _from_coords(x, lam0, box, voxel_nm):
    """Bounded coordinates ``x = (log(lambda/lam0), s_k1, s_k2, s_gamma)`` -> ``(lambda, alpha1, alpha2, gamma)``."""
    lo, hi = box[:, 0], box[:, 1]  # log bounds of (k1, k2, gamma)
    q = jnp.exp(lo + (hi - lo) * jax.nn.sigmoid(x[1:]))
    return jnp.stack([lam0 * jnp.exp(x[0]), q[0] * voxel_nm, q[1] * voxel_nm, q[2]])


def _to_coords(values, box, voxel_nm) -> np.ndarray:
    """Inverse of :func:`_from_coords` at ``lam0 = lambda``; values outside the box are clipped into it."""
    lam, a1, a2, g = (float(v) for v in values)
    q = np.log(np.array([a1 / voxel_nm, a2 / voxel_nm, g]))
    lo, hi = box[:, 0], box[:, 1]
    f = np.clip((q - lo) / (hi - lo), 1e-2, 1 - 1e-2)
    return np.concatenate([[0.0], np.log(f / (1 - f))])


def _box(bounds) -> np.ndarray:
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
    """Eq. 17 / L0 in the bounded coordinates (:func:`_from_coords`)."""
    values = _from_coords(x, lam0, box, voxel_nm)
    d = model_densities(values, voxel_nm)
    r = weights * (d - target)
    scale = jnp.sum((weights * target) ** 2)
    return jnp.sum(r**2) / scale


# ------------------------------------------------------------------------------ starts
def default_starts(targets: GraphiteTargets, voxel_nm: float = 20.0, n: int = 4) -> list[dict]:
    """``n`` moment-matched starting points (module docstring), of different shapes.

    The ``(delta, gamma)`` pairs cycle through ``(0.05, 2), (0.2, 1), (0.5, 4), (0.1, 8),
    (0.3, 0.5), (0.02, 3)``; ``alpha_i = gamma * mean half-axis_i`` [nm].
    """
    from jaxcba.theory.spheroid import spheroid_functionals

    pairs = [(0.05, 2.0), (0.2, 1.0), (0.5, 4.0), (0.1, 8.0), (0.3, 0.5), (0.02, 3.0)]
    if not 1 <= n <= len(pairs):
        raise ValueError(f"n (number of default starts) must be in 1..{len(pairs)}, got {n}")
    nu = -math.log1p(-targets.V)  # lambda * V_bar
    ratio = nu * (1.0 - targets.V) / targets.S  # V_bar / S_bar [nm]
    starts = []
    for delta, gamma in pairs[:n]:
        vol, surf, _ = (float(v) for v in spheroid_functionals(jnp.asarray(delta), jnp.asarray(1.0)))
        c = ratio * surf / vol  # major half-axis [nm]
        a = delta * c
        v_bar = vol * c**3
        starts.append({"lambda_x": nu / v_bar, "alpha1": gamma * a, "alpha2": gamma * c, "gamma": gamma})
    return starts


# ------------------------------------------------------------------------------ fitting
def fit_graphite(
    targets: GraphiteTargets | dict | Sequence[float],
    voxel_nm: float = 20.0,
    *,
    method: str = "lbfgs",
    starts: int | Sequence[dict | CBAParams] = 4,
    weight_nm: float | None = None,
    term_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    bounds: dict | None = None,
    max_steps: int = 1000,
    progress: bool = False,
    **optimizer_options: Any,
) -> Stage1Result:
    """Fit (lambda_X, alpha1, alpha2, gamma) to graphite densities by minimising Eq. 17.

    Args:
        targets: ``GraphiteTargets`` or a dict/sequence ``(V, S [nm^-1], K [nm^-2], N [nm^-3])``.
        voxel_nm: voxel side [nm] of the half-axis convention (the image's voxel size).
        method: ``"lbfgs"``, ``"adam"`` or ``"nelder-mead"`` (see :func:`minimize`).
        starts: number of default starts (:func:`default_starts`) or explicit start
            parameters (dicts with the four graphite keys, or ``CBAParams``).
        weight_nm: ``l`` in Eq. 17's weights ``(1, l, l^2, l^3)``; default ``voxel_nm``
            (the paper: 20 nm).
        term_weights: extra multipliers ``(m_V, m_S, m_K, m_N)`` of the residuals (default
            ones: Eq. 17). ``(1, 1, 0, 0)`` fits V and S only (underdetermined: the shapes
            then stay near the start's); ``0 < m < 1`` weighs down K and N measured at coarse
            voxels (docs/calibration.md). ``loss`` and ``residuals`` include the multipliers.
        bounds: box of the bounded coordinates, e.g. ``{"shape": (0.1, 2000), "gamma":
            (0.01, 100)}`` (:data:`DEFAULT_BOUNDS`).
        max_steps: optimiser step budget per start.
        progress: tqdm bar per start on stderr.
        **optimizer_options: passed to :func:`minimize` (``gtol``, ``ftol``, ...).

    Returns:
        :class:`Stage1Result` of the best start (the lowest Eq. 17 loss; among runs within
        1 % of it, a converged one); all runs kept.
    """
    targets = _as_targets(targets)
    voxel_nm = _positive(voxel_nm, "voxel_nm")
    weight_nm = voxel_nm if weight_nm is None else _positive(weight_nm, "weight_nm")
    if isinstance(starts, int):
        start_list = default_starts(targets, voxel_nm, starts)
    else:
        start_list = [dict(zip(GRAPHITE_FIELDS, _graphite_values(s))) for s in starts]
        if not start_list:
            raise ValueError("starts is empty: give at least one start")
    opts = {"gtol": 1e-9, "ftol": 1e-10}
    if method == "adam":
        opts.update(learning_rate=0.02, ftol=1e-10)
    opts.update(optimizer_options)
    tw = np.asarray(term_weights, dtype=float).ravel()
    if tw.shape != (4,) or not np.all(np.isfinite(tw)) or np.any(tw < 0) or not (tw[0] > 0 and tw[1] > 0):
        raise ValueError(f"term_weights must be 4 finite numbers >= 0 with the V and S weights > 0, got {term_weights}")
    w_np = eq17_weights(weight_nm) * tw
    box_np = _box(bounds)
    weights = jnp.asarray(w_np)
    target = jnp.asarray(targets.as_array())
    vox = jnp.asarray(float(voxel_nm))
    runs, finals = run_starts(_scaled_loss, start_list, box_np, voxel_nm, method, (target, weights, vox),
                              max_steps=max_steps, progress=progress, desc="stage 1", **opts)
    losses = [_weighted_loss(values, targets, voxel_nm, w_np) for values in finals]
    losses_arr = np.asarray(losses)
    losses_arr = np.where(np.isfinite(losses_arr), losses_arr, np.inf)
    best = int(np.argmin(losses_arr))
    if not np.isfinite(losses_arr[best]):
        raise ValueError("stage 1 failed: every start ended with a non-finite Eq. 17 loss")
    # equally good runs (loss within 1 %): prefer one whose optimiser converged (a flat direction,
    # e.g. gamma when K and N carry little information, can exhaust one run's budget)
    tied = [i for i in np.argsort(losses_arr) if losses_arr[i] <= losses_arr[best] * (1 + 1e-2) and runs[i].converged]
    if tied and not runs[best].converged:
        best = int(tied[0])
    values = finals[best]
    fitted = np.asarray(model_densities(jnp.asarray(values), voxel_nm), dtype=float)
    resid = w_np * (fitted - targets.as_array())
    best_loss = float(np.sum(resid**2))
    n_best = int(np.sum(losses_arr <= best_loss * (1 + 1e-2) + 1e-300))
    problems = _sanity(runs[best].x, values, fitted, targets, voxel_nm)
    converged = bool(runs[best].converged) and not problems
    message = runs[best].message + ("" if not problems else "; not a fit: " + "; ".join(problems))
    return Stage1Result(
        params=dict(zip(GRAPHITE_FIELDS, map(float, values))),
        loss=best_loss,
        residuals=dict(zip(TERMS, map(float, resid))),
        fitted=dict(zip(TERMS, map(float, fitted))),
        targets=targets,
        weight_nm=float(weight_nm),
        voxel_nm=float(voxel_nm),
        runs=tuple(runs),
        starts=tuple(start_list),
        run_params=tuple(dict(zip(GRAPHITE_FIELDS, map(float, v))) for v in finals),
        term_weights=tuple(float(v) for v in tw),
        bounds={k: tuple(float(b) for b in v) for k, v in (DEFAULT_BOUNDS | dict(bounds or {})).items()},
        best_run=best,
        n_reaching_best=n_best,
        converged=converged,
        message=message,
    )


def run_starts(loss_fn, start_list, box_np, voxel_nm: float, method: str, args_tail: tuple, *,
               max_steps: int, progress: bool, desc: str, **opts) -> tuple[list, list]:
    """One :func:`minimize` run per start in the bounded coordinates (:func:`_from_coords`).

    ``loss_fn(x, lam0, box, *args_tail)``; returns the runs and each run's final
    ``(lambda_x, alpha1, alpha2, gamma)`` as float arrays.
    """
    box = jnp.asarray(box_np)
    runs, finals = [], []
    for i, s in enumerate(start_list):
        start = np.asarray(_graphite_values(s), dtype=float)
        if not (np.all(start > 0) and np.all(np.isfinite(start))):
            raise ValueError(f"start {i} must have four finite positive graphite parameters, got {s}")
        lam0 = jnp.asarray(start[0])
        res = minimize(loss_fn, jnp.asarray(_to_coords(start, box_np, voxel_nm)), method, args=(lam0, box) + args_tail,
                       max_steps=max_steps, progress=progress, desc=f"{desc} start {i + 1}/{len(start_list)}", **opts)
        runs.append(res)
        finals.append(np.asarray(_from_coords(res.x, lam0, box, voxel_nm), dtype=float))
    return runs, finals


def _sanity(x, values, fitted, targets, voxel_nm) -> list[str]:
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


def _weighted_loss(values, targets, voxel_nm, w) -> float:
    d = np.asarray(model_densities(jnp.asarray(values), voxel_nm), dtype=float)
    return float(np.sum((w * (d - targets.as_array())) ** 2))


def _eq17_from_values(values, targets, voxel_nm, weight_nm) -> float:
    d = np.asarray(model_densities(jnp.asarray(values), voxel_nm), dtype=float)
    return float(np.sum((eq17_weights(weight_nm) * (d - targets.as_array())) ** 2))


def _graphite_values(p) -> list[float]:
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


def _as_targets(t) -> GraphiteTargets:
    if isinstance(t, GraphiteTargets):
        return t
    if isinstance(t, dict):
        missing = [k for k in TERMS if k not in t]
        if missing:
            raise ValueError(f"graphite targets need keys V, S, K, N; missing {missing}")
        return GraphiteTargets(**{k: t[k] for k in TERMS})
    vals = list(np.asarray(t, dtype=float).ravel())
    if len(vals) != 4:
        raise ValueError(f"graphite targets must be 4 numbers (V, S, K, N), got {len(vals)}")
    return GraphiteTargets(*vals)


def _positive(x, name) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x}")
    return x


__all__ = [
    "GraphiteTargets", "Stage1Result", "fit_graphite", "eq17_loss", "eq17_weights", "default_starts",
    "model_densities", "graphite_params", "PAPER_TARGETS", "DEFAULT_BOUNDS", "MAX_HALF_AXIS_VOX",
]
