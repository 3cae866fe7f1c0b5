"""Model validation on a user's labelled image (paper Section 3.3, Figs. 5-7).

``n`` realizations of the fitted model are drawn in the image's own window and voxel size;
the image and every realization are measured by the batch engine's kernels
(:mod:`jaxcba.batch.measures`, so both sides use the same radius grids and lags), at the
image's resolution and down-sampled by slice removal (every ``f``-th voxel along each axis,
:func:`jaxcba.descriptors.downsample`), on the image and on the realizations alike.

Descriptors (:data:`SCALARS`; lengths in nm): solid volume fraction ``V``; ``S_V`` of the
solid-pore interface [nm^-1] (the pore's are ``1 - V`` and the same interface); for solid and
pore: ``r_max`` (CPSD^-1(0.5)), ``r_min`` (intrusion from the face z = 0), constrictivity
``beta = r_min^2 / r_max^2`` and the mean geodesic tortuosity along z. Curves: the CPSD of both
phases (Eq. 26) and the centred two-point coverage ``C(h) - V^2`` of the solid (Eq. 20 for the
whole of Xi; the pore's centred curve is the same). Each curve enters the verdict as one number,
its distance to the model's mean curve (CPSD: the L1 distance of Eq. 26 [nm]; ``C(h) - V^2``: the
mean absolute difference over the lags), compared with the same distance of each realization to
the mean of the others (leave-one-out).

The verdict of a descriptor (:class:`DescriptorRow`):

- ``in_range``: the image lies in the realizations' ``[min, max]`` (the paper's error bars).
  For an image that *is* a realization of the model (a twin) this happens with probability
  ``(n - 1) / (n + 1)`` per descriptor - 50 % for ``n = 3``, 67 % for ``n = 5`` - so a twin
  is expected outside the range for some descriptors;
- ``z = (image - mean) / std`` (``std`` over the realizations, ``ddof = 1``);
- ``consistent``: ``in_range``, or inside the 95 % prediction interval of one more realization,
  ``mean +- t_{n-1, 0.975} std sqrt(1 + 1/n)`` (one-sided, upper, for the curve distances), or
  within the descriptor's ``resolution`` of the mean: one step of the radius grid (0.5 voxel)
  for ``r_max`` and ``r_min``, and what that step makes of ``beta = (r_min / r_max)^2``
  (differences below them are not resolved; at a few voxels per pore the realizations of a
  coarse volume often agree to within the step, with a near-zero ``std``); a resolution as wide
  as the descriptor's whole range (``beta`` in [0, 1] with radii of one or two voxels) resolves
  nothing and is not used, so such a row is judged by the range and the interval alone. A twin is
  consistent for ~95 % of the descriptors (when they are roughly normal); a structure the
  model does not describe is flagged by the descriptors it gets wrong.

A phase that does not connect the faces along z has no ``r_min``, ``beta`` or tortuosity
(``NaN``, ``null`` in JSON): a legitimate outcome, compared as such - the image's missing value
is consistent when at least one realization does not percolate either. A value that was *not
measured* is another matter: the CPSD radius grid of each resolution reaches the largest
distance to the boundary of either phase in the image and the realizations (as ``describe``'s
grid, at most half the smallest side), so ``r_max``, ``r_min`` and ``beta`` are measured unless a
phase has no boundary within that grid (its CPSD does not fall below 0.5); a row where the
image or a realization was not measured is ``comparable = False``: counted apart, never as
consistent.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from jaxcba.calibrate._result import Result, field
from jaxcba.model.params import FIELDS, CBAParams
from jaxcba.validate._figures import save_figures
from jaxcba.validate._tables import CURVES, MEASURES, SCALARS

__all__ = ["CURVES", "DescriptorRow", "MEASURES", "SCALARS", "ValidationResult", "check_downsample", "curve_values",
           "load_fit", "measure_volume", "scalar_values", "validate", "verdict"]

#: The smallest side [voxels] a down-sampled volume may have.
MIN_SIDE = 16
#: A stated voxel size agrees with ``voxel_nm`` within this relative difference.
VOXEL_RTOL = 1e-6
#: ``lambda_x`` [nm^-3] used to simulate a two-phase fit (``lambda_x = 0``): no graphite grain
#: in any representable window (CBAParams needs a value > 0).
NO_GRAPHITE = 1e-30
#: The graphite grains' shape parameters, unused (and not required) in a two-phase fit.
GRAPHITE_SHAPE = ("alpha1", "alpha2", "gamma")


def _num(value) -> float:
    """A float; ``None`` (a stored row's ``null``) as NaN."""
    return float("nan") if value is None else float(value)


def _nan_if(value, ok) -> float:
    return _num(value) if bool(ok) else float("nan")


def scalar_values(row: dict) -> dict:
    """``{(name, phase): value}`` of the :data:`SCALARS` from one measured volume ``row`` (the
    batch's measure values: ``row[measure][phase][...]``, arrays or a stored row's lists with ``null``);
    ``NaN`` where a phase does not percolate."""
    out = {("volume_fraction", "solid"): _num(row["fractions"]["solid"]),
           ("surface_density", "interface"): _num(row["surface_density"]["S_V"])}
    for ph in ("solid", "pore"):
        c = row["constrictivity"][ph]
        t = row["geodesic_tortuosity"][ph]
        out[("r_max", ph)] = _num(c["r_max_nm"])
        out[("r_min", ph)] = _nan_if(c["r_min_nm"], c["percolates"])
        out[("constrictivity", ph)] = _nan_if(c["beta"], c["percolates"])
        out[("geodesic_tortuosity", ph)] = _nan_if(t["mean"], t["percolates"])
    return out


def curve_values(row: dict) -> dict:
    """The curves of one measured volume ``row``: ``cpsd_r_nm``, ``cpsd_solid``, ``cpsd_pore``,
    ``h_nm`` and ``centred_C`` (``C(h) - V^2`` of the solid; ``C(0) = V``)."""
    c = np.asarray(row["two_point"]["solid"]["C"], dtype=float)
    return {"cpsd_r_nm": np.asarray(row["cpsd"]["pore"]["r_nm"], dtype=float),
            "cpsd_solid": np.asarray(row["cpsd"]["solid"]["fraction"], dtype=float),
            "cpsd_pore": np.asarray(row["cpsd"]["pore"]["fraction"], dtype=float),
            "h_nm": np.asarray(row["two_point"]["solid"]["h_nm"], dtype=float),
            "centred_C": c - c[0] ** 2}


def unmeasured(row: dict) -> set:
    """The ``(name, phase)`` of the :data:`SCALARS` that one measured volume ``row`` could not
    measure: ``r_max``, ``r_min`` and ``constrictivity`` of a phase whose CPSD stays at or above
    0.5 to the end of the radius grid (``radii_bounded`` false)."""
    out = set()
    for ph in ("solid", "pore"):
        if not bool(np.asarray(row["constrictivity"][ph]["radii_bounded"])):
            out |= {("r_max", ph), ("r_min", ph), ("constrictivity", ph)}
    return out


def radius_grid_end(volumes) -> float:
    """End of the CPSD radius grid [voxels] for ``volumes`` (labelled, one shape): one step past
    the largest distance to the boundary of either phase in any of them (``describe``'s grid,
    :func:`tight_grid_end`), rounded up to a power of two voxels and at most half the smallest side.

    The rounding keeps the grid's length, a static shape of the CPSD and intrusion kernels, the same
    for most images of one shape, so a second validation reuses the compiled kernels (at 64^3 one
    call fell from ~55 s to ~12 s). Radii past the largest distance add points where both phases'
    CPSD is 0: r_max, r_min, beta and the CPSD distance are unchanged."""
    end = tight_grid_end(volumes)
    bucket = 2.0 ** math.ceil(math.log2(max(end, 2.0)))
    cap = max(2.0, min(np.shape(volumes[0])) / 2.0)
    return min(bucket, cap)


def tight_grid_end(volumes) -> float:
    """One step past the largest distance to the boundary of either phase in any of ``volumes``
    (labelled, one shape) [voxels], at least 2 and at most half the smallest side."""
    from jaxcba.descriptors.pore_size import default_radii_vox

    vols = [np.asarray(v) for v in volumes]
    end = 2.0
    for phase in (lambda v: v == 0, lambda v: v > 0):
        masks = np.stack([phase(v) for v in vols])
        if masks.any():
            end = max(end, float(default_radii_vox(masks)[-1]) + 1.0)
    return min(end, max(2.0, min(vols[0].shape) / 2.0))


def measure_volume(labels, voxel_nm: float, max_radius_vox: float | None = None) -> dict:
    """The :data:`MEASURES` of one labelled ``(z, y, x)`` volume [voxel side ``voxel_nm`` nm], as a batch
    row; ``max_radius_vox``: end of the CPSD radius grid [voxels] (default the batch engine's)."""
    from jaxcba.batch.measures import measure_batch

    batch = np.ascontiguousarray(np.asarray(labels, dtype=np.uint8)[None])
    return {name: _first(measure_batch(name, batch, float(voxel_nm), max_radius_vox)) for name in MEASURES}


def _first(tree):
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a)[0], tree)


