"""Stage 3 (paper Section 3.2.3, Eqs. 24-26): the large-pore Boolean model Ξ3 — ``lambda_Y`` from
the total volume fraction (Eq. 25) for every trial ``theta``, and ``theta`` by minimising the L1
distance between the pore-phase CPSD (Eq. 26) of model realizations and of the image.

Two searches over ``theta`` (both available, ``search="both"`` runs and reports both):

``"grid"`` — the paper's: seven ``theta`` values, ``n_realizations`` (3) each, pick the best.
The paper's grid ``0.0125 ... 0.0091 nm^-1`` was placed around its answer 0.0105; for other
images the same relative grid is centred on a hint (stage 2's ``theta`` by-product, or
``1 / r50`` of the image's pore CPSD).

``"golden"`` (default) — no hint needed: a coarse log-spaced scan of ``theta`` (ratio
:data:`SCAN_RATIO`) over a wide range, the mean ball radius ``1 / theta`` from 1 voxel to the
smaller of 1/4 of the window's smallest side and twice the image's largest pore radius (where
its CPSD reaches 0; :func:`scan_range_vox`), or over a user ``bracket``; then a Brent search on
``log theta`` (``scipy.optimize.minimize_scalar(method="brent")``) started from the best scan
point and its two neighbours. A hint only adds one scan point. When the best scan point is the
first or last of the range the search is reported as not converged, naming the edge. (The
earlier default, a bounded search in ``(hint / 2, 2 hint)`` around stage 2's by-product, missed
the truth of the 200^3 paper twin when the hint was 3x off and still reported convergence.)

Common random numbers (both searches): per realization key, Ξ1 ∪ Ξ2 is simulated once
(``jaxcba.simulate`` with a negligible ``lambda_Y``) and the balls are carved from one fixed
pool of candidates (:mod:`jaxcba.calibrate._balls`): between two trial ``theta`` the same
balls only grow or shrink and a few join or leave, so the objective is almost smooth in
``theta`` instead of noisy, the search converges between grid nodes, and a trial costs
only the carving and the CPSD, not a new realization.

``lambda_Y`` comes from Eq. 25 with ``V`` and ``V1`` measured on the image (``V1`` = its graphite
fraction; the paper uses stage 1's fitted ``V1``, which matches the image's to ~0.3 %): this fixes
``1 - V3 = q / V2`` with ``q`` the cb fraction of the graphite-free voxels, independent of how far
a small window's graphite fraction lies from the model's.

Variance reduction (``match_fraction=True``, default): in small windows the realized ball
fraction fluctuates by a factor ~3 between realizations (the exponential radii put most of the
volume in a few large balls), which swamps the CPSD's dependence on ``theta``. Each realization
therefore carves the first ``K`` pool balls with ``K`` chosen so that its cb fraction in the
graphite-free voxels equals the image's (one pass records for every voxel the first ball
covering it, :func:`jaxcba.calibrate._balls.first_cover`); the CPSD then compares ball *sizes*
at equal removed volume. ``lambda_Y`` is still Eq. 25's.

Conditioning on the graphite (``condition_on_graphite=True``, default): Ξ1 is independent of Ξ2
and Ξ3, so the model given the image's graphite is the image's Ξ1 with a simulated Ξ2 ∩ Ξ3^c
outside it. The realizations use exactly that; the pore sizes near the (few, micrometre-sized)
platelets of a small window then no longer differ between image and model by the chance of the
graphite, and stage 3 does not depend on stage 1's fit.

Matched excursion fraction (``match_v2``, default with the profile search): the field's
covariance decays like ``h^-2``, so its window mean fluctuates and a realization's Ξ2 fraction
scatters by ~±0.01 around ``V2`` even at 200^3 (measured: 0.330-0.351 over five keys for
V2 = 0.338); with the ball fraction matched
to the image's this moved the CPSD at 4-5 voxels by ~0.016 (one s.d.) between realizations. Each
realization therefore thresholds its field at the quantile that gives exactly ``V2`` in the
graphite-free voxels (the s.d. falls to ~0.004): the realizations are compared with the image at
the ``V2`` the fit assigns to it, not at a random one. This needs ``V2`` to be the image's own
(fitted to it, as in the profile search): given the model's ``V2`` instead, a small window whose
field mean is off is compared with realizations forced to the wrong fraction (64^3 twin: 1/theta
56 nm for 95 nm), so without the profile the default is ``match_v2=False``.

Profile search (``excursion_for_theta``, what the pipeline does after the masked stage 2): the
masked fit of ``C_G(h)`` cannot separate ball size from ball fraction on windows of a few
micrometres (``1/eta`` and ``1/theta`` are both ~2 voxels at 40 nm), so its ``(mu, eta, V3)``
follow the ``theta`` it settles on. Stage 3 then re-fits ``(eta, V3)`` at each trial ``theta``
(:func:`jaxcba.calibrate.stage2_excursion.refit_given_theta`), makes Ξ2 with the resulting
``eta`` and ``V2`` (or ``mu``) from the same keys and compares CPSDs: ``theta`` is chosen by the pore
sizes and ``(mu, eta)`` by the two-point coverage at that ``theta``. The result's
``excursion`` holds the refit at the chosen ``theta``.

The L1 distance is ``∫ |CPSD_model(r) - CPSD_image(r)| dr`` [nm] (trapezoid rule on the radius
grid 1, 2, 3, ... voxels, :data:`CPSD_STEP_VOX`), with ``CPSD_model`` the mean of the realizations' CPSDs.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np

from jaxcba.calibrate._balls import ball_mask, carve, draw_pool, first_cover
from jaxcba.calibrate._measure import checked_labels, l1_distance, pore_cpsd
from jaxcba.descriptors.pore_size import radius_grid
from jaxcba.model.params import CBAParams

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
#: Profile search (``excursion_for_theta``): the pool has room for at least this ball fraction at every theta.
PROFILE_POOL_V3 = 0.5


@dataclasses.dataclass(frozen=True)
class ThetaSearch:
    """One search over theta: the best theta, its lambda_Y and L1, every evaluation (``thetas``/``l1s``
    in call order), the cost; ``scan``: the ``"golden"`` search's log-spaced scan points [nm^-1]
    (the first ``len(scan)`` evaluations), empty for ``"grid"``."""

    method: str
    theta: float
    lambda_y: float
    l1: float
    thetas: tuple
    l1s: tuple
    realizations: int
    seconds: float
    converged: bool
    message: str
    cpsd_model: np.ndarray
    scan: tuple = ()

    def to_dict(self) -> dict:
        return {
            "method": self.method, "theta": self.theta, "lambda_y": self.lambda_y, "l1_nm": self.l1,
            "scan": list(self.scan),
            "thetas": list(self.thetas), "l1s_nm": list(self.l1s), "realizations": self.realizations,
            "seconds": self.seconds, "converged": self.converged, "message": self.message,
            "cpsd_model": np.asarray(self.cpsd_model).tolist(),
        }


@dataclasses.dataclass(frozen=True)
class Stage3Result:
    """Outcome of stage 3: the chosen search (``best``) and every search run (``searches``)."""

    theta: float
    lambda_y: float
    l1: float
    best: ThetaSearch
    searches: tuple
    r_nm: np.ndarray
    cpsd_image: np.ndarray
    v_total: float
    v1: float
    v2: float
    window: tuple
    converged: bool
    message: str
    seconds: float
    excursion: object = None  # ExcursionGivenTheta at the chosen theta (profile search), else None

    def to_dict(self) -> dict:
        return {
            "excursion": None if self.excursion is None else self.excursion.to_dict(),
            "theta": self.theta, "lambda_y": self.lambda_y, "l1_nm": self.l1, "best": self.best.method,
            "searches": {s.method: s.to_dict() for s in self.searches}, "r_nm": np.asarray(self.r_nm).tolist(),
            "cpsd_image": np.asarray(self.cpsd_image).tolist(), "v_total": self.v_total, "v1": self.v1,
            "v2": self.v2, "window": list(self.window), "converged": self.converged, "message": self.message,
            "seconds": self.seconds,
        }


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


def _scan_and_refine(evaluate, scan, user_bracket, xtol, max_evals, n_realizations, n_cached) -> ThetaSearch:
    """The default search: the log-spaced ``scan``, then Brent on ``log theta`` inside the best point's neighbours."""
    import scipy.optimize

    t0 = time.perf_counter()
    n0 = n_cached()
    trace = []

    def objective(x):  # x = log theta - log theta_ref + 10 (|x| ~ 10: Brent's tolerance is relative)
        theta = math.exp(x - 10.0) * ref
        l1 = evaluate(theta)[1]
        trace.append((theta, l1))
        return l1

    ref = float(scan[0])
    l1s = [objective(10.0 + math.log(t / ref)) for t in scan]
    i = int(np.argmin(l1s))
    where = "given bracket" if user_bracket else "default scan range (scan_range_vox)"
    if i in (0, len(scan) - 1):
        theta = float(scan[i])
        side = ("lower edge (largest balls, theta_lo)" if i == 0 else "upper edge (smallest balls, theta_hi)")
        converged = False
        message = (f"not converged: the best scan value theta = {theta:.4g} nm^-1 lies at the {side} of the {where} "
                   f"[{scan[0]:.4g}, {scan[-1]:.4g}] nm^-1: widen the range (bracket=...) beyond that edge")
    else:
        xs = [10.0 + math.log(scan[j] / ref) for j in (i - 1, i, i + 1)]
        res = scipy.optimize.minimize_scalar(objective, bracket=tuple(xs), method="brent",
                                             options={"xtol": xtol / 10.0, "maxiter": max_evals})
        x_best = res.x if res.fun <= l1s[i] else xs[1]
        theta = math.exp(x_best - 10.0) * ref
        converged = bool(res.success)
        message = (f"log-spaced scan of {len(scan)} theta over the {where}, then Brent on log theta between "
                   f"{scan[i - 1]:.4g} and {scan[i + 1]:.4g} nm^-1 (common random numbers)"
                   if converged else f"not converged: Brent refinement stopped: {res.message.strip()}")
    lam, l1, mean = evaluate(theta)
    return ThetaSearch(
        method="golden", theta=theta, lambda_y=lam, l1=l1, thetas=tuple(t for t, _ in trace),
        l1s=tuple(v for _, v in trace), realizations=(n_cached() - n0) * n_realizations,
        seconds=time.perf_counter() - t0, converged=converged, message=message, cpsd_model=mean,
        scan=tuple(t for t, _ in trace[: len(scan)]),
    )


