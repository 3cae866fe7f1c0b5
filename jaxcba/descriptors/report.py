"""`describe`: every descriptor of the paper's Sections 3.2-3.3 for the phases of a labelled volume."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import numpy as np

from jaxcba._checks import check_int, check_voxel_nm, parse_axis
from jaxcba._progress import meter
from jaxcba.descriptors import geodesic, pore_size
from jaxcba.descriptors.minkowski import intrinsic_densities
from jaxcba.descriptors.phases import check_phase, phase_mask
from jaxcba.descriptors.two_point import two_point_bytes, two_point_coverage
from jaxcba.model.window import available_bytes

__all__ = ["BYTES_PER_VOXEL", "DESCRIPTORS", "NOT_PERCOLATING", "PhaseReport", "Report", "check_describe_memory", "describe",
           "describe_bytes", "per_phase"]

#: Selectable descriptor groups, cheapest first. "intrinsic" gives surface_density and the
#: other intrinsic volume densities; "cpsd" gives the CPSD and r_max; "constrictivity" gives
#: r_min, r_max and beta; "geodesic_tortuosity" the mean geodesic tortuosity.
DESCRIPTORS = ("volume_fraction", "intrinsic", "two_point", "cpsd", "constrictivity", "geodesic_tortuosity")
#: Value reported instead of a number when a phase has no path between the two faces.
NOT_PERCOLATING = "not percolating"

#: Peak working memory of each descriptor [bytes per voxel of the volume], on top of the
#: labels (1 byte/voxel) and the JAX runtime, as measured by experiments/benchmarks/bench_scale.py.
#: "two_point" is estimated from its padded FFT instead (:func:`two_point_bytes`).
BYTES_PER_VOXEL = {
    "volume_fraction": 2.0,
    "intrinsic": 12.0,
    "cpsd": 12.0,
    "constrictivity": 18.0,
    "geodesic_tortuosity": 9.0,  # the float32 distance field, the percolating cluster and its sweeps
}
#: Relative cost of each descriptor, for the progress bar's ETA (measured at 400^3, one phase).
_COST = {"volume_fraction": 0.1, "intrinsic": 1.0, "two_point": 2.0, "cpsd": 6.0, "constrictivity": 8.0,
         "geodesic_tortuosity": 6.0}


@dataclasses.dataclass(frozen=True)
class PhaseReport:
    """Descriptors of one phase; a field is ``None`` when not requested (or not available).

    ``volume_fraction`` [1]; ``surface_density`` [nm^-1]; ``intrinsic`` dict V_V, S_V [nm^-1],
    M_V [nm^-2], chi_V [nm^-3]; ``two_point`` dict h_nm, C, centered, C_axes; ``cpsd`` dict
    r_nm, fraction; ``r_min``, ``r_max`` [nm]; ``constrictivity`` [1]; ``geodesic_tortuosity``
    [1]. ``r_min``, ``constrictivity`` and ``geodesic_tortuosity`` are the string
    ``"not percolating"`` when the phase does not connect the faces along ``axis`` (face
    neighbours, 6-connectivity: the one rule of the descriptors and the transport solver).
    ``radii_bounded`` (with "cpsd" or "constrictivity"): ``False`` when the phase fills the
    window, so that no voxel outside it bounds the balls - the CPSD is 1 at every radius the
    window holds and ``r_min``, ``r_max`` and ``constrictivity`` are ``None`` (JSON null)
    instead of the radius grid's cap; ``True`` otherwise.
    """

    phase: str
    volume_fraction: float | None = None
    surface_density: float | None = None
    intrinsic: dict | None = None
    two_point: dict | None = None
    cpsd: dict | None = None
    r_min: float | str | None = None
    r_max: float | None = None
    constrictivity: float | str | None = None
    geodesic_tortuosity: float | str | None = None
    radii_bounded: bool | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("phase")
        return d


@dataclasses.dataclass(frozen=True)
class Report:
    """Result of :func:`describe`: ``voxel_nm``, ``shape``, ``axis`` and one :class:`PhaseReport` per phase."""

    voxel_nm: float
    shape: tuple[int, int, int]
    axis: int
    phases: tuple[PhaseReport, ...]
    notes: tuple[str, ...] = ()

    def __getitem__(self, phase: str) -> PhaseReport:
        for p in self.phases:
            if p.phase == phase:
                return p
        raise KeyError(phase)

    def to_dict(self) -> dict:
        return {
            "voxel_nm": self.voxel_nm,
            "shape": list(self.shape),
            "axis": self.axis,
            "phases": {p.phase: p.to_dict() for p in self.phases},
            "notes": list(self.notes),
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


def describe_bytes(shape, which=DESCRIPTORS, max_lag_vox: int | None = None) -> int:
    """Estimated peak memory [bytes] of :func:`describe` on a ``shape`` volume (descriptors run one at a time)."""
    n = int(np.prod(shape))
    need = [two_point_bytes(shape, max_lag_vox) if w == "two_point" else BYTES_PER_VOXEL[w] * n for w in which]
    return int(2 * n + max(need, default=0))


def check_describe_memory(shape, which=DESCRIPTORS, max_lag_vox: int | None = None) -> None:
    """``ValueError`` naming the estimate and the limit when :func:`describe` would not fit in memory."""
    need, free = describe_bytes(shape, which, max_lag_vox), available_bytes()
    if free is not None and need > free:
        raise ValueError(
            f"describing a {'x'.join(map(str, shape))} volume ({', '.join(which)}) needs about {need / 2**30:.1f} GiB "
            f"but only {free / 2**30:.1f} GiB is available; use a smaller window, fewer descriptors or a smaller "
            "max_lag_vox (or check_memory=False to try anyway)"
        )


def per_phase(labels, phases, measure) -> dict:
    """``{phase: measure(phase, phase_mask(labels, phase))}`` in the order of ``phases``: the one
    per-phase loop of :func:`describe`, the batch measures (:mod:`jaxcba.batch.measures`, under
    ``vmap``) and calibrate's held-out descriptors. Traceable; one mask alive at a time."""
    return {p: measure(p, phase_mask(labels, p)) for p in phases}


