"""Uncertainty of a calibration: standard errors and 95 % intervals of the eight parameters and of
the derived quantities (V1, V2, V3, the solid fraction V, the mean half-axes alpha1/gamma and
alpha2/gamma [nm], 1/eta and 1/theta [nm]).

Two methods (docs/calibration.md, "Uncertainty"):

* **delta** (:func:`delta_uncertainty`, every calibration): the fitted parameters are functions
  of the image's descriptors ``d`` (stage 1: the graphite's ``(V, S, K, N)`` of Eq. 17 or ``V``
  and the contact distribution ``y(r)``; stage 2: ``q`` and ``C_G(h)``; stage 3: the pore CPSD,
  ``V`` and ``V1``). Their derivatives ``d theta / d d = -H^-1 d^2L / d theta d d`` (implicit
  function theorem at the optimum of each stage's closed-form least-squares loss, Gauss-Newton
  Hessian, JAX Jacobians in float64) are chained
  through the stages (stage 3's profile re-fit, ``mu`` of Eq. 19, ``lambda_Y`` of Eq. 25), and the
  covariance of ``d`` is estimated from the image itself by batch means over ``k^3`` blocks
  (:mod:`jaxcba.calibrate._blocks`). Stage 3's ``theta`` minimises an L1 distance of simulated
  CPSDs: its derivative is that of the least-squares surrogate (Gauss-Newton, the model CPSD's
  slope in ``log theta`` by a central difference of the objective), its variance multiplied by
  pi/2 (the L1 estimator's asymptotic variance against least squares' under Gaussian noise), plus
  the Monte-Carlo noise of the ``n`` realizations' mean CPSD (the image's CPSD covariance / n).
  Intervals: ``estimate +- t_{k^3 - 1, 0.975} se`` on the log scale (positive quantities), the
  logit scale (fractions) or as is (``mu``); ``se`` is given on the natural scale.
* **bootstrap** (:func:`bootstrap_uncertainty`, ``--bootstrap B``): ``B`` twins simulated from
  the fitted parameters in the image's window and voxel size, each recalibrated with the same
  strategies; ``se`` = the twins' standard deviation on the same scales, intervals
  ``estimate +- t_{B' - 1, 0.975} se`` (``B'`` twins calibrated). Where the twins' mean lies
  significantly off the estimate (``|bias| > t se / sqrt(B')`` on the scale: the recalibration is
  biased there) the interval also spans the bias-corrected ``estimate - bias +- t se``, and says
  so; where the twins did not spread at all (e.g. every one at the same edge of a scan) there is
  no interval rather than one of zero width. A quantity at the edge of its
  scale in the fit or in a twin (``lambda_y = 0``: no large pores; ``V3 = 0``) has its interval on
  the natural scale instead, ``estimate +- t se`` cut at the edge, with the number of twins
  there in its note. A twin whose recalibration raises (any error but ``MemoryError`` and
  ``KeyboardInterrupt``, which end the run) is a recorded failure (its row holds the error; the
  set counts them in ``failed`` and lists them in ``failures``) and the other twins go on; when
  more than :data:`MAX_FAILED` of the twins failed, no bootstrap interval is given. Resumable:
  one row per twin in a results folder of the batch engine's format (:mod:`jaxcba.batch.store`),
  finished and failed twins skipped.

Quantities fixed by the model choice have no interval (``method`` ``fixed``, ``note`` the reason):
on a two-phase image (``lambda_x = 0``) ``lambda_x``, ``alpha1``, ``alpha2``, ``gamma``, ``V1`` and
the mean half-axes. A fitted parameter at 0 (log scale ``-inf``) has no delta interval (the delta
method needs an interior optimum).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.scipy.special import ndtri

from jaxcba.calibrate import _blocks
from jaxcba.calibrate._result import Result, field
from jaxcba.calibrate._stage1_contact import V_WEIGHT, contact_maps, model_contact
from jaxcba.calibrate._stage1_graphite import Stage1Result, eq17_weights, model_densities
from jaxcba.calibrate._stage2_excursion import Stage2Result, masked_model
from jaxcba.calibrate._stage3_pores import Stage3Result
from jaxcba.calibrate._targets import GRAPHITE_CURVATURE, GRAPHITE_EULER
from jaxcba.model.params import FIELDS, CBAParams

LEVEL = 0.95
#: Blocks per axis of the batch-means covariance (``k^3`` blocks).
BLOCKS = 2
#: Scale of each parameter's interval: ``log`` (positive), ``identity`` (``mu``).
PARAM_SCALE = {name: ("identity" if name == "mu" else "log") for name in FIELDS}
#: Derived quantities: name, unit, scale of the interval.
DERIVED = (("V1", "1", "logit"), ("V2", "1", "logit"), ("V3", "1", "logit"), ("V", "1", "logit"),
           ("alpha1/gamma", "nm", "log"), ("alpha2/gamma", "nm", "log"), ("1/eta", "nm", "log"),
           ("1/theta", "nm", "log"))
_GRAPHITE = ("lambda_x", "alpha1", "alpha2", "gamma")
_DERIVED_OF = {"V1": _GRAPHITE, "V2": ("mu",), "V3": ("theta", "lambda_y"), "V": tuple(FIELDS),
               "alpha1/gamma": ("alpha1", "gamma"), "alpha2/gamma": ("alpha2", "gamma"), "1/eta": ("eta",),
               "1/theta": ("theta",)}
#: Variance factor of stage 3's L1 estimator against its least-squares surrogate (module docstring).
L1_FACTOR = math.pi / 2.0
#: Largest fraction of failed bootstrap twins for which the bootstrap's intervals are given.
MAX_FAILED = 0.5
#: Why the graphite parameters of a two-phase image have no interval.
TWO_PHASE_REASON = ("two-phase image: the sub-model without graphite fixes lambda_x = 0; alpha1, alpha2, gamma are "
                    "unused placeholders (not estimated)")


def fixed_state(reason: str = "") -> str:
    """The state of a quantity fixed by the model choice (no interval), with the ``reason`` as its note."""
    return f"fixed: {reason}" if reason else "fixed"


def _is_fixed(state: str) -> bool:
    return state == "fixed" or state.startswith("fixed: ")


_TWO_PHASE = fixed_state(TWO_PHASE_REASON)


# ----------------------------------------------------------------------------- options
def _check_level(level, owner: str) -> float:
    from jaxcba._checks import check_fraction

    return check_fraction(level, f"{owner}.level")


@dataclasses.dataclass(frozen=True)
class StageFits:
    """What :func:`delta_uncertainty` differentiates: the stage results ``stage1`` (:class:`Stage1Result`),
    ``stage2`` (:class:`Stage2Result`), ``stage3`` (:class:`Stage3Result`) (``None``: not run; those
    parameters count as fixed); ``stage1_from_image``: False when stage 1 was fitted to given targets
    (no image descriptors: unavailable); ``joint``: the parameters come from the joint mode (unavailable)."""

    stage1: Stage1Result | None = None
    stage2: Stage2Result | None = None
    stage3: Stage3Result | None = None
    stage1_from_image: bool = True
    joint: bool = False

    def __post_init__(self):
        for name, kind in (("stage1", Stage1Result), ("stage2", Stage2Result), ("stage3", Stage3Result)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise ValueError(f"StageFits.{name} must be a {kind.__name__} or None, got {type(value).__name__}")
        for name in ("stage1_from_image", "joint"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"StageFits.{name} must be True or False, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class Delta:
    """The delta method's settings: ``blocks`` per axis of the batch-means covariance (``blocks^3``
    blocks, >= 2) and the intervals' ``level`` (in (0, 1))."""

    blocks: int = BLOCKS
    level: float = LEVEL

    def __post_init__(self):
        from jaxcba._checks import check_int

        check_int(self.blocks, "Delta.blocks", lo=2)
        object.__setattr__(self, "level", _check_level(self.level, "Delta"))


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """The parametric bootstrap of the uncertainty (``calibrate(..., uncertainty=Bootstrap(n))``,
    :func:`bootstrap_uncertainty`): ``n`` twins (>= 2) simulated from the fitted parameters in the
    image's window and voxel size and recalibrated; ``folder``: where their rows go (one per twin; a
    rerun skips finished twins; default a new temporary folder, not resumable); ``seed``: of the first
    twin (twins ``seed .. seed + n - 1``); ``level``: of the intervals."""

    n: int
    folder: str | None = None
    seed: int = 0
    level: float = LEVEL

    def __post_init__(self):
        if isinstance(self.n, bool) or not (isinstance(self.n, (int, np.integer)) and self.n >= 2):
            raise ValueError(f"Bootstrap.n (number of twins) must be an integer >= 2, got {self.n!r}")
        if isinstance(self.seed, bool) or not (isinstance(self.seed, (int, np.integer)) and self.seed >= 0):
            raise ValueError(f"Bootstrap.seed must be an integer >= 0, got {self.seed!r}")
        if self.folder is not None and not isinstance(self.folder, (str, Path)):
            raise ValueError(f"Bootstrap.folder must be a path or None, got {self.folder!r}")
        object.__setattr__(self, "level", _check_level(self.level, "Bootstrap"))


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True, kw_only=True)
class Interval(Result):
    """One quantity's uncertainty: ``value`` (the fit), standard error ``se`` and the interval
    ``[lo, hi]`` at the set's level (natural units ``unit``), the ``scale`` the interval was built on
    (``log``, ``logit``, ``identity``), and ``method``: ``delta``, ``bootstrap``, ``fixed`` (not
    fitted: se 0) or ``unavailable`` (se, lo, hi null; ``note`` says why)."""

    _json_order = ("value", "unit", "se", "lo", "hi", "scale", "method", "note")

    name: str = field(json=False, default="")
    value: float
    unit: str
    se: float
    lo: float
    hi: float
    scale: str
    method: str
    note: str = ""

    def covers(self, truth: float) -> bool:
        """Whether ``truth`` lies in ``[lo, hi]`` (False where the interval is unavailable)."""
        return bool(math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo <= truth <= self.hi)


