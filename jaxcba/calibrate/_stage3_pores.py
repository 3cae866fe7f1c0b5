"""Stage 3 (paper Section 3.2.3, Eqs. 24-26): the large-pore Boolean model Ξ3 — ``lambda_Y`` from
the total volume fraction (Eq. 25) for every trial ``theta``, and ``theta`` by minimising the L1
distance between the pore-phase CPSD (Eq. 26) of model realizations and of the image.

Searches over ``theta`` (strategy objects, ``fit_pores(..., search=...)``):

* :class:`ScanBrent` (default, ``"golden"``): a log-spaced scan of ``theta`` (neighbour ratio
  ``ratio``), the mean ball radius ``1 / theta`` from 1 voxel to the smaller of 1/4 of the window's
  smallest side and twice the image's largest pore radius (:func:`scan_range_vox`), or over a user
  ``bracket``; then Brent on ``log theta`` from the best scan point and its two neighbours. A hint
  adds one scan point. A best scan point at the first or last point of the range is reported as
  not converged, naming the edge; a smallest L1 distance tied at two or more scan points (a flat
  objective, e.g. no large pores, ``lambda_Y`` ~ 0) as not converged, ``theta`` not identified.
* :class:`Grid` (``"grid"``): the paper's seven values (:data:`PAPER_THETA_GRID`, scaled to the
  hint) or given ``thetas``; the best one, not converged when it is at an edge of the grid or tied.
* both (``"both"`` or ``(Grid(), ScanBrent())``): the lower L1 distance wins; every search is kept.

The objective (:class:`CpsdObjective`) uses common random numbers: per realization key one
Ξ1 ∪ Ξ2 and one fixed pool of ball candidates (:mod:`jaxcba.calibrate._balls`), so trial
``theta`` differ only in ball sizes. ``lambda_Y`` comes from Eq. 25 with ``V`` and ``V1`` measured
on the image, so ``1 - V3 = q / V2`` with ``q`` the cb fraction of the graphite-free voxels.
The variance reductions (:class:`Realizations`, all exact for the model):

* ``match_fraction``: each realization carves as many pool balls (in arrival order) as make its
  cb fraction in the graphite-free voxels equal the image's;
* ``condition_on_graphite``: the realizations use the image's own graphite (Ξ1 is independent of
  Ξ2, Ξ3) and simulate only Ξ2 ∩ Ξ3^c outside it;
* ``match_v2`` (default with the profile search): each realization thresholds its field at the
  quantile that gives exactly the fitted ``V2`` in the graphite-free voxels.

Profile search (``FromStage2.profile``, the pipeline's default after the masked stage 2): at each
trial ``theta`` Ξ2's ``(mu, eta, V2)`` come from ``profile(theta)`` (stage 2 re-fitted
at that ``theta``); the result's ``excursion`` holds the refit at the chosen ``theta``.

The L1 distance is ``∫ |CPSD_model(r) - CPSD_image(r)| dr`` [nm] (trapezoid rule on the radius
grid 1, 2, 3, ... voxels, :data:`CPSD_STEP_VOX`), with ``CPSD_model`` the mean of the
realizations' CPSDs. Measurements and the reasons for these defaults: docs/calibration.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax
import numpy as np
import scipy.optimize

from jaxcba._progress import NULL, meter
from jaxcba.calibrate._balls import ball_mask, carve, draw_pool, first_cover
from jaxcba.calibrate._measure import checked_labels, l1_distance, pore_cpsd
from jaxcba.calibrate._result import Result, field
from jaxcba.calibrate._stage2_excursion import ExcursionGivenTheta
from jaxcba.descriptors.pore_size import radius_grid
from jaxcba.model import simulate
from jaxcba.model.gaussian_field import field_from_key
from jaxcba.model.params import CBAParams
from jaxcba.theory import lambda_y_for_ball_fraction, lambda_y_for_fraction

#: The paper's grid of theta [nm^-1] (Section 3.2.3), 3 realizations each.
PAPER_THETA_GRID = (0.0125, 0.0118, 0.0111, 0.0105, 0.0100, 0.0095, 0.0091)
SEARCHES = ("golden", "grid", "both")
#: Default scan range of the mean ball radius ``1 / theta``: 1 voxel .. this fraction of the window's smallest side.
#: The upper end is also at most ``R_MAX_PORES`` times the image's largest pore radius (its CPSD's zero).
R_MIN_VOX = 1.0
R_MAX_FRACTION = 0.25
R_MAX_PORES = 2.0
#: Ratio of neighbouring theta in the default log-spaced scan.
SCAN_RATIO = 1.6
#: Step of the CPSD radius grid [voxels] of the L1 distance (1, 2, 3, ...).
CPSD_STEP_VOX = 1.0
#: Ball pool sized for this multiple of Eq. 25's lambda_Y at the largest trial theta (``match_fraction``).
POOL_HEADROOM = 4.0
#: Profile search (``FromStage2.profile``): the pool has room for at least this ball fraction at every theta.
PROFILE_POOL_V3 = 0.5
#: Relative difference of L1 distances below which two trial theta tie (a flat objective: theta not identified).
TIE_RTOL = 1e-9
#: Step in ``log theta`` of the central difference of the model CPSD (``fit_pores(sensitivity=True)``).
SENSITIVITY_STEP = 0.1


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True, kw_only=True)
class ThetaSearch(Result):
    """One search over theta: the best ``theta`` [nm^-1], its ``lambda_y`` [nm^-3] and ``l1`` [nm],
    every evaluation (``thetas``/``l1s`` in call order), the realizations drawn, the cost; ``scan``:
    the :class:`ScanBrent` scan points (the first ``len(scan)`` evaluations; empty for a grid);
    ``cpsd_model``: the mean CPSD of the realizations at ``theta`` (on ``Stage3Result.r_nm``)."""

    method: str
    theta: float
    lambda_y: float
    l1: float = field(key="l1_nm")
    scan: tuple[float, ...] = ()
    thetas: tuple[float, ...]
    l1s: tuple[float, ...] = field(key="l1s_nm")
    realizations: int
    seconds: float
    converged: bool
    message: str
    cpsd_model: np.ndarray


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage3Result(Result):
    """Outcome of stage 3: ``theta`` [nm^-1], ``lambda_y`` [nm^-3] and ``l1`` [nm] of the best search
    (``best``, JSON: its method), every search (``searches``, JSON: keyed by method), the image's
    CPSD on ``r_nm`` [nm], the fractions used in Eq. 25 (``v_total``, ``v1``, ``v2``), the
    realization ``window``, and ``excursion``: the profile refit at ``theta`` (else ``None``)."""

    excursion: ExcursionGivenTheta | None = None
    theta: float
    lambda_y: float
    l1: float = field(key="l1_nm")
    best_method: str = field(key="best")
    searches: tuple[ThetaSearch, ...] = field(keyed_by="method")
    r_nm: np.ndarray
    cpsd_image: np.ndarray
    v_total: float
    v1: float
    v2: float
    window: tuple[int, ...]
    converged: bool
    message: str
    seconds: float
    sensitivity: dict | None = field(None, json=False)

    @property
    def best(self) -> ThetaSearch:
        """The search that gave ``theta``."""
        return next(s for s in self.searches if s.method == self.best_method)


# ----------------------------------------------------------------------------- strategies
def _check_finite_l1(thetas, l1s) -> None:
    """A non-finite L1 distance is a failure of the objective (an internal error), not bad input."""
    bad = [f"{t:.4g}" for t, v in zip(thetas, l1s) if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"stage 3: the L1 distance of the pore CPSDs is not finite at theta = {', '.join(bad)} nm^-1")


def _flat_message(thetas, l1s, what: str) -> str:
    """``""``, or the "not identified" message when the smallest L1 distance is reached at more than
    one ``theta`` (equal within :data:`TIE_RTOL`): the pore CPSD does not tell these theta apart, e.g.
    when Eq. 25 leaves (almost) no large pores (``lambda_Y`` ~ 0) and every trial carves the same."""
    l1s = np.asarray(l1s, float)
    i = int(np.argmin(l1s))
    tied = np.nonzero(l1s <= l1s[i] + TIE_RTOL * abs(l1s[i]))[0]
    t = np.asarray(thetas, float)
    if len(np.unique(t[tied])) < 2:
        return ""
    return (f"not converged: theta is not identified: the L1 distance of the pore CPSDs is flat, {l1s[i]:.4g} nm "
            f"at {len(tied)} of {len(l1s)} {what} values theta = {', '.join(f'{v:.4g}' for v in np.unique(t[tied]))} nm^-1 "
            f"(the image's pore CPSD does not tell these ball sizes apart, e.g. no large pores: lambda_Y ~ 0); "
            f"kept theta = {t[i]:.4g} nm^-1")


@dataclasses.dataclass(frozen=True)
class ScanBrent:
    """Log-spaced scan, then Brent on ``log theta`` (module docstring).

    ``bracket``: ``(theta_lo, theta_hi)`` [nm^-1] replacing the default range (:func:`scan_range_vox`);
    ``ratio``: neighbouring scan points' ratio (> 1); ``xtol``: tolerance in ``log theta``;
    ``max_evals``: Brent's iteration budget after the scan.
    """

    bracket: tuple[float, float] | None = None
    ratio: float = SCAN_RATIO
    xtol: float = 0.01
    max_evals: int = 12
    name = "golden"

    def __post_init__(self):
        if self.bracket is not None:
            lo, hi = (float(x) for x in self.bracket)
            if not (0 < lo < hi and math.isfinite(hi)):
                raise ValueError(f"bracket must satisfy 0 < theta_lo < theta_hi [nm^-1], got {(lo, hi)}")
            object.__setattr__(self, "bracket", (lo, hi))
        if not (self.ratio > 1.0 and math.isfinite(self.ratio)):
            raise ValueError(f"scan ratio must be a finite number > 1, got {self.ratio}")
        if not (self.xtol > 0 and math.isfinite(self.xtol)) or not (isinstance(self.max_evals, int) and self.max_evals >= 1):
            raise ValueError(f"xtol must be > 0 and max_evals an integer >= 1, got {self.xtol}, {self.max_evals}")

    def points(self, window, r_zero_vox: float, voxel_nm: float, hint: float) -> np.ndarray:
        """The scan points [nm^-1], ascending (the hint added when inside the range and not near a point)."""
        if self.bracket is not None:
            lo, hi = self.bracket
        else:
            r_lo, r_hi = scan_range_vox(window, r_zero_vox)
            lo, hi = 1.0 / (r_hi * voxel_nm), 1.0 / (r_lo * voxel_nm)
        n_scan = max(3, math.ceil(math.log(hi / lo) / math.log(self.ratio) - 1e-9) + 1)
        scan = np.geomspace(lo, hi, n_scan)
        if lo < hint < hi and np.min(np.abs(np.log(scan / hint))) > 0.1 * math.log(self.ratio):
            scan = np.sort(np.append(scan, hint))  # the hint is one more scan point, never a limit
        return scan

    def run(self, objective: "CpsdObjective", scan) -> ThetaSearch:
        t0, n0, trace = time.perf_counter(), objective.n_evaluated, []
        ref = float(scan[0])

        def f(x):  # x = log theta - log theta_ref + 10 (|x| ~ 10: Brent's tolerance is relative)
            theta = math.exp(x - 10.0) * ref
            trace.append((theta, objective(theta)[1]))
            return trace[-1][1]

        l1s = [f(10.0 + math.log(t / ref)) for t in scan]
        _check_finite_l1(scan, l1s)
        i = int(np.argmin(l1s))
        where = "given bracket" if self.bracket is not None else "default scan range (scan_range_vox)"
        flat = _flat_message(scan, l1s, "scan")
        if flat:  # Brent needs f(centre) strictly below both neighbours; a tie is no bracket but a flat objective
            theta, converged, message = float(scan[i]), False, flat
        elif i in (0, len(scan) - 1):
            theta, converged = float(scan[i]), False
            side = "lower edge (largest balls, theta_lo)" if i == 0 else "upper edge (smallest balls, theta_hi)"
            message = (f"not converged: the best scan value theta = {theta:.4g} nm^-1 lies at the {side} of the "
                       f"{where} [{scan[0]:.4g}, {scan[-1]:.4g}] nm^-1: widen the range (bracket=...) beyond that edge")
        else:
            xs = [10.0 + math.log(scan[j] / ref) for j in (i - 1, i, i + 1)]
            try:
                res = scipy.optimize.minimize_scalar(f, bracket=tuple(xs), method="brent",
                                                     options={"xtol": self.xtol / 10.0, "maxiter": self.max_evals})
            except ValueError as exc:  # an internal failure (the bracket was checked above), not bad input
                raise RuntimeError(f"stage 3: Brent refinement of theta failed: {exc}") from exc
            theta = math.exp((res.x if res.fun <= l1s[i] else xs[1]) - 10.0) * ref
            converged = bool(res.success)
            message = (f"log-spaced scan of {len(scan)} theta over the {where}, then Brent on log theta between "
                       f"{scan[i - 1]:.4g} and {scan[i + 1]:.4g} nm^-1 (common random numbers)"
                       if converged else f"not converged: Brent refinement stopped: {res.message.strip()}")
        lam, l1, mean = objective(theta)
        return ThetaSearch(
            method=self.name, theta=theta, lambda_y=lam, l1=l1, thetas=tuple(t for t, _ in trace),
            l1s=tuple(v for _, v in trace), realizations=(objective.n_evaluated - n0) * objective.n_realizations,
            seconds=time.perf_counter() - t0, converged=converged, message=message, cpsd_model=mean,
            scan=tuple(t for t, _ in trace[: len(scan)]),
        )


@dataclasses.dataclass(frozen=True)
class Grid:
    """The paper's search: the best of ``thetas`` [nm^-1] (default :data:`PAPER_THETA_GRID` scaled
    so that its 0.0105 lands on the hint)."""

    thetas: tuple[float, ...] | None = None
    name = "grid"

    def __post_init__(self):
        if self.thetas is not None:
            grid = np.asarray(self.thetas, float).ravel()
            if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
                raise ValueError(f"thetas must be finite numbers > 0 [nm^-1], got {grid.tolist()}")
            object.__setattr__(self, "thetas", tuple(float(t) for t in grid))

    def points(self, window, r_zero_vox: float, voxel_nm: float, hint: float) -> np.ndarray:
        return (np.asarray(PAPER_THETA_GRID) * hint / 0.0105) if self.thetas is None else np.asarray(self.thetas)

    def run(self, objective: "CpsdObjective", grid) -> ThetaSearch:
        t0, n0 = time.perf_counter(), objective.n_evaluated
        results = [objective(t) for t in grid]
        l1s = [r[1] for r in results]
        _check_finite_l1(grid, l1s)
        i = int(np.argmin(l1s))
        at_edge = i in (0, len(grid) - 1) and len(grid) > 2
        flat = _flat_message(grid, l1s, "grid")
        return ThetaSearch(
            method=self.name, theta=float(grid[i]), lambda_y=results[i][0], l1=results[i][1],
            thetas=tuple(map(float, grid)), l1s=tuple(l1s),
            realizations=(objective.n_evaluated - n0) * objective.n_realizations, seconds=time.perf_counter() - t0,
            converged=not (at_edge or flat),
            message=flat or ("best grid value at the edge of the grid: widen it" if at_edge else "best of the grid"),
            cpsd_model=results[i][2],
        )


def searches_of(search) -> tuple:
    """``"golden"``, ``"grid"``, ``"both"``, a strategy or a tuple of strategies -> a tuple of strategies."""
    if isinstance(search, str):
        if search not in SEARCHES:
            raise ValueError(f"unknown theta search {search!r}; allowed: {', '.join(SEARCHES)}")
        return {"golden": (ScanBrent(),), "grid": (Grid(),), "both": (Grid(), ScanBrent())}[search]
    out = tuple(search) if isinstance(search, (tuple, list)) else (search,)
    if not out or not all(isinstance(s, (ScanBrent, Grid)) for s in out):
        raise ValueError(f"search must be 'golden', 'grid', 'both', ScanBrent(...), Grid(...) or a tuple of them, "
                         f"got {search!r}")
    if len({s.name for s in out}) != len(out):
        raise ValueError("search: at most one ScanBrent and one Grid")
    return out


@dataclasses.dataclass(frozen=True)
class Realizations:
    """The realizations of stage 3's objective (module docstring).

    ``n``: realizations per trial theta (the same keys for every theta); ``window``: their shape
    (default the image's; ``condition_on_graphite`` needs the image's); ``seed``: of their keys;
    ``match_fraction``, ``condition_on_graphite``, ``match_v2``: the variance reductions
    (``match_v2=None``: on with the profile search, ``FromStage2.profile``, off without).
    """

    n: int = 3
    window: tuple[int, int, int] | None = None
    seed: int = 0
    match_fraction: bool = True
    condition_on_graphite: bool = True
    match_v2: bool | None = None

    def __post_init__(self):
        if not (isinstance(self.n, (int, np.integer)) and self.n >= 1):
            raise ValueError(f"n_realizations must be >= 1, got {self.n}")
        if self.window is not None:
            object.__setattr__(self, "window", tuple(int(s) for s in np.broadcast_to(self.window, (3,))))


# ----------------------------------------------------------------------------- objective
def lambda_y_for(v_total: float, v1: float, v2: float, theta: float) -> float:
    """Eq. 25 (theory layer) [nm^-3]; ``ValueError`` when no ``lambda_Y >= 0`` reaches ``v_total``."""
    lam = float(lambda_y_for_fraction(v_total, v1, v2, theta))
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(
            f"Eq. 25 has no solution: the solid fraction V = {v_total:.4f} needs V2 (1 - V1) >= V - V1 with "
            f"V1 = {v1:.4f}, V2 = {v2:.4f} (V2 (1 - V1) = {v2 * (1 - v1):.4f}); the excursion set of stage 2 "
            "is too sparse to leave room for large pores"
        )
    return lam


def scan_range_vox(window, r_zero_vox: float) -> tuple[float, float]:
    """Default scan range of the mean ball radius ``1 / theta`` [voxels]: from :data:`R_MIN_VOX` to
    ``min(R_MAX_FRACTION * min(window), R_MAX_PORES * r_zero_vox)`` (at least twice the lower end),
    with ``r_zero_vox`` the largest radius at which the image's CPSD is still > 0."""
    r_hi = min(R_MAX_FRACTION * min(window), R_MAX_PORES * r_zero_vox)
    return R_MIN_VOX, max(2.0 * R_MIN_VOX, r_hi)