_cheap = jax.jit(intrinsic_densities)
_two_point = jax.jit(two_point_coverage, static_argnums=2)


def _f(x) -> float:
    return float(np.asarray(x))


def _list(x) -> list:
    return np.asarray(x, dtype=np.float64).tolist()


def _checked_arguments(labels, voxel_nm, phases, which, axis, max_lag_vox, check_memory) -> tuple:
    """``(lab, voxel_nm, phases, which, axis, max_lag_vox)`` of :func:`describe`, checked and
    normalised (``lab`` the labels as a ``(z, y, x)`` array); ``ValueError`` for invalid input
    or, with ``check_memory``, a volume that does not fit in memory."""
    from jaxcba.io import check_labels

    lab = check_labels(labels, name="labels")
    voxel_nm = check_voxel_nm(voxel_nm)
    if isinstance(phases, str):
        phases = (phases,)
    phases = tuple(check_phase(p) for p in phases)
    if not phases:
        raise ValueError("phases must name at least one of solid, pore, graphite, cb")
    which = tuple(which)
    bad = [w for w in which if w not in DESCRIPTORS]
    if bad:
        raise ValueError(f"unknown descriptor(s) {bad}; allowed: {', '.join(DESCRIPTORS)}")
    axis = parse_axis(axis)
    if min(lab.shape) < 2:
        raise ValueError(f"every axis needs at least 2 voxels, got shape {lab.shape}")
    if max_lag_vox is not None:
        max_lag_vox = check_int(max_lag_vox, "max_lag_vox", lo=1, hi=min(lab.shape) - 1)
    if check_memory:
        check_describe_memory(lab.shape, which, max_lag_vox)
    return lab, voxel_nm, phases, which, axis, max_lag_vox


def _label_range(lab, phases) -> tuple[int, int]:
    """Smallest and largest label of ``lab``; ``ValueError`` when one of ``phases`` has no voxel."""
    lo, hi = int(lab.min()), int(lab.max())
    present = {"pore": lo == 0, "solid": hi > 0, "graphite": hi == 2}
    for p in phases:
        if not (present[p] if p in present else bool(np.any(lab == 1))):
            raise ValueError(f"phase {p!r} is empty (no voxel of it in the volume)")
    return lo, hi