def _decode_intervals(v) -> tuple:
    return tuple(dataclasses.replace(Interval.from_dict(d), name=k) for k, d in v.items())


def _encode_intervals(v) -> dict:
    return {i.name: i.to_dict() for i in v}


@dataclasses.dataclass(frozen=True, kw_only=True)
class UncertaintySet(Result):
    """The intervals of one method: ``method`` (``delta`` or ``bootstrap``), ``how`` (one line),
    ``level``, ``quantile`` (the t quantile used), ``dof``, ``n`` (blocks or twins used),
    ``parameters`` and ``derived`` (JSON: keyed by name), ``notes``; bootstrap only: ``failed``
    (twins whose recalibration raised) and ``failures`` (one ``"seed S: Error: message"`` each)."""

    method: str
    how: str
    level: float = LEVEL
    quantile: float
    dof: int
    n: int
    parameters: tuple[Interval, ...] = field(encode=_encode_intervals, decode=_decode_intervals)
    derived: tuple[Interval, ...] = field(encode=_encode_intervals, decode=_decode_intervals)
    notes: tuple[str, ...] = ()
    failed: int = 0
    failures: tuple[str, ...] = ()

    def get(self, name: str) -> Interval:
        """The interval of a parameter or derived quantity by name."""
        for i in self.parameters + self.derived:
            if i.name == name:
                return i
        raise KeyError(name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Uncertainty(Result):
    """The uncertainty block of ``params.json`` and of the report: ``delta`` and, with
    ``--bootstrap``, ``bootstrap`` (:class:`UncertaintySet`; ``None`` when not computed)."""

    level: float = LEVEL
    delta: UncertaintySet | None = None
    bootstrap: UncertaintySet | None = None

    def sets(self) -> tuple[UncertaintySet, ...]:
        return tuple(s for s in (self.delta, self.bootstrap) if s is not None)

    def table(self) -> str:
        """The intervals as aligned text, one line per quantity and method."""
        lines = [f"{'quantity':<14} {'unit':<6} {'value':>11} {'std.err':>10} {f'{100 * self.level:g} % interval':>25}"
                 "  method"]
        for s in self.sets():
            for i in s.parameters + s.derived:
                if i.method == "fixed":
                    continue
                iv = (f"[{i.lo:.4g}, {i.hi:.4g}]" if math.isfinite(i.lo) and math.isfinite(i.hi) else "-")
                se = f"{i.se:.3g}" if math.isfinite(i.se) else "-"
                lines.append(f"{i.name:<14} {i.unit:<6} {i.value:>11.5g} {se:>10} {iv:>25}  {i.method}"
                             + (f" ({i.note})" if i.note else ""))
        for s in self.sets():
            lines.append(f"{s.method}: {s.how}")
            lines.extend(f"  note: {n}" for n in s.notes)
            fixed: dict[str, list[str]] = {}
            for i in s.parameters + s.derived:
                if i.method == "fixed":
                    fixed.setdefault(i.note or "not fitted", []).append(i.name)
            lines.extend(f"  fixed, no interval: {', '.join(names)} ({why})" for why, names in fixed.items())
            lines.extend(f"  failed twin: {f}" for f in s.failures)
        return "\n".join(lines)


# ----------------------------------------------------------------------------- scales
def _to_scale(x, scale):
    if scale == "log":
        return jnp.log(x)
    if scale == "logit":
        return jnp.log(x) - jnp.log1p(-x)
    return x


def _from_scale(y: float, scale: str) -> float:
    if scale == "log":
        return math.exp(min(y, 700.0))
    if scale == "logit":
        return 1.0 / (1.0 + math.exp(-max(min(y, 700.0), -700.0)))
    return y


def _natural_slope(value: float, scale: str) -> float:
    """``d natural / d scale`` at ``value``."""
    return value if scale == "log" else value * (1.0 - value) if scale == "logit" else 1.0


def working(params: CBAParams) -> np.ndarray:
    """The eight parameters on their interval scales (:data:`PARAM_SCALE`), shape (8,); ``-inf`` for ``lambda_x = 0``."""
    out = []
    for k, v in params.to_dict().items():
        out.append(v if PARAM_SCALE[k] != "log" else math.log(v) if v > 0 else -math.inf)
    return np.array(out)


def _params_of(w) -> CBAParams:
    return CBAParams(**{k: (jnp.exp(w[i]) if PARAM_SCALE[k] == "log" else w[i]) for i, k in enumerate(FIELDS)})


def derived_values(params: CBAParams, voxel_nm: float) -> dict[str, float]:
    """The derived quantities (:data:`DERIVED`) of ``params`` in natural units."""
    from jaxcba.theory import volume_fractions

    vf = volume_fractions(params, voxel_nm)
    p = params.to_dict()
    return {"V1": float(vf.graphite), "V2": float(vf.excursion), "V3": float(vf.pores_removed),
            "V": float(vf.solid), "alpha1/gamma": p["alpha1"] / p["gamma"], "alpha2/gamma": p["alpha2"] / p["gamma"],
            "1/eta": 1.0 / p["eta"], "1/theta": 1.0 / p["theta"]}


def _derived_scaled(w, voxel_nm, two_phase: bool):
    """The derived quantities on their scales as a function of the working parameters (traceable)."""
    from jaxcba.theory import volume_fractions

    if two_phase:  # lambda_x = 0 exactly: V1 = 0 is not a function of the (unused) graphite parameters
        w = w.at[0].set(-jnp.inf)
    p = _params_of(w)
    vf = volume_fractions(p, voxel_nm)
    vals = {"V1": vf.graphite, "V2": vf.excursion, "V3": vf.pores_removed, "V": vf.solid,
            "alpha1/gamma": p.alpha1 / p.gamma, "alpha2/gamma": p.alpha2 / p.gamma, "1/eta": 1.0 / p.eta,
            "1/theta": 1.0 / p.theta}
    out = [_to_scale(vals[n], s) for n, _, s in DERIVED]
    if two_phase:
        out[0] = jnp.zeros(())
    return jnp.stack(out)


#: A quantity whose gradient has more than this relative component along a flat direction is not identified.
FLAT_TOL = 1e-2


def intervals(params: CBAParams, voxel_nm: float, cov_w: np.ndarray, fitted: dict[str, str], quantile: float,
              method: str, flat: np.ndarray | None = None) -> tuple[tuple[Interval, ...], tuple[Interval, ...]]:
    """Intervals of the parameters and derived quantities from the covariance ``cov_w`` (8, 8) of the
    working parameters; ``fitted``: parameter -> ``"fit"``, a fixed state (``"fixed"`` or
    ``"fixed: reason"``, :func:`fixed_state`) or an unavailability note; ``flat`` (8, f): flat
    directions of the stage losses (a quantity changing along one: unavailable). A fitted
    parameter at 0 (log scale ``-inf``) and a fitted derived quantity at the edge of its scale get
    no interval (a note says so)."""
    flat = np.zeros((8, 0)) if flat is None else np.asarray(flat, float)
    why_flat = "not identified: a stage loss is flat along a direction that changes it"
    values = params.to_dict()
    base = dict(fitted)
    for k in FIELDS:  # log(0) = -inf: the optimum is on the boundary, not an interior one
        if base[k] == "fit" and PARAM_SCALE[k] == "log" and values[k] == 0.0:
            base[k] = (f"{k} = 0, on the boundary of its range (log scale -inf): no {method} interval"
                       + ("; the parametric bootstrap gives one on the natural scale" if method == "delta" else ""))
    fitted = dict(base)
    for i, k in enumerate(FIELDS):
        if fitted[k] == "fit" and flat.shape[1] and np.linalg.norm(flat[i]) > FLAT_TOL:
            fitted[k] = why_flat
    w = working(params)
    two_phase = values["lambda_x"] == 0.0
    out_p = []
    for i, (k, unit) in enumerate(FIELDS.items()):
        out_p.append(_interval(k, unit, values[k], w[i], cov_w[i, i], PARAM_SCALE[k], fitted[k], quantile, method))
    with jax.enable_x64(True):
        w64 = jnp.asarray(w, dtype=jnp.float64)  # -inf where a parameter is 0: exp(-inf) = 0 exactly
        ys = np.asarray(_derived_scaled(w64, voxel_nm, two_phase), dtype=float)
        G = np.asarray(jax.jacfwd(lambda v: _derived_scaled(v, voxel_nm, two_phase))(w64), dtype=float)
    g_ok = np.isfinite(G)
    G = np.where(g_ok, G, 0.0)
    # a fitted parameter without a finite, non-negative variance has no interval, and neither has
    # any quantity that depends on it (its zeroed covariance would give a zero-width interval)
    cov_ok = np.isfinite(cov_w) & (np.diag(cov_w) >= 0)[:, None] & (np.diag(cov_w) >= 0)[None, :]
    cov = np.where(np.isfinite(cov_w), cov_w, 0.0)
    var = np.einsum("ij,jk,ik->i", G, cov, G)
    nat = derived_values(params, voxel_nm)
    index = {k: i for i, k in enumerate(FIELDS)}
    out_d = []
    for j, (name, unit, scale) in enumerate(DERIVED):
        state, names = _derived_state(name, base, two_phase)
        if not _is_fixed(state):
            bad = [] if state == "fit" else [state]
            fit = [index[k] for k in names if base[k] == "fit"]
            bad += [f"depends on {k}, whose variance is not finite (no interval)" for k in names
                    if base[k] == "fit" and not np.all(cov_ok[index[k], fit])]
            if not math.isfinite(ys[j]):
                bad.append(f"{name} = {nat[name]:.4g}, on the boundary of its {scale} scale: no {method} interval")
            else:
                bad += [f"its derivative in {k} is not finite" for k in names
                        if base[k] == "fit" and not g_ok[j, index[k]]]
            state = "; ".join(bad) if bad else "fit"
        g = G[j]
        if state == "fit" and flat.shape[1] and np.linalg.norm(g @ flat) > FLAT_TOL * max(np.linalg.norm(g), 1e-300):
            state = why_flat
        out_d.append(_interval(name, unit, nat[name], ys[j], var[j], scale, state, quantile, method))
    return tuple(out_p), tuple(out_d)


def _derived_state(name: str, base: dict, two_phase: bool) -> tuple[str, list[str]]:
    """The state of the derived quantity ``name`` from its parameters' states ``base`` (``"fit"``, a
    fixed state, or a note): a note naming each parameter without an interval, else ``"fit"`` if
    one of them is fitted, else fixed; and the parameters it depends on."""
    if two_phase and name == "V1":
        return fixed_state("lambda_x = 0: two-phase image, no graphite"), []
    names = [k for k in _DERIVED_OF[name] if not (two_phase and k in _GRAPHITE)]
    if not names:  # the mean half-axes of a two-phase image
        return _TWO_PHASE, []
    bad = [f"depends on {k}, which has no interval ({base[k]})" for k in names
           if base[k] != "fit" and not _is_fixed(base[k])]
    if bad:
        return "; ".join(bad), names
    return ("fit" if any(base[k] == "fit" for k in names) else "fixed"), names


def _interval(name, unit, value, y, var, scale, state, quantile, method) -> Interval:
    if _is_fixed(state):
        return Interval(name=name, value=value, unit=unit, se=0.0, lo=value, hi=value, scale=scale, method="fixed",
                        note=state[len("fixed: "):] if state != "fixed" else "not fitted")
    if state != "fit" or not (math.isfinite(var) and var >= 0):
        note = state if state != "fit" else "non-finite variance"
        return Interval(name=name, value=value, unit=unit, se=math.nan, lo=math.nan, hi=math.nan, scale=scale,
                        method="unavailable", note=note)
    sd = math.sqrt(var)
    lo, hi = _from_scale(y - quantile * sd, scale), _from_scale(y + quantile * sd, scale)
    return Interval(name=name, value=value, unit=unit, se=abs(_natural_slope(value, scale)) * sd, lo=lo, hi=hi,
                    scale=scale, method=method)


# ----------------------------------------------------------------------------- implicit derivatives
class NotIdentified(ValueError):
    """A stage loss is flat along some direction at its optimum (its Hessian is singular): the
    parameters along it are not determined by the descriptors."""


#: Largest condition number of a stage loss's Hessian for which the implicit derivatives are given.
MAX_CONDITION = 1e14


def implicit_jacobian(residual, u, d, allow_flat: bool = False):
    """``d u* / d d = -H^-1 d^2L / du dd`` at an optimum ``u`` of the least-squares loss
    ``L(u, d) = |residual(u, d)|^2``, shape ``(len(u), len(d))``.

    ``H = 2 R_u^T R_u + 2 sum_k r_k d^2 r_k / du^2`` and ``d^2L / du dd = 2 R_u^T R_d + 2 sum_k r_k
    d^2 r_k / du dd``: the Jacobians ``R_u``, ``R_d`` and the residuals ``r`` by JAX in float64 (one
    compiled program), the residual curvature by central differences of ``R_u`` (steps 1e-5 in
    ``u``, 1e-5 |d_j| in ``d``), so that the flat valleys of losses that do not fit exactly are kept
    (the Gauss-Newton ``R_u^T R_u`` alone hides them). :class:`NotIdentified` when ``H`` is not
    positive definite, not finite, or its condition number exceeds :data:`MAX_CONDITION`; with ``allow_flat``,
    ``(J, F)`` instead: ``J`` from the well-conditioned eigen-subspace of ``H`` and ``F`` ``(len(u), f)``
    the flat directions (eigenvalues below ``max / MAX_CONDITION``, or negative), along which
    nothing is determined."""
    def parts(u, d):
        return jax.jacfwd(residual, argnums=0)(u, d), jax.jacfwd(residual, argnums=1)(u, d), residual(u, d)

    u = np.asarray(u, dtype=float)
    d = np.asarray(d, dtype=float)
    with jax.enable_x64(True):
        f = jax.jit(parts)

        def at(uu, dd):
            return [np.asarray(a, float) for a in f(jnp.asarray(uu, jnp.float64), jnp.asarray(dd, jnp.float64))]

        Ru, Rd, r = at(u, d)
        H = 2.0 * Ru.T @ Ru
        Bm = 2.0 * Ru.T @ Rd
        for i in range(len(u)):
            e = np.zeros(len(u))
            e[i] = 1e-5
            H[:, i] += 2.0 * r @ (at(u + e, d)[0] - at(u - e, d)[0]) / 2e-5
        for j in range(len(d)):
            h = 1e-5 * max(abs(d[j]), 1e-300)
            e = np.zeros(len(d))
            e[j] = h
            Bm[:, j] += 2.0 * r @ (at(u, d + e)[0] - at(u, d - e)[0]) / (2.0 * h)
    H = 0.5 * (H + H.T)
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(Bm))):  # e.g. a degenerate fit (V2 -> 1): eigh would fail
        raise NotIdentified("the stage loss's derivatives are not finite at its optimum (a degenerate fit)")
    ev, vecs = np.linalg.eigh(H)
    if allow_flat:
        good = ev > ev[-1] / MAX_CONDITION
        if not good.any():
            raise NotIdentified(f"the stage loss has no curvature at its optimum (Hessian eigenvalues {ev[0]:.3g} .. "
                                f"{ev[-1]:.3g})")
        V = vecs[:, good]
        return -(V / ev[good]) @ (V.T @ Bm), vecs[:, ~good]
    if not (ev[0] > 0 and ev[-1] / ev[0] < MAX_CONDITION):
        raise NotIdentified(f"the stage loss is flat along a direction at its optimum (Hessian eigenvalues "
                            f"{ev[0]:.3g} .. {ev[-1]:.3g}): its parameters are not determined by the descriptors")
    return -np.linalg.solve(H, Bm)