def _matched_balls(base, pool, window, theta_vox, q_target, lam_vox):
    """Balls of the first K pool candidates, K making the cb fraction of graphite-free voxels ~ ``q_target``.

    Only the candidates arriving before ``2 lam_vox`` (Eq. 25's intensity) are drawn first, then
    twice as many until they remove enough carbon black (a sparse realization) or the pool ends.
    """
    cb = base == 1
    excess = np.count_nonzero(cb) - q_target * np.count_nonzero(base != 2)  # cb voxels to remove
    if excess <= 0:
        return np.zeros(base.shape, bool)
    lam = 2.0 * lam_vox
    while True:
        n = int(np.searchsorted(pool.t, lam))
        idx = first_cover(pool, window, theta_vox, n=n)
        removed = np.cumsum(np.bincount(idx[cb], minlength=n + 1)[:n])  # removed[k] = cb voxels with idx <= k
        if (n and removed[-1] >= excess) or n == len(pool.t):
            break
        lam *= 2.0
    k = min(int(np.searchsorted(removed, excess)), n - 1)  # first k with removed[k] >= excess
    return idx <= k


class ImageCpsd:
    """The image's side of stage 3: fractions (``v_total``, graphite ``v1``, cb-in-graphite-free ``q``)
    and the pore CPSD on ``radii_vox`` (1, 2, ... voxels up to a little past its zero at ``r_zero_vox``)."""

    def __init__(self, vol: np.ndarray, voxel_nm: float):
        self.v_total = float(np.count_nonzero(vol)) / vol.size
        self.v1 = float(np.count_nonzero(vol == 2)) / vol.size
        if self.v1 >= 1.0:
            raise ValueError("the volume is all graphite: stage 3 (large pores) needs graphite-free voxels")
        self.q = float(np.count_nonzero(vol == 1)) / float(np.count_nonzero(vol != 2))
        radii_vox = radius_grid(0.25 * min(vol.shape), CPSD_STEP_VOX)
        cpsd = pore_cpsd(vol, voxel_nm, radii_vox)
        last = int(np.max(np.nonzero(cpsd > 0)[0], initial=0))
        self.r_zero_vox = float(radii_vox[last])
        self.radii_vox = radii_vox[: min(last + 2, len(radii_vox))]  # a little past the image's zero
        self.cpsd = cpsd[: len(self.radii_vox)]
        self.r_nm = self.radii_vox * voxel_nm

    def hint(self) -> float:
        """``1 / r50`` [nm^-1], with ``r50`` where the image's CPSD falls below 0.5."""
        half = np.nonzero(self.cpsd < 0.5)[0]
        return 1.0 / (self.r_nm[half[0]] if half.size else self.r_nm[-1])