def lambda_y_for(v_total: float, v1: float, v2: float, theta: float) -> float:
    """Eq. 25 (theory layer); ``ValueError`` when no ``lambda_Y >= 0`` reaches ``v_total``."""
    from jaxcba.theory import lambda_y_for_fraction

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


def fit_pores(
    labels,
    voxel_nm: float,
    base: CBAParams,
    v2: float,
    *,
    search: str = "golden",
    theta_hint: float | None = None,
    thetas=None,
    n_realizations: int = 3,
    window=None,
    seed: int = 0,
    bracket: tuple[float, float] | None = None,
    scan_ratio: float = SCAN_RATIO,
    xtol: float = 0.01,
    max_evals: int = 12,
    match_fraction: bool = True,
    excursion_for_theta=None,
    condition_on_graphite: bool = True,
    match_v2: bool | None = None,
    progress: bool = False,
) -> Stage3Result:
    """Stage 3: ``(theta, lambda_Y)`` of Ξ3 (module docstring).

    Args:
        labels: ``(z, y, x)`` labels.
        voxel_nm: voxel side [nm].
        base: parameters of Ξ1 and Ξ2 (stages 1-2); ``theta``/``lambda_y`` are ignored.
        v2: volume fraction of Ξ2 (stage 2) used in Eq. 25.
        search: ``"golden"`` (default), ``"grid"`` or ``"both"`` (best of both is returned).
        theta_hint: centre of the paper's grid [nm^-1] (default ``1 / r50`` of the image's pore
            CPSD); for ``"golden"`` only one extra scan point, it never narrows the scan.
        thetas: explicit grid of ``"grid"`` [nm^-1] (default: :data:`PAPER_THETA_GRID` scaled to ``theta_hint``).
        n_realizations: realizations per trial theta (common random numbers: same keys).
        window: realization shape (default: the image's).
        seed: seed of the realization keys.
        bracket: ``(theta_lo, theta_hi)`` [nm^-1] of the ``"golden"`` scan (user override; default:
            mean ball radius ``1 / theta`` from 1 voxel to the smaller of 1/4 of the window's smallest
            side and twice the image's largest pore radius, :func:`scan_range_vox`).
        scan_ratio: ratio of neighbouring theta of the log-spaced scan (> 1).
        xtol: absolute tolerance of the Brent refinement in ``log theta``.
        max_evals: iteration budget of the Brent refinement (after the scan).
        match_fraction: per realization, carve as many pool balls (in arrival order) as make
            its cb fraction of the graphite-free voxels equal the image's (variance reduction,
            module docstring); ``False``: the ``lambda_Y`` of Eq. 25 for every realization.
        excursion_for_theta: optional ``theta -> ExcursionGivenTheta`` (e.g. ``lambda t:
            stage2_excursion.refit_given_theta(s2, t)``): at each trial theta, Ξ2's ``(mu, eta)``
            and ``V2`` come from it instead of ``base``/``v2`` (profile search, module docstring);
            the realizations keep their keys, so the random numbers stay common.
        condition_on_graphite: realizations use the image's own graphite (Ξ1) and simulate only
            Ξ2 and Ξ3 (module docstring); ``False``: Ξ1 simulated from ``base`` too.
        match_v2: threshold each realization's Gaussian field at its own quantile so that its Ξ2
            fills exactly the fraction ``V2`` of the graphite-free voxels (module docstring);
            ``False``: threshold at ``mu``. Default: ``True`` with ``excursion_for_theta`` (whose
            ``V2`` is fitted to the image), ``False`` without (``v2`` is then usually the model's).
        progress: tqdm bar on stderr.
    """
    from jaxcba import simulate
    from jaxcba.model.gaussian_field import field_from_key
    from jaxcba.theory import lambda_y_for_ball_fraction

    t_start = time.perf_counter()
    if search not in SEARCHES:
        raise ValueError(f"unknown theta search {search!r}; allowed: {', '.join(SEARCHES)}")
    if n_realizations < 1:
        raise ValueError(f"n_realizations must be >= 1, got {n_realizations}")
    vol = checked_labels(labels)
    match_v2 = excursion_for_theta is not None if match_v2 is None else bool(match_v2)
    window = tuple(vol.shape) if window is None else tuple(int(s) for s in np.broadcast_to(window, (3,)))
    v_total = float(np.count_nonzero(vol)) / vol.size
    # Eq. 25 with the image's graphite fraction: then (1 - V3) = q / V2 with q the cb fraction of the
    # graphite-free voxels, so the cb fraction of the model matches the image's even when the window's
    # graphite fraction deviates from the model's V1 (large grains in a small window)
    v1 = float(np.count_nonzero(vol == 2)) / vol.size
    if v1 >= 1.0:
        raise ValueError("the volume is all graphite: stage 3 (large pores) needs graphite-free voxels")
    if not 0.0 < v2 < 1.0 or not math.isfinite(v2):
        raise ValueError(f"v2 must lie in (0, 1), got {v2}")
    lambda_y_for(v_total, v1, v2, 1.0 / voxel_nm)  # reachability check (independent of theta)
    q_img = float(np.count_nonzero(vol == 1)) / float(np.count_nonzero(vol != 2))

    radii_vox = radius_grid(0.25 * min(vol.shape), CPSD_STEP_VOX)
    cpsd_img = pore_cpsd(vol, voxel_nm, radii_vox)
    last = int(np.max(np.nonzero(cpsd_img > 0)[0], initial=0))
    r_zero_vox = float(radii_vox[last])
    keep = last + 2  # grid up to a little past the image's zero
    radii_vox = radii_vox[: min(keep, len(radii_vox))]
    cpsd_img = cpsd_img[: len(radii_vox)]
    r_nm = radii_vox * voxel_nm
    if theta_hint is None or not (math.isfinite(theta_hint) and theta_hint > 0):
        half = np.nonzero(cpsd_img < 0.5)[0]
        r50 = r_nm[half[0]] if half.size else r_nm[-1]
        theta_hint = 1.0 / r50
    grid = None
    if search in ("grid", "both"):
        grid = (np.asarray(PAPER_THETA_GRID) * theta_hint / 0.0105) if thetas is None else np.asarray(thetas, float)
        if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
            raise ValueError(f"thetas must be finite numbers > 0 [nm^-1], got {grid.tolist()}")
    if not (scan_ratio > 1.0 and math.isfinite(scan_ratio)):
        raise ValueError(f"scan_ratio must be a finite number > 1, got {scan_ratio}")
    scan = None
    if search in ("golden", "both"):
        if bracket is not None:
            lo, hi = (float(x) for x in bracket)
            if not (0 < lo < hi and math.isfinite(hi)):
                raise ValueError(f"bracket must satisfy 0 < theta_lo < theta_hi [nm^-1], got {(lo, hi)}")
        else:
            r_lo, r_hi = scan_range_vox(window, r_zero_vox)
            lo, hi = 1.0 / (r_hi * voxel_nm), 1.0 / (r_lo * voxel_nm)
        n_scan = max(3, math.ceil(math.log(hi / lo) / math.log(scan_ratio) - 1e-9) + 1)
        scan = np.geomspace(lo, hi, n_scan)
        if lo < theta_hint < hi and np.min(np.abs(np.log(scan / theta_hint))) > 0.1 * math.log(scan_ratio):
            scan = np.sort(np.append(scan, theta_hint))  # the hint is one more scan point, never a limit
    theta_lo = min(float(x.min()) for x in (grid, scan) if x is not None)
    theta_hi = max(float(x.max()) for x in (grid, scan) if x is not None)

    # common random numbers: per key one realization of Xi1 ∪ Xi2 (no balls) and one ball pool
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * n_realizations)
    lam_max = POOL_HEADROOM * lambda_y_for(v_total, v1, v2, theta_hi)
    if excursion_for_theta is not None:  # V2 varies with theta: room for up to PROFILE_POOL_V3 of balls
        lam_max = max(lam_max, float(lambda_y_for_ball_fraction(PROFILE_POOL_V3, theta_hi)))
    no_balls = base.replace(theta=1.0, lambda_y=1e-30)
    if condition_on_graphite:
        if window != vol.shape:
            raise ValueError(f"condition_on_graphite needs the realization window to be the image's shape "
                             f"{vol.shape}, got {window}")
        graphites = [vol == 2] * n_realizations  # the image's own Ξ1
    else:
        graphites = [np.asarray(simulate(no_balls, window, voxel_nm, keys[2 * i])) == 2 for i in range(n_realizations)]
    pools = [draw_pool(keys[2 * i + 1], window, theta_lo * voxel_nm, lam_max * voxel_nm**3)
             for i in range(n_realizations)]
    last_bases: dict[tuple[float, float, float], list[np.ndarray]] = {}

    def bases_for(mu: float, eta: float, v2_t: float) -> list[np.ndarray]:
        """Ξ1 ∪ Ξ2 for each realization key (the same keys for every trial: common random numbers)."""
        if (mu, eta, v2_t) not in last_bases:
            out = []
            for i, g in enumerate(graphites):
                if match_v2:  # threshold at the field's (1 - V2)-quantile over the graphite-free voxels
                    z = np.asarray(field_from_key(keys[2 * i], window, eta * voxel_nm))
                    cb = z >= np.quantile(z[~g], 1.0 - v2_t)
                else:
                    cb = np.asarray(simulate(no_balls.replace(lambda_x=1e-30, mu=mu, eta=eta), window, voxel_nm,
                                             keys[2 * i])) == 1
                out.append(np.where(g, np.uint8(2), cb.astype(np.uint8)))
            last_bases.clear()  # one entry: trial theta are cached as results, never re-simulated
            last_bases[(mu, eta, v2_t)] = out
        return last_bases[(mu, eta, v2_t)]

    profiles: dict[float, object] = {}
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(desc="stage 3 (theta)", unit="realization", file=sys.stderr, leave=False)
    cache: dict[float, tuple[float, float, np.ndarray]] = {}

    def evaluate(theta: float):
        theta = float(theta)
        if theta in cache:
            return cache[theta]
        if excursion_for_theta is None:
            bases, v2_t = bases_for(base.mu, base.eta, v2), v2
            lam = lambda_y_for(v_total, v1, v2_t, theta)
        else:
            ex = profiles[theta] = excursion_for_theta(theta)
            bases, v2_t = bases_for(ex.mu, ex.eta, ex.v2), ex.v2
            try:
                lam = lambda_y_for(v_total, v1, v2_t, theta)
            except ValueError:  # the profile put (almost) no balls at this theta
                lam = float(lambda_y_for_ball_fraction(1e-3, theta))
        curves = []
        for b, pool in zip(bases, pools):
            if match_fraction:
                labels_m = carve(b, _matched_balls(b, pool, window, theta * voxel_nm, q_img, lam * voxel_nm**3))
            else:
                labels_m = carve(b, ball_mask(pool, window, lam * voxel_nm**3, theta * voxel_nm))
            curves.append(pore_cpsd(labels_m, voxel_nm, radii_vox))
            if bar is not None:
                bar.update(1)
        mean = np.mean(curves, axis=0)
        cache[theta] = (lam, l1_distance(r_nm, mean, cpsd_img), mean)
        return cache[theta]

    searches = []
    if search in ("grid", "both"):
        t0 = time.perf_counter()
        n0 = len(cache)
        results = [evaluate(t) for t in grid]
        i = int(np.argmin([r[1] for r in results]))
        at_edge = i in (0, len(grid) - 1) and len(grid) > 2
        searches.append(ThetaSearch(
            method="grid", theta=float(grid[i]), lambda_y=results[i][0], l1=results[i][1],
            thetas=tuple(map(float, grid)), l1s=tuple(r[1] for r in results),
            realizations=(len(cache) - n0) * n_realizations, seconds=time.perf_counter() - t0,
            converged=not at_edge,
            message="best grid value at the edge of the grid: widen it" if at_edge else "best of the grid",
            cpsd_model=results[i][2],
        ))
    if search in ("golden", "both"):
        searches.append(_scan_and_refine(evaluate, scan, bracket is not None, xtol, max_evals, n_realizations,
                                         lambda: len(cache)))
    if bar is not None:
        bar.close()
    best = min(searches, key=lambda s: s.l1)
    excursion = profiles.get(float(best.theta))
    return Stage3Result(
        theta=best.theta, lambda_y=best.lambda_y, l1=best.l1, best=best, searches=tuple(searches), r_nm=r_nm,
        cpsd_image=cpsd_img, v_total=v_total, v1=v1, v2=float(v2 if excursion is None else excursion.v2),
        window=window, converged=best.converged, message=best.message, seconds=time.perf_counter() - t_start, excursion=excursion,
    )


__all__ = ["Stage3Result", "ThetaSearch", "fit_pores", "lambda_y_for", "scan_range_vox", "PAPER_THETA_GRID", "SEARCHES"]