def _eq17_residual(weights, voxel_nm):
    def residual(u, D):
        m = model_densities(jnp.exp(u), voxel_nm)
        return weights * (m - D) / jnp.sqrt(jnp.sum((weights * D) ** 2))

    return residual


def _contact_residual(r_nm, voxel_nm):
    def residual(u, d):
        vals = jnp.exp(u)
        v = model_densities(vals, voxel_nm)[0]
        ym = model_contact(vals, r_nm, voxel_nm)
        return jnp.concatenate([jnp.sqrt(V_WEIGHT) * ((v - d[:1]) / d[:1]),
                                ((ym - d[1:]) / d[1:]) / math.sqrt(len(r_nm))])

    return residual


def _masked_residual(h_nm, weight):
    """Stage 2's masked least squares in ``u = (log eta, log theta, logit V3)``, data ``d = (q, C(h))``."""
    def residual(u, d):
        v3 = jax.nn.sigmoid(u[2])
        return math.sqrt(weight) * (masked_model(h_nm, d[0], jnp.exp(u[0]), jnp.exp(u[1]), v3) - d[1:])

    return residual


def _profile_residual(h_nm, weight):
    """Stage 3's profile re-fit in ``u = (log eta, logit V3)``, data ``d = (q, C(h), log theta)``."""
    def residual(u, d):
        v3 = jax.nn.sigmoid(u[1])
        return math.sqrt(weight) * (masked_model(h_nm, d[0], jnp.exp(u[0]), jnp.exp(d[-1]), v3) - d[1:-1])

    return residual