class CpsdObjective:
    """``objective(theta) -> (lambda_Y [nm^-3], L1 [nm], mean model CPSD)``, cached per ``theta``.

    Common random numbers: per key ``2 i`` one Ξ2 field (and, without ``condition_on_graphite``, one
    Ξ1), per key ``2 i + 1`` one ball pool drawn for ``theta >= theta_lo`` (module docstring).
    """

    def __init__(self, vol, voxel_nm: float, base: CBAParams, v2: float, image: ImageCpsd, real: Realizations,
                 excursion_for_theta: Callable | None, theta_range: tuple[float, float], bar=NULL):
        self.vol, self.voxel_nm, self.base, self.v2, self.image = vol, voxel_nm, base, v2, image
        self.window = tuple(vol.shape) if real.window is None else real.window
        self.n_realizations, self.real, self.excursion_for_theta, self.bar = real.n, real, excursion_for_theta, bar
        self.match_v2 = excursion_for_theta is not None if real.match_v2 is None else bool(real.match_v2)
        self.keys = jax.random.split(jax.random.PRNGKey(real.seed), 2 * real.n)
        theta_lo, theta_hi = theta_range
        lam_max = POOL_HEADROOM * lambda_y_for(image.v_total, image.v1, v2, theta_hi)
        if excursion_for_theta is not None:  # V2 varies with theta: room for up to PROFILE_POOL_V3 of balls
            lam_max = max(lam_max, float(lambda_y_for_ball_fraction(PROFILE_POOL_V3, theta_hi)))
        self.no_balls = base.replace(theta=1.0, lambda_y=1e-30)
        self.graphites = self._graphites()
        self.pools = [draw_pool(self.keys[2 * i + 1], self.window, theta_lo * voxel_nm, lam_max * voxel_nm**3)
                      for i in range(real.n)]
        self.profiles: dict[float, ExcursionGivenTheta] = {}
        self._bases: dict = {}
        self._cache: dict[float, tuple] = {}

    @property
    def n_evaluated(self) -> int:
        return len(self._cache)

    def _graphites(self) -> list[np.ndarray]:
        if self.real.condition_on_graphite:
            if self.window != self.vol.shape:
                raise ValueError(f"condition_on_graphite needs the realization window to be the image's shape "
                                 f"{self.vol.shape}, got {self.window}")
            return [self.vol == 2] * self.n_realizations  # the image's own Ξ1
        return [np.asarray(simulate(self.no_balls, self.window, self.voxel_nm, self.keys[2 * i])) == 2
                for i in range(self.n_realizations)]

    def _bases_for(self, mu: float, eta: float, v2_t: float) -> list[np.ndarray]:
        """Ξ1 ∪ Ξ2 for each realization key (the same keys for every trial: common random numbers)."""
        if (mu, eta, v2_t) not in self._bases:
            out = []
            for i, g in enumerate(self.graphites):
                if self.match_v2:  # threshold at the field's (1 - V2)-quantile over the graphite-free voxels
                    z = np.asarray(field_from_key(self.keys[2 * i], self.window, eta * self.voxel_nm))
                    cb = z >= np.quantile(z[~g], 1.0 - v2_t)
                else:
                    p = self.no_balls.replace(lambda_x=1e-30, mu=mu, eta=eta)
                    cb = np.asarray(simulate(p, self.window, self.voxel_nm, self.keys[2 * i])) == 1
                out.append(np.where(g, np.uint8(2), cb.astype(np.uint8)))
            self._bases.clear()  # one entry: trial theta are cached as results, never re-simulated
            self._bases[(mu, eta, v2_t)] = out
        return self._bases[(mu, eta, v2_t)]

    def _excursion(self, theta: float):
        """``(bases, lambda_Y)`` at ``theta``: stage 2's Ξ2, or the profile refit's."""
        img = self.image
        if self.excursion_for_theta is None:
            return self._bases_for(self.base.mu, self.base.eta, self.v2), lambda_y_for(img.v_total, img.v1, self.v2,
                                                                                       theta)
        ex = self.profiles[theta] = self.excursion_for_theta(theta)
        try:
            lam = lambda_y_for(img.v_total, img.v1, ex.v2, theta)
        except ValueError:  # the profile put (almost) no balls at this theta
            lam = float(lambda_y_for_ball_fraction(1e-3, theta))
        return self._bases_for(ex.mu, ex.eta, ex.v2), lam

    def __call__(self, theta: float):
        theta = float(theta)
        if theta in self._cache:
            return self._cache[theta]
        bases, lam = self._excursion(theta)
        theta_vox, lam_vox = theta * self.voxel_nm, lam * self.voxel_nm**3
        curves = []
        for b, pool in zip(bases, self.pools):
            if self.real.match_fraction:
                balls = _matched_balls(b, pool, self.window, theta_vox, self.image.q, lam_vox)
            else:
                balls = ball_mask(pool, self.window, lam_vox, theta_vox)
            curves.append(pore_cpsd(carve(b, balls), self.voxel_nm, self.image.radii_vox))
            self.bar.update(1)
        mean = np.mean(curves, axis=0)
        self._cache[theta] = (lam, l1_distance(self.image.r_nm, mean, self.image.cpsd), mean)
        return self._cache[theta]