# ------------------------------------------------------------------------------ verdict
def _t975(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


@dataclasses.dataclass(frozen=True)
class DescriptorRow(Result):
    """Image vs model for one descriptor at one resolution.

    ``voxel_nm`` [nm] of the compared volumes (``factor`` x the image's); ``image``; the
    realizations' ``mean``, ``std`` (``ddof = 1``), ``min``, ``max`` over the ``n_finite`` finite
    values of ``n``; ``in_range``, ``z``, the 95 % prediction interval ``pi_low``, ``pi_high``
    and ``consistent`` (module docstring), with the descriptor's ``resolution`` (same unit; 0
    where none applies). ``kind``: ``"value"`` or ``"distance"`` (a curve's distance to the
    model's mean curve: only large is bad). ``comparable``: False where the image or a
    realization was not measured (off the radius grid): then neither in range nor consistent."""

    descriptor: str
    phase: str
    unit: str
    factor: int
    voxel_nm: float
    image: float
    mean: float
    std: float
    min: float
    max: float
    n: int
    n_finite: int
    in_range: bool
    z: float
    pi_low: float
    pi_high: float
    consistent: bool
    kind: str = "value"
    resolution: float = 0.0
    comparable: bool = True

    @property
    def name(self) -> str:
        return f"{self.descriptor} ({self.phase}) at {self.voxel_nm:g} nm"


#: Step of the radius grid of the CPSD and intrusion curves [voxels] (:mod:`jaxcba.batch.measures`).
RADIUS_STEP_VOX = 0.5


def resolution_of(descriptor: str, voxel_nm: float, means: dict | None = None) -> float:
    """The smallest difference a descriptor resolves (module docstring): 0.5 voxel [nm] for
    ``r_max`` / ``r_min``; for ``constrictivity``, ``2 beta sqrt(d^2/r_min^2 + d^2/r_max^2)`` at
    the model's mean radii ``means`` (keys ``r_min``, ``r_max`` [nm]); 0 otherwise."""
    d = RADIUS_STEP_VOX * voxel_nm
    if descriptor in ("r_max", "r_min"):
        return d
    if descriptor == "constrictivity" and means:
        rmin, rmax = means.get("r_min", math.nan), means.get("r_max", math.nan)
        if rmin > 0 and rmax > 0 and math.isfinite(rmin) and math.isfinite(rmax):
            beta = (rmin / rmax) ** 2
            return 2 * beta * math.sqrt((d / rmin) ** 2 + (d / rmax) ** 2)
    return 0.0


#: Width of the range of a bounded descriptor: a ``resolution`` this wide is not used by :func:`verdict`.
RANGE_WIDTH = {"constrictivity": 1.0}


def verdict(what, factor, voxel_nm, image, model, *, kind="value", resolution=0.0, measured=True) -> DescriptorRow:
    """:class:`DescriptorRow` of one ``image`` value against the realizations' ``model`` values.

    ``what``: the descriptor's ``(name, phase, unit)`` (an entry of :data:`SCALARS` or
    :data:`CURVES`); ``factor`` and ``voxel_nm`` [nm]: the resolution compared; ``kind``,
    ``resolution``: as in :class:`DescriptorRow`; ``measured``: False, or one bool per
    realization with the image's first, where a value is missing because it was not measured
    (not comparable), rather than because the phase does not percolate (``NaN`` in ``image`` /
    ``model``, compared as such)."""
    descriptor, phase, unit = what
    vals = np.asarray(model, dtype=float)
    fin = vals[np.isfinite(vals)]
    n, k = int(vals.size), int(fin.size)
    nan = float("nan")
    mean = float(fin.mean()) if k else nan
    std = float(fin.std(ddof=1)) if k >= 2 else nan
    lo, hi = (float(fin.min()), float(fin.max())) if k else (nan, nan)
    if k >= 2:
        half = _t975(k - 1) * std * math.sqrt(1.0 + 1.0 / k)
        pi_low, pi_high = (-math.inf if kind == "distance" else mean - half), mean + half
    else:
        pi_low = pi_high = nan
    if not math.isfinite(image):
        # the image's phase does not percolate: consistent if the model's does not always either
        in_range = consistent = k < n
        z = nan
    else:
        in_range = bool(k and (image <= hi if kind == "distance" else lo <= image <= hi))
        if k >= 2 and std > 0:
            z = (image - mean) / std
        elif k >= 1:
            z = 0.0 if image == mean else math.copysign(math.inf, image - mean)
        else:
            z = nan
        usable = resolution < RANGE_WIDTH.get(descriptor, math.inf)
        close = usable and k >= 1 and (image - mean <= resolution if kind == "distance"
                                       else abs(image - mean) <= resolution)
        consistent = bool(in_range or close or (k >= 2 and pi_low <= image <= pi_high))
    comparable = bool(np.all(measured))
    if not comparable:
        in_range = consistent = False
        z = nan
    return DescriptorRow(descriptor, phase, unit, int(factor), float(voxel_nm), float(image), mean, std, lo, hi, n, k,
                         bool(in_range), float(z), float(pi_low), float(pi_high), bool(consistent), kind,
                         float(resolution), comparable)


def _distance(name, x, y, grid) -> float:
    d = np.abs(np.asarray(x) - np.asarray(y))
    if name == "cpsd_l1":
        return float(np.trapezoid(d, grid)) if len(grid) > 1 else 0.0
    return float(d.mean())


def _curve_rows(factor, voxel_nm, img_curves, model_curves) -> list[DescriptorRow]:
    rows = []
    for what in CURVES:
        name, phase, _ = what
        key, grid_key = (f"cpsd_{phase}", "cpsd_r_nm") if name == "cpsd_l1" else ("centred_C", "h_nm")
        grid = img_curves[grid_key]
        curves = np.stack([c[key] for c in model_curves])
        mean = curves.mean(axis=0)
        d_img = _distance(name, img_curves[key], mean, grid)
        d_loo = [_distance(name, curves[i], np.delete(curves, i, axis=0).mean(axis=0), grid) for i in range(len(curves))]
        rows.append(verdict(what, factor, voxel_nm, d_img, d_loo, kind="distance"))
    return rows


def _band(img, model, key) -> dict:
    curves = np.stack([c[key] for c in model])
    return {"image": img[key], "mean": curves.mean(axis=0), "min": curves.min(axis=0), "max": curves.max(axis=0)}


# ------------------------------------------------------------------------------ result
@dataclasses.dataclass(frozen=True)
class ValidationResult(Result):
    """Result of :func:`validate`: image vs model, per descriptor and resolution.

    ``shape`` (z, y, x) [voxels] and ``voxel_nm`` [nm] of the image; ``n`` realizations from
    ``seed``; ``factors`` the resolutions compared (1 = the image's, then the down-sampling
    factors); ``params`` the fitted parameters (``lambda_x = 0`` for a two-phase fit:
    ``two_phase``); ``uncertainty`` the fit's uncertainty block as it was in the parameter file
    (``None`` when it had none); ``rows`` one :class:`DescriptorRow` per descriptor and
    resolution; ``curves`` per factor the CPSD (r [nm], image, mean, min, max per phase) and
    ``C(h) - V^2`` (h [nm]) curves; ``notes``. ``image_labels`` and ``realization_labels`` (the
    image and the first realization, for :func:`jaxcba.validate.plot_cubes`) are not written.
    """

    shape: tuple[int, int, int]
    voxel_nm: float
    n: int
    seed: Any
    factors: tuple[int, ...]
    params: dict
    two_phase: bool
    uncertainty: dict | None
    rows: tuple[DescriptorRow, ...]
    curves: dict
    notes: tuple[str, ...] = ()
    image_labels: Any = field(None, json=False)
    realization_labels: Any = field(None, json=False)

    _json_order = ("summary", "counts", "shape", "voxel_nm", "n", "seed", "factors", "params", "two_phase",
                   "uncertainty", "rows", "curves", "notes")

    @property
    def counts(self) -> dict:
        """``total``, ``in_range``, ``consistent``, ``not_comparable`` (not measured: neither of the
        others) and the expected in-range share of a twin."""
        return {"total": len(self.rows), "in_range": sum(r.in_range for r in self.rows),
                "consistent": sum(r.consistent for r in self.rows),
                "not_comparable": sum(not r.comparable for r in self.rows),
                "expected_in_range_twin": (self.n - 1) / (self.n + 1)}

    @property
    def outside(self) -> tuple[DescriptorRow, ...]:
        """The compared rows whose image value is not consistent with the model."""
        return tuple(r for r in self.rows if r.comparable and not r.consistent)

    @property
    def not_compared(self) -> tuple[DescriptorRow, ...]:
        """The rows not compared: the image or a realization was not measured (off the radius grid)."""
        return tuple(r for r in self.rows if not r.comparable)

    @property
    def summary(self) -> str:
        c = self.counts
        out = self.outside
        names = "; ".join(f"{r.name} (z = {r.z:+.1f})" for r in out) if out else "none"
        text = (f"{c['consistent']} of {c['total']} descriptors consistent with the model "
                f"({c['in_range']} inside the realizations' [min, max]; a twin is expected inside for "
                f"{100 * c['expected_in_range_twin']:.0f} % with n = {self.n}); not consistent: {names}")
        if c["not_comparable"]:
            text += (f"; not compared ({c['not_comparable']}, not measured on the radius grid): "
                     + "; ".join(r.name for r in self.not_compared))
        return text

    def table(self) -> list[dict]:
        """The rows as flat dicts (the columns of ``validation.csv``)."""
        keys = ("factor", "voxel_nm", "phase", "descriptor", "unit", "image", "mean", "std", "min", "max", "n",
                "n_finite", "in_range", "z", "pi_low", "pi_high", "resolution", "consistent", "kind", "comparable")
        return [{k: getattr(r, k) for k in keys} for r in self.rows]

    def save(self, out_dir, *, figures: bool = True) -> list[Path]:
        """Write ``validation.csv``, ``validation.json`` (strict JSON) and, with ``figures``, the
        PNGs of :func:`jaxcba.validate.save_figures` into ``out_dir`` (atomically); returns the paths."""
        import json

        from jaxcba._checks import check_output_path
        from jaxcba.io import strict_json, write_csv_atomic, write_text_atomic

        out = check_output_path(out_dir, "out_dir", folder=True)
        paths = [write_csv_atomic(out / "validation.csv", [strict_json(r) for r in self.table()]),
                 write_text_atomic(out / "validation.json", self.to_json(indent=1) + "\n")]
        json.loads(paths[-1].read_text())
        if figures:
            paths += save_figures(self, out)
        return paths


# ------------------------------------------------------------------------------ inputs
def load_fit(source) -> tuple[CBAParams, dict]:
    """Fitted parameters from a ``params.json`` path, JSON text or dict.

    Accepts the eight keys of :class:`CBAParams` at the top level or under ``"params"``, with
    optional ``"uncertainty"`` (passed through) and ``"voxel_nm"`` (the voxel size of the fit,
    at the top level or inside ``"uncertainty"``); other keys are noted. ``lambda_x = 0`` is a
    two-phase fit (no graphite; simulated with ``lambda_x =`` :data:`NO_GRAPHITE`; ``alpha1``,
    ``alpha2``, ``gamma`` are then unused and may be missing or ``null``).
    Returns ``(params, meta)`` with ``meta`` keys ``uncertainty``, ``voxel_nm``, ``two_phase``,
    ``values`` (the eight numbers as given) and ``ignored`` (other keys).
    """
    from jaxcba.io import read_json

    data = source if isinstance(source, dict) else read_json(source, "parameter file")
    if not isinstance(data, dict):
        raise ValueError(f"parameter file must hold a JSON object, got {type(data).__name__}")
    values = data.get("params") if isinstance(data.get("params"), dict) else data
    eight = {k: values[k] for k in FIELDS if k in values}
    lx = eight.get("lambda_x")
    two_phase = isinstance(lx, (int, float)) and not isinstance(lx, bool) and lx == 0
    missing = [k for k in FIELDS if k not in values and not (two_phase and k in GRAPHITE_SHAPE)]
    if missing:
        raise ValueError(f"parameter file: missing parameter(s) {missing}; expected the eight keys {list(FIELDS)}")
    sim = dict(eight)
    if two_phase:  # no graphite: its shape parameters are unused (any placeholder, even null, is fine)
        paper = CBAParams.paper().to_dict()
        sim.update({k: paper[k] for k in GRAPHITE_SHAPE if not _positive_number(eight.get(k))})
        sim["lambda_x"] = NO_GRAPHITE
    params = CBAParams.from_dict(sim)
    unc = data.get("uncertainty")
    if unc is not None and not isinstance(unc, dict):
        raise ValueError(f"parameter file: uncertainty must be a JSON object, got {type(unc).__name__}")
    vox = data.get("voxel_nm", (unc or {}).get("voxel_nm"))
    if vox is not None:
        from jaxcba._checks import check_voxel_nm

        vox = check_voxel_nm(vox, "parameter file: voxel_nm")
    known = set(FIELDS) | {"params", "uncertainty", "voxel_nm"}
    ignored = sorted(set(data) - known) + (sorted(set(values) - set(FIELDS)) if values is not data else [])
    return params, {"uncertainty": unc, "voxel_nm": vox, "two_phase": two_phase,
                    "values": {k: (None if v is None else float(v)) for k, v in eight.items()}, "ignored": ignored}


def _positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def check_downsample(factors, shape) -> tuple[int, ...]:
    """Distinct integer factors >= 2 (sorted) whose slice-removed volumes keep at least
    :data:`MIN_SIDE` voxels along every axis of ``shape``; ``ValueError`` otherwise."""
    from jaxcba._checks import check_int

    if isinstance(factors, (int, np.integer)) and not isinstance(factors, bool):
        factors = (factors,)
    out = []
    for f in factors:
        f = check_int(f, "downsample factor", lo=2)
        if f in out:
            raise ValueError(f"downsample factor {f} is given twice")
        side = min(-(-s // f) for s in shape)
        if side < MIN_SIDE:
            raise ValueError(f"downsample factor {f} leaves {side} voxels along an axis of the image "
                             f"{'x'.join(map(str, shape))}; allowed: factors leaving at least {MIN_SIDE} voxels "
                             f"(at most {min(shape) // MIN_SIDE} here)")
        out.append(f)
    return tuple(sorted(out))


def _lengths_nm(params: CBAParams, two_phase: bool) -> dict:
    out = {"1/eta": 1.0 / float(params.eta), "1/theta": 1.0 / float(params.theta)}
    if not two_phase:
        g = float(params.gamma)
        out["mean graphite half-axis max(alpha1, alpha2)/gamma"] = max(float(params.alpha1), float(params.alpha2)) / g
    return out


def check_window_fits(params: CBAParams, shape, voxel_nm: float, two_phase: bool, *, force: bool = False) -> None:
    """``ValueError`` when the model's structure does not fit in the image's window: its smallest
    side [nm] must be at least twice the model's largest mean length (1/eta, 1/theta and the mean
    graphite half-axis), and the realization must pass the simulator's memory and grain-count
    limits. ``force`` skips the first and the memory checks."""
    from jaxcba.model.realization import EPS, VoxelParams, _layers, check_grains
    from jaxcba.model.window import check_memory

    side = min(shape) * voxel_nm
    lengths = _lengths_nm(params, two_phase)
    what, longest = max(lengths.items(), key=lambda kv: kv[1])
    if not force and side < 2 * longest:
        raise ValueError(f"the parameters do not fit the image's window: its smallest side is {side:g} nm "
                         f"({min(shape)} voxels of {voxel_nm:g} nm) but the model's {what} is {longest:.4g} nm; "
                         f"allowed: a side of at least twice that ({2 * longest:.4g} nm) (--force, or force=True, "
                         "to try anyway)")
    if not force:
        check_memory(tuple(shape), what="a realization in the image's window")
    check_grains(_layers(VoxelParams.of(params, voxel_nm), tuple(shape), EPS), tuple(shape), force=force)


def _check_measure_memory(shape, force: bool) -> None:
    from jaxcba._checks import check_memory
    from jaxcba.batch.measures import BYTES_PER_VOXEL

    n = float(np.prod(shape))
    need = n * (3 + max(BYTES_PER_VOXEL[m] for m in MEASURES))
    check_memory(need, f"measuring a {'x'.join(map(str, shape))} volume", force=force,
                 hint="use a smaller window")


# ---------------------------------------------------------------------------- validate
def validate(labels, voxel_nm: float, params, n: int = 5, downsample=(2, 4), key=0, *, progress: bool = False,
             force: bool = False) -> ValidationResult:
    """Section 3.3 for a labelled image: image vs ``n`` realizations of the fitted model.

    Args:
        labels: ``(z, y, x)`` integer image, 0 pore, 1 carbon black + binder, 2 graphite (a
            two-phase image has 0 and 1 only).
        voxel_nm: the image's voxel side [nm].
        params: the fit: a :class:`CBAParams`, or a ``params.json`` path / dict
            (:func:`load_fit`; an ``uncertainty`` block is passed through, a stated ``voxel_nm``
            must agree with ``voxel_nm``).
        n: number of realizations (>= 2; the paper uses 5).
        downsample: factors >= 2 of the coarser comparisons (slice removal; each must leave at
            least :data:`MIN_SIDE` voxels per axis); ``()`` for the image's resolution only.
        key: an int seed or a ``jax.random`` key; realization ``i`` uses
            ``jax.random.split(key, n)[i]``, so the result is reproducible from the seed.
        progress: a bar on stderr (one step per measured volume).
        force: skip the window-fit and memory estimates.
    Returns:
        :class:`ValidationResult`.
    Raises:
        ValueError: any bad input, before any realization is drawn.
    """
    import jax

    from jaxcba._checks import check_int, check_key, check_voxel_nm
    from jaxcba.io import check_labels

    lab = check_labels(labels, name="image")
    voxel_nm = check_voxel_nm(voxel_nm)
    n = check_int(n, "n (number of realizations)", lo=2, hi=1000)
    if min(lab.shape) < MIN_SIDE:
        raise ValueError(f"image: every axis needs at least {MIN_SIDE} voxels, got shape {lab.shape}")
    factors = check_downsample(downsample, lab.shape)
    fit, meta = _fit_of(params, voxel_nm)
    two_phase = bool(meta["two_phase"])
    check_window_fits(fit, lab.shape, voxel_nm, two_phase, force=force)
    _check_measure_memory(lab.shape, force)
    seed_repr = key if isinstance(key, int) and not isinstance(key, bool) else None
    keys = jax.random.split(check_key(key), n)

    notes = _notes(lab, two_phase, meta)
    all_f = (1,) + factors
    img_rows, model_rows, grid_end, example = _measure_all(lab, voxel_nm, fit, keys, all_f, progress, force)
    notes.append("CPSD radius grid (0.5 voxel steps) up to " + ", ".join(
        f"{grid_end[f] * voxel_nm * f:g} nm at {voxel_nm * f:g} nm" for f in all_f)
        + ": the largest distance to the boundary of either phase in the image and the realizations")
    rows, curves = [], {}
    for f in all_f:
        rows.extend(_rows_at(f, voxel_nm * f, img_rows[f], model_rows[f]))
        curves[str(f)] = _curves_at(voxel_nm * f, img_rows[f], model_rows[f])
    values = meta.get("values") or fit.to_dict()
    return ValidationResult(tuple(int(s) for s in lab.shape), voxel_nm, n, seed_repr, all_f, dict(values), two_phase,
                            meta["uncertainty"], tuple(rows), _lists(curves), tuple(notes), lab, example)


def _fit_of(params, voxel_nm: float) -> tuple[CBAParams, dict]:
    """The fit and its :func:`load_fit` meta; ``ValueError`` when its stated voxel size is not ``voxel_nm``."""
    if isinstance(params, CBAParams):
        fit, meta = params, {"uncertainty": None, "voxel_nm": None, "ignored": [],
                             "two_phase": float(params.lambda_x) <= NO_GRAPHITE}
    else:
        fit, meta = load_fit(params)
    if meta["voxel_nm"] is not None and abs(meta["voxel_nm"] - voxel_nm) > VOXEL_RTOL * voxel_nm:
        raise ValueError(f"the parameter file states voxel_nm = {meta['voxel_nm']:g} nm but the image's voxel_nm is "
                         f"{voxel_nm:g} nm; allowed: the same voxel size (parameters are in nm, but the gamma "
                         "half-axis convention ties alpha to the voxel size of the fit)")
    return fit, meta


def _notes(lab, two_phase: bool, meta: dict) -> list[str]:
    """The notes on the fit and the image that precede the measurements."""
    notes = []
    has_graphite = bool(np.any(lab == 2))
    if two_phase:
        notes.append("two-phase fit (lambda_x = 0): the sub-model without graphite, Xi2 ∩ Xi3^c")
    if two_phase and has_graphite:
        notes.append("the image has graphite (label 2) but the fit has none: graphite counts as solid here")
    if not two_phase and not has_graphite:
        notes.append("the image has no graphite (label 2) but the fit does (lambda_x > 0)")
    if meta["uncertainty"] is None:
        notes.append("the parameter file has no uncertainty block: the verdicts do not include the fit's own uncertainty")
    if meta["ignored"]:
        notes.append(f"parameter file keys not used: {', '.join(meta['ignored'])}")
    notes.append("r_min and geodesic tortuosity along z (intrusion from the face z = 0); down-sampling by slice removal")
    return notes


def _measure_all(lab, voxel_nm: float, fit: CBAParams, keys, all_f, progress: bool, force: bool):
    """Draw the realizations (``keys``), then measure the image and each realization at every
    factor of ``all_f``; ``(image rows, model rows, radius grid end [voxels], first realization)``
    with the rows and grid ends keyed by factor."""
    from jaxcba._progress import meter
    from jaxcba.model import simulate

    n = len(keys)
    img_rows, model_rows = {}, {f: [] for f in all_f}
    with meter(2 * n + 1, "jaxcba validate", "volume", enabled=progress) as bar:
        vols = []
        for i in range(n):  # all first: the radius grid reaches the largest distance in any of them
            vols.append(np.asarray(simulate(fit, lab.shape, voxel_nm, keys[i], check_memory=not force)))
            bar.update(1)
        grid_end = {f: radius_grid_end([lab[::f, ::f, ::f]] + [v[::f, ::f, ::f] for v in vols]) for f in all_f}
        for f in all_f:
            img_rows[f] = measure_volume(lab[::f, ::f, ::f], voxel_nm * f, grid_end[f])
        bar.update(1)
        for vol in vols:
            for f in all_f:
                model_rows[f].append(measure_volume(vol[::f, ::f, ::f], voxel_nm * f, grid_end[f]))
            bar.update(1)
    return img_rows, model_rows, grid_end, vols[0]


def _rows_at(f: int, vox: float, img_row: dict, model_rows: list) -> list[DescriptorRow]:
    """The :class:`DescriptorRow` of every scalar and curve at factor ``f`` (voxel ``vox`` [nm])."""
    rows = []
    img_s = scalar_values(img_row)
    mod_s = [scalar_values(r) for r in model_rows]
    missing = [unmeasured(r) for r in [img_row] + model_rows]
    for what in SCALARS:
        name, phase, _ = what
        model = [m[(name, phase)] for m in mod_s]
        means = ({r: _nanmean([m[(r, phase)] for m in mod_s]) for r in ("r_min", "r_max")}
                 if name == "constrictivity" else None)
        rows.append(verdict(what, f, vox, img_s[(name, phase)], model, resolution=resolution_of(name, vox, means),
                            measured=[(name, phase) not in m for m in missing]))
    rows.extend(_curve_rows(f, vox, curve_values(img_row), [curve_values(r) for r in model_rows]))
    return rows


def _curves_at(vox: float, img_row: dict, model_rows: list) -> dict:
    """The CPSD and ``C(h) - V^2`` curves of the image and the realizations' band at voxel ``vox`` [nm]."""
    img_c = curve_values(img_row)
    mod_c = [curve_values(r) for r in model_rows]
    return {"voxel_nm": vox, "cpsd": {"r_nm": img_c["cpsd_r_nm"],
                                      **{ph: _band(img_c, mod_c, f"cpsd_{ph}") for ph in ("solid", "pore")}},
            "two_point": {"h_nm": img_c["h_nm"], **_band(img_c, mod_c, "centred_C")}}


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _lists(tree):
    if isinstance(tree, dict):
        return {k: _lists(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        return tree.tolist()
    return tree