def stage1_jacobian(s1, voxel_nm: float, allow_flat: bool = False):
    """``d log(lambda_x, alpha1, alpha2, gamma) / d d`` of a stage 1 fit, shape ``(4, m)``: ``d`` is the
    graphite's ``(V, S, K, N)`` (Eq. 17) or ``(V, y(r_1), ..., y(r_n))`` (contact distribution);
    ``allow_flat``: ``(J, F)`` with the loss's flat directions ``F`` (:func:`implicit_jacobian`)."""
    u = np.log([s1.params[k] for k in _GRAPHITE])
    if s1.descriptor == "contact":
        d = np.concatenate([[s1.targets.V], np.asarray(s1.contact["y"], dtype=float)])
        return implicit_jacobian(_contact_residual(np.asarray(s1.contact["r_nm"], float), voxel_nm), u, d, allow_flat)
    weights = eq17_weights(s1.weight_nm) * np.asarray(s1.term_weights)
    return implicit_jacobian(_eq17_residual(weights, voxel_nm), u, s1.targets.as_array(), allow_flat)


def _masked_data(s2):
    h = np.asarray(s2.h_nm, float)[1:]
    c = np.asarray(s2.c_obs, float)[1:]
    return h, c, 1.0 / max(float(np.sum((c - s2.q**2) ** 2)), 1e-30)


def stage2_jacobian(s2) -> np.ndarray:
    """``d (log eta, log theta, logit V3) / d (q, C(h_1), ..., C(h_K))`` of a masked stage 2 fit, ``(3, K + 1)``."""
    h, c, weight = _masked_data(s2)
    u = np.array([math.log(s2.eta), math.log(s2.theta), _logit(s2.v3)])
    return implicit_jacobian(_masked_residual(h, weight), u, np.concatenate([[s2.q], c]))