# ----------------------------------------------------------------------------- fitting
def _check_v2(v2) -> float:
    if isinstance(v2, bool) or not isinstance(v2, (int, float, np.floating, np.integer)) or not (
            math.isfinite(v2) and 0.0 < v2 < 1.0):
        raise ValueError(f"v2 must lie in (0, 1), got {v2}")
    return float(v2)


@dataclasses.dataclass(frozen=True)
class FromStage2:
    """What stage 3 takes from stage 2 (``fit_pores``' fourth argument; a bare number is ``v2`` alone).

    ``v2``: the volume fraction of Ξ2 used in Eq. 25, in (0, 1); ``theta_hint`` [nm^-1]: stage 2's
    ``theta``, the grid's centre and one more scan point (``None``, or not finite and > 0: ``1 / r50``
    of the image's pore CPSD; it never narrows the scan); ``profile``: ``theta ->``
    :class:`ExcursionGivenTheta` (e.g. ``lambda t: refit_given_theta(s2, t)``), the profile search
    (module docstring), or ``None``: Ξ2 as ``base`` gives it at every ``theta``."""

    v2: float
    theta_hint: float | None = None
    profile: Callable[[float], ExcursionGivenTheta] | None = None

    def __post_init__(self):
        object.__setattr__(self, "v2", _check_v2(self.v2))
        if self.theta_hint is not None and (isinstance(self.theta_hint, bool) or not isinstance(
                self.theta_hint, (int, float, np.floating, np.integer))):
            raise ValueError(f"FromStage2.theta_hint must be a number [nm^-1] or None, got {self.theta_hint!r}")
        if self.profile is not None and not callable(self.profile):
            raise ValueError(f"FromStage2.profile must be a function theta -> ExcursionGivenTheta or None, "
                             f"got {self.profile!r}")