def _notes(phases, which, axis: int, lo: int, hi: int) -> tuple[str, ...]:
    """The report's notes on the methods of ``which``, for labels in ``[lo, hi]``."""
    notes: list[str] = []
    if "geodesic_tortuosity" in which:
        notes.append(f"geodesic tortuosity metric: {geodesic.METRIC}; thickness = (n - 1) voxels along axis {axis}")
    if {"cpsd", "constrictivity"} & set(which):
        notes.append("r_min by intrusion through the face index 0 of the axis; radii grid 0.5 voxel")
        fills = {"pore": hi == 0, "solid": lo > 0, "graphite": lo == 2, "cb": lo == hi == 1}
        for p in phases:
            if fills[p]:
                notes.append(f"{p} fills the window: no wall bounds its balls, so r_min, r_max and constrictivity "
                             "are not bounded within the window (null, radii_bounded false)")
    if {"geodesic_tortuosity", "constrictivity"} & set(which):
        notes.append("percolation: face-connected (6-neighbour) paths between the faces normal to the axis, "
                     "as in the transport solver")
    return tuple(notes)


def _start(bar, p: str, w: str) -> None:
    """Name phase ``p`` and descriptor ``w`` on the progress ``bar``."""
    bar.set_description_str(f"describe {p}: {w}")


def _finish(bar, ws) -> None:
    """Advance the progress ``bar`` by the cost of the descriptors ``ws``."""
    for w in ws:
        bar.update(_COST[w])


def _intrinsic_fields(jmask, voxel_nm: float, which) -> dict:
    """``volume_fraction`` [1] and/or ``surface_density`` [nm^-1] and ``intrinsic``, as ``which`` asks."""
    d = _cheap(jmask, float(voxel_nm))
    fields: dict[str, Any] = {}
    if "volume_fraction" in which:
        fields["volume_fraction"] = _f(d.V_V)
    if "intrinsic" in which:
        fields["surface_density"] = _f(d.S_V)
        fields["intrinsic"] = {k: _f(v) for k, v in dataclasses.asdict(d).items()}
    return fields


def _two_point_fields(jmask, voxel_nm: float, max_lag_vox: int | None) -> dict:
    """``two_point``: the coverage C(h) at lags ``h_nm`` [nm], centered and per axis."""
    tp = _two_point(jmask, float(voxel_nm), max_lag_vox)
    return {"two_point": {"h_nm": _list(tp.h_nm), "C": _list(tp.C), "centered": _list(tp.centered),
                          "C_axes": _list(tp.C_axes)}}


def _pore_size_fields(mask: np.ndarray, voxel_nm: float, which, axis: int) -> dict:
    """``radii_bounded``, ``r_max`` [nm] and, as ``which`` asks, ``cpsd`` and ``r_min`` [nm] and
    ``constrictivity`` [1] of the phase ``mask`` (bool, ``(z, y, x)``), percolating along ``axis``."""
    radii = pore_size.default_radii_vox(mask)
    bounded = not bool(mask.all())  # a phase filling the window has no wall to bound its balls
    fields: dict[str, Any] = {"radii_bounded": bounded}
    if "constrictivity" in which:
        con = pore_size.constrictivity(mask, voxel_nm, radii_vox=radii, axis=axis)
        r_nm, frac, r_max = con.r_nm, con.cpsd, con.r_max_nm
        perc = bool(np.asarray(con.percolates))
        fields["r_min"] = (_f(con.r_min_nm) if bounded else None) if perc else NOT_PERCOLATING
        fields["constrictivity"] = (_f(con.beta) if bounded else None) if perc else NOT_PERCOLATING
    else:
        c = pore_size.cpsd(mask, voxel_nm, radii_vox=radii)
        r_nm, frac, r_max = c.r_nm, c.fraction, c.r_max_nm
    fields["r_max"] = _f(r_max) if bounded else None
    if "cpsd" in which:
        fields["cpsd"] = {"r_nm": _list(r_nm), "fraction": _list(frac)}
    return fields