def profile_jacobian(s2, excursion) -> np.ndarray:
    """``d (log eta, logit V3) / d (q, C(h_1), ..., C(h_K), log theta)`` of the profile re-fit
    ``excursion`` (:class:`ExcursionGivenTheta`) of a masked stage 2 at its ``theta``, ``(2, K + 2)``."""
    h, c, weight = _masked_data(s2)
    u = np.array([math.log(excursion.eta), _logit(excursion.v3)])
    return implicit_jacobian(_profile_residual(h, weight), u, np.concatenate([[s2.q], c, [math.log(excursion.theta)]]))


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _grad64(f, *args) -> np.ndarray:
    with jax.enable_x64(True):
        xs = [jnp.asarray(a, jnp.float64) for a in args]
        return np.asarray(jnp.stack(jax.grad(f, argnums=tuple(range(len(xs))))(*xs)), dtype=float)


def _mu_of(q, v3l):
    return ndtri(1.0 - q / (1.0 - jax.nn.sigmoid(v3l)))


def _v2_of(q, v3l):
    return q / (1.0 - jax.nn.sigmoid(v3l))


def _log_lambda_y(vt, v1, v2, logth):
    th = jnp.exp(logth)
    return jnp.log(-(th**3) / (8.0 * math.pi) * jnp.log((vt - v1) / (v2 * (1.0 - v1))))


# ----------------------------------------------------------------------------- the delta method
class _Parts:
    """What the stages contribute to the delta method, collected stage by stage.

    ``slices`` / ``X``: the descriptor vector ``d``, group by group (``stage1``, ``stage2``,
    ``stage3``), with its block pseudo-values ``X`` (blocks, m); ``rows``: parameter -> {group: d w /
    d d_group} (``w``: the working parameters); ``fitted``: parameter -> ``"fit"``, ``"fixed"`` or the
    reason it has no interval; ``flat`` (8, f): the stage losses' flat directions in ``w``; ``mc``:
    the Monte-Carlo variance of stage 3's ``log theta`` and ``t_col`` its column (d w / d log theta);
    ``v2_row``: d V2 / d d (stage 3's Eq. 25 uses V2)."""

    def __init__(self, vol, voxel_nm: float, edges):
        self.vol, self.voxel_nm, self.edges = vol, voxel_nm, edges
        self.slices: dict[str, slice] = {}
        self.X: list[np.ndarray] = []
        self.m = 0
        self.rows: dict[str, dict[str, np.ndarray]] = {}
        self.fitted = {k: "fixed" for k in FIELDS}
        self.notes: list[str] = []
        self.flat = np.zeros((8, 0))
        self.mc: float | None = None
        self.t_col: dict[str, float] = {}
        self.v2_row: dict[str, np.ndarray] | None = None

    def add(self, name: str, X: np.ndarray) -> None:
        """Append the descriptor group ``name`` with its block pseudo-values ``X`` (blocks, m_group)."""
        X = np.asarray(X, dtype=float)
        self.slices[name] = slice(self.m, self.m + X.shape[1])
        self.X.append(X)
        self.m += X.shape[1]

    def covariance(self) -> np.ndarray:
        """``Cov_w = J Cov_d J^T`` (+ the Monte-Carlo term of stage 3), (8, 8); zeros without descriptors."""
        if not self.m:
            return np.zeros((8, 8))
        names = list(FIELDS)
        J = np.zeros((8, self.m))
        for k, groups in self.rows.items():
            for grp, r in groups.items():
                J[names.index(k), self.slices[grp]] += r
        J = np.where(np.isfinite(J), J, 1e300)
        with np.errstate(over="ignore", invalid="ignore"):  # inf / nan: "non-finite variance", no interval
            cov_w = J @ _blocks.covariance(np.concatenate(self.X, axis=1)) @ J.T
            if self.mc is not None:
                t = np.array([self.t_col.get(k, 0.0) for k in names])
                cov_w = cov_w + self.mc * np.outer(t, t)
        return cov_w


def _stage1_parts(parts: _Parts, s1, from_image: bool) -> None:
    """Stage 1: the graphite's descriptors and ``d log(lambda_x, alpha1, alpha2, gamma) / d d``."""
    if not from_image:
        parts.fitted.update({k: "stage 1 was fitted to given targets, not to the image" for k in _GRAPHITE})
        return
    graphite, edges, voxel_nm = parts.vol == 2, parts.edges, parts.voxel_nm
    if s1.descriptor == "contact":
        r_vox = np.rint(np.asarray(s1.contact["r_nm"]) / voxel_nm).astype(int)
        dist, face = contact_maps(graphite, int(r_vox.max()))
        outside = ~graphite
        _, Xy = _blocks.contact_blocks(lambda r: outside & (face >= r) & (dist > r),
                                       lambda r: outside & (face >= r), r_vox, edges)
        _, Xv = _blocks.fraction_blocks(graphite, edges)
        parts.add("stage1", np.concatenate([Xv, Xy], axis=1))
    else:
        _, X = _blocks.intrinsic_blocks(graphite, voxel_nm, edges, euler=GRAPHITE_EULER, curvature=GRAPHITE_CURVATURE)
        parts.add("stage1", X)
    try:
        J1, F1 = stage1_jacobian(s1, voxel_nm, allow_flat=True)
    except NotIdentified as exc:
        parts.fitted.update({k: f"stage 1: {exc}" for k in _GRAPHITE})
        return
    for i, k in enumerate(_GRAPHITE):
        parts.rows[k] = {"stage1": J1[i]}
        parts.fitted[k] = "fit"
    if F1.shape[1]:
        parts.flat = np.zeros((8, F1.shape[1]))
        parts.flat[:4] = F1
        parts.notes.append(f"stage 1's loss is flat along {F1.shape[1]} direction(s) of log(lambda_x, alpha1, "
                           f"alpha2, gamma) ({'; '.join(np.array2string(f, precision=2) for f in F1.T)}): the "
                           "quantities that change along it are not identified (no interval)")


def _q_unit(k: int) -> np.ndarray:
    """The unit vector of ``q`` in stage 2's data ``(q, C(h_1), ..., C(h_K))``, length ``k``."""
    e = np.zeros(k)
    e[0] = 1.0
    return e


def _stage2_parts(parts: _Parts, s2, profiled: bool) -> None:
    """Stage 2 (masked): the data ``(q, C(h))`` of the graphite-free region and, unless stage 3
    re-fitted it (``profiled``), ``d (log eta, mu, V2) / d d``; the cutout's intervals are not available."""
    if s2.estimator != "masked":
        parts.fitted.update(mu="not available for the cutout estimator", eta="not available for the cutout estimator")
        return
    vol, edges = parts.vol, parts.edges
    region = vol != 2
    _, Xq = _blocks.fraction_blocks(vol == 1, edges, region)
    _, Xc = _blocks.two_point_blocks(vol == 1, region, len(s2.h_nm) - 1, edges)
    parts.add("stage2", np.concatenate([Xq, Xc], axis=1))
    if profiled:  # stage 3's profile re-fit gives (mu, eta): _profile_parts
        return
    try:
        J2 = stage2_jacobian(s2)
    except NotIdentified as exc:
        parts.fitted["mu"] = parts.fitted["eta"] = f"stage 2: {exc}"
        return
    eta_row, v3l_row = J2[0], J2[2]
    mq, mv = _grad64(_mu_of, s2.q, _logit(s2.v3))
    gq, gv = _grad64(_v2_of, s2.q, _logit(s2.v3))
    e_q = _q_unit(len(s2.h_nm))
    parts.rows["eta"] = {"stage2": eta_row}
    parts.rows["mu"] = {"stage2": mq * e_q + mv * v3l_row}
    parts.v2_row = {"stage2": gq * e_q + gv * v3l_row}
    parts.fitted["mu"] = parts.fitted["eta"] = "fit"