def fit_pores(labels, voxel_nm: float, base: CBAParams, stage2: "float | FromStage2", *, search="golden",
              realizations: Realizations = Realizations(), progress: bool = False,
              sensitivity: bool = False) -> Stage3Result:
    """Stage 3: ``(theta, lambda_Y)`` of Ξ3 (module docstring).

    Args:
        labels: ``(z, y, x)`` labels (0 pore, 1 cb, 2 graphite).
        voxel_nm: voxel side [nm].
        base: parameters of Ξ1 and Ξ2 (stages 1-2); its ``theta``, ``lambda_y`` are ignored.
        stage2: :class:`FromStage2` (``v2`` of Eq. 25, the hint, the profile re-fit), or the
            volume fraction ``v2`` of Ξ2 alone.
        search: :class:`ScanBrent` (default ``"golden"``), :class:`Grid` (``"grid"``), both
            (``"both"`` or a tuple; the lower L1 wins), :func:`searches_of`.
        realizations: :class:`Realizations` (number, window, seed, variance reductions).
        progress: tqdm bar on stderr.
        sensitivity: also evaluate the objective at ``theta * exp(+-SENSITIVITY_STEP)`` after the
            search and keep the slope of the model CPSD in ``log theta`` (``Stage3Result.sensitivity``,
            not in JSON: ``r_nm``, ``slope`` (R,), ``step``, ``n``), for the delta method of the uncertainty.
    """
    t_start = time.perf_counter()
    searches = searches_of(search)
    if not isinstance(realizations, Realizations):
        raise ValueError(f"realizations must be a Realizations(...), got {realizations!r}")
    vol = checked_labels(labels)
    window = tuple(vol.shape) if realizations.window is None else realizations.window
    given = stage2 if isinstance(stage2, FromStage2) else FromStage2(v2=stage2)
    v2, theta_hint, excursion_for_theta = given.v2, given.theta_hint, given.profile
    image = ImageCpsd(vol, voxel_nm)
    lambda_y_for(image.v_total, image.v1, v2, 1.0 / voxel_nm)  # reachability check (independent of theta)
    if theta_hint is None or not (math.isfinite(theta_hint) and theta_hint > 0):
        theta_hint = image.hint()
    points = [s.points(window, image.r_zero_vox, voxel_nm, theta_hint) for s in searches]
    theta_range = (min(float(p.min()) for p in points), max(float(p.max()) for p in points))
    bar = meter(None, "stage 3 (theta)", unit="realization", enabled=progress)
    objective = CpsdObjective(vol, voxel_nm, base, v2, image, realizations, excursion_for_theta, theta_range, bar)
    done = tuple(s.run(objective, p) for s, p in zip(searches, points))
    bar.close()
    best = min(done, key=lambda s: s.l1)
    excursion = objective.profiles.get(float(best.theta))
    slope = None
    if sensitivity:
        t_hi = best.theta * math.exp(SENSITIVITY_STEP)
        t_lo = max(best.theta * math.exp(-SENSITIVITY_STEP), theta_range[0])  # the ball pool's smallest theta
        up, down = objective(t_hi)[2], objective(t_lo)[2]
        slope = {"r_nm": image.r_nm, "slope": (up - down) / math.log(t_hi / t_lo), "step": SENSITIVITY_STEP,
                 "n": realizations.n}
    return Stage3Result(
        theta=best.theta, lambda_y=best.lambda_y, l1=best.l1, best_method=best.method, searches=done,
        r_nm=image.r_nm, cpsd_image=image.cpsd, v_total=image.v_total, v1=image.v1,
        v2=float(v2 if excursion is None else excursion.v2), window=window, converged=best.converged,
        message=best.message, seconds=time.perf_counter() - t_start, excursion=excursion, sensitivity=slope,
    )