def _geodesic_fields(mask: np.ndarray, axis: int) -> dict:
    """``geodesic_tortuosity`` [1] of the phase ``mask`` (bool, ``(z, y, x)``) along ``axis``."""
    t = geodesic.geodesic_tortuosity(mask, axis=axis)
    perc = bool(np.asarray(t.percolates))
    return {"geodesic_tortuosity": _f(t.mean) if perc else NOT_PERCOLATING}


def _phase_report(p: str, jmask, which, voxel_nm: float, axis: int, max_lag_vox: int | None, bar) -> PhaseReport:
    """The descriptors ``which`` of phase ``p`` from its ``jmask`` (bool, ``(z, y, x)``), one at a
    time, cheapest first; the path-based ones share one host copy of the mask."""
    fields: dict[str, Any] = {"phase": p}
    if {"volume_fraction", "intrinsic"} & set(which):
        _start(bar, p, "intrinsic" if "intrinsic" in which else "volume_fraction")
        fields |= _intrinsic_fields(jmask, voxel_nm, which)
        _finish(bar, {"volume_fraction", "intrinsic"} & set(which))
    if "two_point" in which:
        _start(bar, p, "two_point")
        fields |= _two_point_fields(jmask, voxel_nm, max_lag_vox)
        _finish(bar, ["two_point"])
    mask = None
    if {"cpsd", "constrictivity", "geodesic_tortuosity"} & set(which):
        mask = np.asarray(jmask)
    if {"cpsd", "constrictivity"} & set(which):
        _start(bar, p, "constrictivity" if "constrictivity" in which else "cpsd")
        fields |= _pore_size_fields(mask, voxel_nm, which, axis)
        _finish(bar, {"cpsd", "constrictivity"} & set(which))
    if "geodesic_tortuosity" in which:
        _start(bar, p, "geodesic_tortuosity")
        fields |= _geodesic_fields(mask, axis)
        _finish(bar, ["geodesic_tortuosity"])
    return PhaseReport(**fields)


def describe(
    labels,
    voxel_nm: float,
    phases=("solid", "pore"),
    which=DESCRIPTORS,
    *,
    axis: int = 0,
    max_lag_vox: int | None = None,
    progress: bool = False,
    check_memory: bool = True,
) -> Report:
    """Morphological descriptors of the phases of a labelled ``(z, y, x)`` volume.

    ``labels``: integer array with values in {0 pore, 1 cb, 2 graphite}; ``voxel_nm`` [nm];
    ``phases`` from {"solid", "pore", "graphite", "cb"}; ``which`` a subset of
    :data:`DESCRIPTORS` (the path-based ones, "cpsd", "constrictivity" and
    "geodesic_tortuosity", are the expensive ones); ``axis``: transport direction for r_min
    and tortuosity (from face 0 to the opposite face; ``0|1|2`` or ``z|y|x``); ``max_lag_vox``:
    largest lag of C(h), an integer in ``[1, min(shape) - 1]`` (default half the smallest axis,
    at most 100 voxels); ``progress``: a bar on stderr naming the
    running phase and descriptor, with an ETA; ``check_memory``: refuse (``ValueError``) a volume
    whose estimated need (:func:`describe_bytes`) exceeds the available memory. Raises
    ``ValueError`` for invalid input, before any work.
    """
    lab, voxel_nm, phases, which, axis, max_lag_vox = _checked_arguments(
        labels, voxel_nm, phases, which, axis, max_lag_vox, check_memory)
    lo, hi = _label_range(lab, phases)
    notes = _notes(phases, which, axis, lo, hi)
    jlab = jax.numpy.asarray(lab)
    bar = meter(len(phases) * sum(_COST[w] for w in which), "describe", enabled=progress,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def one(p, jmask) -> PhaseReport:
        return _phase_report(p, jmask, which, voxel_nm, axis, max_lag_vox, bar)

    with bar:
        out = list(per_phase(jlab, phases, one).values())
    return Report(voxel_nm=float(voxel_nm), shape=tuple(int(s) for s in lab.shape), axis=axis, phases=tuple(out), notes=notes)