def _theta_row(parts: _Parts, s3) -> dict[str, np.ndarray]:
    """Stage 3's pore CPSD, ``V`` and ``V1`` as descriptors, and ``d log theta / d d`` of the L1 fit's
    least-squares surrogate (times sqrt(pi/2)); sets the Monte-Carlo variance ``parts.mc``."""
    vol, edges, sens = parts.vol, parts.edges, s3.sensitivity
    r_nm = np.asarray(sens["r_nm"], float)
    _, Xc = _blocks.cpsd_blocks(vol == 0, r_nm / parts.voxel_nm, edges)
    _, Xt = _blocks.fraction_blocks(vol != 0, edges)
    _, X1 = _blocks.fraction_blocks(vol == 2, edges)
    parts.add("stage3", np.concatenate([Xt, X1, Xc], axis=1))
    g = np.asarray(sens["slope"], float)
    omega = _trapezoid_weights(r_nm)
    denom = float(np.sum(omega * g * g))
    dT = omega * g / denom if denom > 0 else np.full(len(g), np.inf)
    dT = dT * math.sqrt(L1_FACTOR)
    with np.errstate(over="ignore", invalid="ignore"):  # a flat slope: inf / nan, no interval for theta
        parts.mc = float(dT @ _blocks.covariance(Xc) @ dT) / max(int(sens["n"]), 1)
    parts.t_col = {"theta": 1.0}
    return {"stage3": np.concatenate([[0.0, 0.0], dT])}


def _profile_parts(parts: _Parts, s2, ex, th_row) -> None:
    """Stage 3's re-fit ``ex`` of the masked stage 2 at theta: ``d (log eta, mu, V2) / d d`` through
    ``(q, C(h))`` and through ``log theta``."""
    K = len(s2.h_nm) - 1
    fitted = parts.fitted
    try:
        JP = profile_jacobian(s2, ex)
    except NotIdentified as exc:
        fitted["mu"] = fitted["eta"] = f"stage 3's re-fit of stage 2: {exc}"
        parts.notes.append("lambda_y's interval leaves out V2's uncertainty (the re-fit of stage 2 is not identified)")
        JP = np.zeros((2, K + 2))
    P_qc, P_th = JP[:, :-1], JP[:, -1]
    mq, mv = _grad64(_mu_of, s2.q, _logit(ex.v3))
    gq, gv = _grad64(_v2_of, s2.q, _logit(ex.v3))
    e_q = _q_unit(K + 1)
    parts.rows["eta"] = {"stage2": P_qc[0], "stage3": P_th[0] * th_row["stage3"]}
    v3l = {"stage2": P_qc[1], "stage3": P_th[1] * th_row["stage3"]}
    parts.rows["mu"] = {"stage2": mq * e_q + mv * v3l["stage2"], "stage3": mv * v3l["stage3"]}
    parts.v2_row = {"stage2": gq * e_q + gv * v3l["stage2"], "stage3": gv * v3l["stage3"]}
    parts.t_col.update(eta=P_th[0], mu=mv * P_th[1], v2=gv * P_th[1])
    if fitted["mu"] == "fixed":
        fitted["mu"] = fitted["eta"] = "fit"


def _stage3_parts(parts: _Parts, s3, s2) -> None:
    """Stage 3: ``theta`` (:func:`_theta_row`), the profile re-fit of stage 2 (:func:`_profile_parts`)
    and ``lambda_Y`` of Eq. 25 through ``V``, ``V1``, ``V2`` and ``theta``."""
    fitted = parts.fitted
    if s3.sensitivity is None:
        fitted["theta"] = fitted["lambda_y"] = "stage 3 ran without the sensitivity evaluations"
        return
    th_row = _theta_row(parts, s3)
    ex = s3.excursion
    if ex is not None and s2 is not None and s2.estimator == "masked":
        _profile_parts(parts, s2, ex, th_row)
        v2 = ex.v2
    else:
        v2 = s3.v2
    lt, l1, l2, lth = _grad64(_log_lambda_y, s3.v_total, s3.v1, v2, math.log(s3.theta))
    n_cpsd = len(th_row["stage3"]) - 2
    lam_row = {"stage3": np.concatenate([[lt, l1], np.zeros(n_cpsd)]) + lth * th_row["stage3"]}
    for grp, r in (parts.v2_row or {}).items():
        lam_row[grp] = lam_row.get(grp, 0.0) + l2 * r
    parts.rows["theta"] = th_row
    parts.rows["lambda_y"] = lam_row
    parts.t_col["lambda_y"] = lth + l2 * parts.t_col.get("v2", 0.0)
    fitted["theta"] = fitted["lambda_y"] = "fit"
    if not s3.converged:  # e.g. the best theta at an edge of the scan: not an interior optimum
        fitted["theta"] = fitted["lambda_y"] = "stage 3 did not converge (see the warnings): no interval"


def delta_uncertainty(vol, voxel_nm: float, params: CBAParams, fits: StageFits = StageFits(), *,
                      options: Delta = Delta()) -> UncertaintySet:
    """The delta-method intervals of a staged calibration (module docstring).

    ``vol``: the calibrated ``(z, y, x)`` labels; ``voxel_nm``: voxel side [nm]; ``params``: the
    fitted parameters; ``fits``: :class:`StageFits` (the stage results, how stage 1 was fitted,
    whether the joint mode ran); ``options``: :class:`Delta` (blocks per axis, level).
    """
    if not isinstance(fits, StageFits):
        raise ValueError(f"fits must be a StageFits(...), got {type(fits).__name__}")
    if not isinstance(options, Delta):
        raise ValueError(f"options must be a Delta(...), got {type(options).__name__}")
    s1, s2, s3 = fits.stage1, fits.stage2, fits.stage3
    blocks, level = options.blocks, options.level
    vol = np.asarray(vol)
    n_b = blocks**3
    quantile = float(scipy.stats.t.ppf(0.5 + level / 2.0, n_b - 1))
    if fits.joint:
        fitted = {k: "not available for the joint mode (use --bootstrap)" for k in FIELDS}
        p, d = intervals(params, voxel_nm, np.zeros((8, 8)), fitted, quantile, "delta")
        return UncertaintySet(method="delta", how="not computed: the joint mode's parameters are not a function of "
                              "closed-form stage losses", level=level, quantile=quantile, dof=n_b - 1, n=n_b,
                              parameters=p, derived=d)
    parts = _Parts(vol, voxel_nm, _blocks.block_edges(vol.shape, blocks))
    if s1 is not None:
        _stage1_parts(parts, s1, fits.stage1_from_image)
    if s2 is not None:
        _stage2_parts(parts, s2, profiled=s3 is not None and s3.excursion is not None)
    if s3 is not None:
        _stage3_parts(parts, s3, s2)
    cov_w = parts.covariance()
    if params.to_dict()["lambda_x"] == 0.0:
        parts.fitted.update({k: _TWO_PHASE for k in _GRAPHITE})
        parts.notes.append("two-phase image: lambda_x = 0 (no graphite), the graphite parameters are not fitted")
    p, d = intervals(params, voxel_nm, cov_w, parts.fitted, quantile, "delta", flat=parts.flat)
    how = (f"delta method: implicit derivatives of the stage losses, descriptor covariance by batch means over "
           f"{n_b} blocks of the image ({blocks} per axis), t quantile with {n_b - 1} degrees of freedom")
    return UncertaintySet(method="delta", how=how, level=level, quantile=quantile, dof=n_b - 1, n=n_b, parameters=p,
                          derived=d, notes=tuple(parts.notes))


def _trapezoid_weights(r: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``sum(w f) = trapezoid(f, r)``."""
    r = np.asarray(r, float)
    w = np.zeros(len(r))
    if len(r) > 1:
        dr = np.diff(r)
        w[:-1] += dr / 2.0
        w[1:] += dr / 2.0
    return w


# ----------------------------------------------------------------------------- bootstrap
def _bootstrap_spec(params: CBAParams, shape, voxel_nm: float, settings: dict) -> dict:
    return {"kind": "jaxcba calibrate --bootstrap", "params": params.to_dict(), "shape": [int(s) for s in shape],
            "voxel_nm": float(voxel_nm), "settings": settings}


def _twin_id(spec: dict, seed: int) -> str:
    content = json.dumps({**spec, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def bootstrap_uncertainty(params: CBAParams, shape, voxel_nm: float, recalibrate, options: Bootstrap, *,
                          settings: dict, fixed: dict | None = None, progress: bool = False) -> UncertaintySet:
    """The parametric bootstrap (module docstring): ``options.n`` twins of ``params`` in a ``shape``
    window [voxels] of ``voxel_nm`` [nm], seeds ``options.seed ..``, rows in ``options.folder``.

    ``recalibrate(labels) -> CalibrationResult`` fits one twin; an error it raises (or non-finite
    fitted parameters) makes that twin a failure, recorded in its row (``params`` null, ``error``
    ``"Type: message"``, ``error_type``) while the other twins go on; ``MemoryError`` and
    ``KeyboardInterrupt`` propagate (the finished twins' rows are kept). ``settings``
    (JSON-serialisable) identifies the calibration in ``folder/spec.json`` (a folder of another
    spec is refused); ``fixed``: parameter -> state for the parameters not fitted (as in
    :func:`intervals`).
    """
    import tempfile

    from jaxcba._progress import meter
    from jaxcba.batch import store
    from jaxcba.model import simulate

    if not isinstance(options, Bootstrap):
        raise ValueError(f"options must be a Bootstrap(n, ...), got {options!r}")
    B, seed0, level = int(options.n), int(options.seed), options.level
    spec = _bootstrap_spec(params, shape, voxel_nm, settings)
    out = store.prepare(options.folder or tempfile.mkdtemp(prefix="jaxcba-bootstrap-"), spec)
    done = {r.get("job"): r for r in store.load_rows(out)}
    bar = meter(B, "bootstrap twins", "twin", enabled=progress)
    rows = []
    with store.ResultWriter(out) as writer:
        for b in range(B):
            seed = seed0 + b
            job = _twin_id(spec, seed)
            if job in done:
                rows.append(done[job])
                bar.update(1)
                continue
            t0 = time.perf_counter()
            twin = np.asarray(simulate(params, tuple(shape), voxel_nm, seed))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = recalibrate(twin)
                fit = {k: float(v) for k, v in res.params.to_dict().items()}
                bad = [k for k, v in fit.items() if not math.isfinite(v)]
                if bad:
                    raise FloatingPointError(f"non-finite fitted parameters: {', '.join(bad)}")
                row = {"job": job, "seed": seed, "params": fit, "converged": bool(res.converged), "error": None}
            except MemoryError:
                raise
            except Exception as exc:  # a failed twin (refused input, numerical error, ...): recorded, the others go on
                row = {"job": job, "seed": seed, "params": None, "converged": False,
                       "error": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__}
            row["seconds"] = time.perf_counter() - t0
            writer.write(row)
            rows.append(row)
            bar.update(1)
    bar.close()
    return bootstrap_set(params, voxel_nm, rows, level=level, fixed=fixed, folder=str(out))


def bootstrap_set(params: CBAParams, voxel_nm: float, rows: list[dict], *, level: float = LEVEL,
                  fixed: dict | None = None, folder: str = "", max_failed: float = MAX_FAILED) -> UncertaintySet:
    """Intervals from the twins' rows (each ``{"params": {...} | None, "converged": bool}``; a row
    with ``params`` null is a failed twin, its ``error`` and ``seed`` listed in ``failures``).

    Each fitted quantity's ``se`` is the twins' standard deviation on its scale (derived quantities
    from the twins' own derived values, not linearised); a significant bias of the twins' mean
    widens the interval to the bias-corrected estimate; twins without spread give no interval
    (module docstring); a quantity at the edge of its scale in the
    fit or in a twin (a parameter at 0, a fraction at 0 or 1) gets ``estimate +- t se`` on the
    natural scale, cut at the edge, its note giving the number of twins at the edge. No interval
    (a note says why) with fewer than two twins calibrated or more than ``max_failed`` of the rows
    failed. ``fixed``: parameter -> fixed state (as in :func:`intervals`); ``lambda_x = 0`` in
    ``params`` (two-phase) fixes the graphite parameters; twins fitted with ``lambda_x = 0`` when
    ``params`` has graphite are left out of the intervals of ``alpha1``, ``alpha2``, ``gamma`` and
    the mean half-axes (placeholders there). The rows' values are used as written (no range check:
    a value of 0 is kept)."""
    good = [r for r in rows if r.get("params") is not None]
    failed = [r for r in rows if r.get("params") is None]
    n, total = len(good), len(rows)
    two_phase = params.to_dict()["lambda_x"] == 0.0
    fitted = {k: "fit" for k in FIELDS}
    fitted.update(fixed or {})
    if two_phase:
        fitted.update({k: _TWO_PHASE for k in _GRAPHITE})
    dof = max(n - 1, 1)
    quantile = float(scipy.stats.t.ppf(0.5 + level / 2.0, dof))
    n_conv = sum(1 for r in rows if r.get("converged"))
    notes = [f"{n} of {total} twins calibrated ({n_conv} converged)"]
    failures = tuple(f"seed {r.get('seed')}: {r.get('error') or 'no parameters'}" for r in failed)
    if failed:
        kinds: dict[str, int] = {}
        for r in failed:
            kind = r.get("error_type") or str(r.get("error") or "no parameters").split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        notes.append(f"{len(failed)} of {total} twins failed ({', '.join(f'{c} {k}' for k, c in kinds.items())}); "
                     "the others went on (the errors: failures)")
    why = None
    if failed and len(failed) > max_failed * total:
        why = (f"{len(failed)} of {total} bootstrap twins failed (more than {100 * max_failed:g} %): no bootstrap "
               f"interval from the {n} left")
    elif n < 2:
        why = f"only {n} twin(s) calibrated"
    if why is not None:
        fitted = {k: (v if _is_fixed(v) else why) for k, v in fitted.items()}
        notes.append(why)
    values = params.to_dict()
    with jax.enable_x64(True):
        nat = derived_values(params, voxel_nm)
    X = np.array([[float(r["params"][k]) for k in FIELDS] for r in good], dtype=float).reshape(n, len(FIELDS))
    Y = _twins_derived(X, voxel_nm)
    # a twin fitted without graphite (lambda_x = 0: no label 2 in its window) has placeholder shapes
    shapes_of = np.ones(n, dtype=bool) if two_phase else X[:, 0] > 0.0
    if not shapes_of.all() and any(fitted[k] == "fit" for k in _GRAPHITE[1:]):
        notes.append(f"{int((~shapes_of).sum())} of {n} twins fitted without graphite (lambda_x = 0): left out of "
                     "the intervals of alpha1, alpha2, gamma and the mean half-axes (their values are placeholders)")
    shaped = set(_GRAPHITE[1:]) | {"alpha1/gamma", "alpha2/gamma"}
    out_p = tuple(_spread_interval(k, unit, values[k], X[shapes_of if k in shaped else slice(None), i], PARAM_SCALE[k],
                                   fitted[k], quantile, notes)
                  for i, (k, unit) in enumerate(FIELDS.items()))
    out_d = tuple(_spread_interval(name, unit, nat[name], Y[shapes_of if name in shaped else slice(None), j], scale,
                                   _derived_state(name, fitted, two_phase)[0], quantile, notes)
                  for j, (name, unit, scale) in enumerate(DERIVED))
    if folder:
        notes.append(f"twins' results: {folder}/results.jsonl (rerun to resume)")
    how = (f"parametric bootstrap: {total} twins simulated from the fitted parameters in the image's window and "
           f"voxel size, recalibrated; t quantile with {dof} degrees of freedom")
    return UncertaintySet(method="bootstrap", how=how, level=level, quantile=quantile, dof=dof, n=n,
                          parameters=out_p, derived=out_d, notes=tuple(notes), failed=len(failed), failures=failures)


def _twins_derived(X: np.ndarray, voxel_nm: float) -> np.ndarray:
    """The derived quantities (:data:`DERIVED`, natural units) of the twins' parameters ``X`` (n, 8),
    shape (n, len(DERIVED)); a parameter at 0 (``lambda_x = 0``; ``lambda_y = 0``: ``V3 = 0``) is used
    as it is (float64, traced: no range check)."""
    from jaxcba.theory import volume_fractions

    def one(x):
        p = CBAParams(**{k: x[i] for i, k in enumerate(FIELDS)})
        vf = volume_fractions(p, voxel_nm)
        vals = {"V1": vf.graphite, "V2": vf.excursion, "V3": vf.pores_removed, "V": vf.solid,
                "alpha1/gamma": p.alpha1 / p.gamma, "alpha2/gamma": p.alpha2 / p.gamma, "1/eta": 1.0 / p.eta,
                "1/theta": 1.0 / p.theta}
        return jnp.stack([vals[name] for name, _, _ in DERIVED])

    if not len(X):
        return np.zeros((0, len(DERIVED)))
    with jax.enable_x64(True):
        return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(X, jnp.float64)), dtype=float)


#: The open range of each interval scale; a value on its edge is handled on the natural scale.
_RANGE = {"log": (0.0, math.inf), "logit": (0.0, 1.0), "identity": (-math.inf, math.inf)}


def _np_scale(x, scale: str):
    x = np.asarray(x, dtype=float)
    if scale == "log":
        return np.log(x)
    if scale == "logit":
        return np.log(x) - np.log1p(-x)
    return x


def _spread_interval(name, unit, value, xs, scale, state, quantile, notes: list) -> Interval:
    """The bootstrap interval of one quantity from the twins' values ``xs`` (natural units): the
    spread on ``scale`` if the fit and every twin lie inside its open range, else on the natural
    scale cut at the range's edge (a note, and a line in ``notes``, say how many twins are there)."""
    if state != "fit":
        return _interval(name, unit, value, math.nan, math.nan, scale, state, quantile, "bootstrap")
    xs = np.asarray(xs, dtype=float)
    if len(xs) < 2:
        return _interval(name, unit, value, math.nan, math.nan, scale, f"only {len(xs)} twin(s) with a value of it",
                         quantile, "bootstrap")
    if not np.all(np.isfinite(xs)) or not math.isfinite(value):
        return _interval(name, unit, value, math.nan, math.nan, scale, "a twin's value is not finite", quantile,
                         "bootstrap")
    if np.ptp(xs) == 0.0:  # e.g. every twin at the same edge of a scan: a zero width would claim certainty
        return _interval(name, unit, value, math.nan, math.nan, scale,
                         f"the twins did not spread (all {len(xs)} at {xs[0]:.4g}{'' if unit == '1' else ' ' + unit}): "
                         "no bootstrap interval", quantile,
                         "bootstrap")
    lo_r, hi_r = _RANGE[scale]
    inside = (xs > lo_r) & (xs < hi_r)
    if lo_r < value < hi_r and inside.all():
        ys, y = _np_scale(xs, scale), float(_np_scale(value, scale))
        sd = float(np.std(ys, ddof=1))
        bias = float(np.mean(ys)) - y
        if abs(bias) <= quantile * sd / math.sqrt(len(ys)):
            return _interval(name, unit, value, y, sd * sd, scale, "fit", quantile, "bootstrap")
        return _biased_interval(name, unit, value, y, sd, bias, scale, quantile, notes)
    edge = "0" if scale == "log" else "0 or 1"
    at = int((~inside).sum())
    sd = float(np.std(xs, ddof=1))
    fit_at = "" if lo_r < value < hi_r else f", the fit at {value:g}"
    note = (f"{at} of {len(xs)} twins at {edge}{fit_at}: interval on the natural scale (estimate +- t se, cut at "
            f"{edge})")
    notes.append(f"{name}: {at} of {len(xs)} twins ({100 * at / len(xs):.0f} %) at {edge}{fit_at}")
    return Interval(name=name, value=value, unit=unit, se=sd, lo=max(value - quantile * sd, lo_r),
                    hi=min(value + quantile * sd, hi_r), scale="identity", method="bootstrap", note=note)


def _biased_interval(name, unit, value, y, sd, bias, scale, quantile, notes: list) -> Interval:
    """The bootstrap interval of a quantity whose twins' mean on ``scale`` lies significantly off the
    fit ``y`` (``|bias| > t se / sqrt(B')``): the recalibration is biased here, so the interval spans
    both ``y +- t se`` and the bias-corrected ``y - bias +- t se``, and its note says so."""
    corrected = _from_scale(y - bias, scale)
    lo = _from_scale(min(y, y - bias) - quantile * sd, scale)
    hi = _from_scale(max(y, y - bias) + quantile * sd, scale)
    shift = f"{abs(bias) / sd:.1f} se" if sd > 0 else "its whole spread"
    note = (f"biased: the twins' mean lies {shift} {'above' if bias > 0 else 'below'} the fit on the {scale} scale; "
            f"the interval spans the fit and the bias-corrected estimate {corrected:.4g}")
    notes.append(f"{name}: {note}")
    return Interval(name=name, value=value, unit=unit, se=abs(_natural_slope(value, scale)) * sd, lo=lo, hi=hi,
                    scale=scale, method="bootstrap", note=note)


def params_document(params: CBAParams, uncertainty: Uncertainty | None) -> dict:
    """``params.json``: the eight values and, beside them, the ``uncertainty`` block (loadable by
    :meth:`CBAParams.from_dict`, which ignores the block)."""
    doc = dict(params.to_dict())
    if uncertainty is not None:
        doc["uncertainty"] = uncertainty.to_dict()
    return doc


def write_params(path, params: CBAParams, uncertainty: Uncertainty | None) -> str:
    """Write :func:`params_document` as strict JSON, atomically; returns the text."""
    from jaxcba.io import write_text_atomic

    text = json.dumps(params_document(params, uncertainty), indent=2, allow_nan=False) + "\n"
    if path is not None:
        write_text_atomic(Path(path), text)
    return text
