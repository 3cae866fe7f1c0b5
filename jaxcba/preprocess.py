"""Preprocessing of segmented FIB-SEM volumes as in the paper's Section 2.3.

Steps (each optional, in this order, each recorded in a :class:`PreprocessReport`):

1. ``crop`` to a box ``((z0, z1), (y0, y1), (x0, x1))`` in input voxels;
2. ``close_additive``: morphological closing of the additive phase (labels > 0) with a
   cube of ``2 r + 1`` voxels (the paper's "cuboid of one voxel": ``r = 1``). It fills
   small pore inclusions; filled voxels become carbon black + binder (label 1), since
   Section 2.3.1 precedes the graphite segmentation. The window border is padded by
   mirroring (edge voxels repeated), so closing never invents or removes material at the faces;
3. ``remove_detached``: additive components (26-connectivity) not connected to the
   largest one (the main network), or smaller than ``min_voxels``, become pore;
4. ``segment_graphite`` (when a grey-value / probability volume is given): additive voxels
   whose grey value is at least the ``quantile`` (0.85) of all grey values become graphite,
   the rest carbon black + binder; pore voxels stay pore (Section 2.3.2). Optional paper
   post-processing: graphite components below ``min_graphite_voxels`` dropped, closing with
   a ball of ``graphite_closing_radius`` voxels (restricted to additive voxels);
5. ``resample`` anisotropic voxels (e.g. 20 x 10 x 10 nm, z y x) to cubes of ``to_voxel_nm``
   by nearest-neighbour sampling (for integer factors: keep every k-th slice, the paper's
   down-sampling; unbiased for volume fractions);
6. ``downsample`` by slice removal by a further integer factor (2 or 4, Section 3.3).

All host-side NumPy/SciPy (done once per data set, before any JAX work).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jaxcba.io import check_labels

_CUBE26 = np.ones((3, 3, 3), dtype=bool)


@dataclasses.dataclass(frozen=True)
class StepReport:
    """What one step changed: ``voxels_changed`` (count), ``shape`` after it, free-form ``details``."""

    step: str
    voxels_changed: int
    shape: tuple[int, int, int]
    details: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PreprocessReport:
    """The steps applied, in order, and the output voxel size ``voxel_nm`` ``(z, y, x)`` [nm]."""

    steps: tuple[StepReport, ...]
    voxel_nm: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"voxel_nm": list(self.voxel_nm), "steps": [s.to_dict() for s in self.steps]}

    def table(self) -> str:
        lines = [f"{'step':<18} {'voxels changed':>15}  {'shape (z, y, x)':<18} details"]
        for s in self.steps:
            lines.append(f"{s.step:<18} {s.voxels_changed:>15d}  {str(s.shape):<18} "
                         + ", ".join(f"{k}={v}" for k, v in s.details.items()))
        return "\n".join(lines)


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b)) if a.shape == b.shape else -1


def _box_class():
    """The crop box type (:class:`jaxcba.calibrate.Box`; ``jaxcba.calibrate.cutout.Box`` before #16)."""
    try:
        from jaxcba.calibrate import Box
    except ImportError:
        from jaxcba.calibrate.cutout import Box
    return Box


def crop(labels: np.ndarray, box) -> np.ndarray:
    """Cut ``labels[z0:z1, y0:y1, x0:x1]``; ``box``: ``((z0, z1), (y0, y1), (x0, x1))``, 6 ints or
    ``"z0:z1,y0:y1,x0:x1"`` (:meth:`jaxcba.calibrate.Box.parse`), inside the volume."""
    return labels[_box_class().parse(box, labels.shape, what="crop box").slices]


#: Largest closing radius [voxels]: the paper closes with r = 1; beyond ~50 the cube spans more
#: than a micrometre at 20 nm and the closing erases the pore space.
MAX_CLOSING_RADIUS = 64


def closing_bytes(shape, radius: int) -> int:
    """Peak bytes of :func:`close_additive`: the mirrored padded mask and two filter results (1 B each)."""
    return 3 * int(np.prod([n + 2 * int(radius) for n in shape])) + 2 * int(np.prod(shape))


def resample_shape(shape, voxel_nm_zyx, to_voxel_nm: float) -> tuple[int, ...]:
    """Output shape of :func:`resample` (same rule), computed without allocating anything."""
    vox = np.broadcast_to(np.asarray(voxel_nm_zyx, float), (3,))
    return tuple(int(np.floor(n * v / to_voxel_nm + 1e-9)) for n, v in zip(shape, vox))


def close_additive(labels: np.ndarray, radius: int = 1) -> np.ndarray:
    """Closing of ``labels > 0`` with a ``(2 radius + 1)^3`` cube; new additive voxels get label 1.

    The cube is separable, so dilation and erosion are three 1D max / min filters each (cost
    independent of ``radius``; the same result as ``binary_dilation`` / ``binary_erosion``
    with the full cube and a false border)."""
    from jaxcba._checks import check_int

    radius = check_int(radius, "closing radius", lo=0, hi=MAX_CLOSING_RADIUS)
    if radius < 1:
        return labels
    solid = labels > 0
    pad = np.pad(solid, radius, mode="symmetric").view(np.uint8)
    size = 2 * radius + 1
    for ax in range(3):
        pad = ndimage.maximum_filter1d(pad, size, axis=ax, mode="constant", cval=0)
    for ax in range(3):
        pad = ndimage.minimum_filter1d(pad, size, axis=ax, mode="constant", cval=0)
    closed = pad[(slice(radius, -radius),) * 3].astype(bool)
    out = labels.copy()
    out[closed & ~solid] = 1
    return out


def remove_detached(labels: np.ndarray, min_voxels: int | None = None) -> tuple[np.ndarray, dict]:
    """Set to pore every additive component (26-connected) that is not the largest one, or
    (with ``min_voxels``) only those smaller than ``min_voxels``. Returns ``(labels, info)``."""
    comp, n = ndimage.label(labels > 0, structure=_CUBE26)
    if n <= 1:
        return labels, {"components": n, "removed": 0}
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    if min_voxels is None:
        keep = np.zeros(n + 1, bool)
        keep[int(np.argmax(sizes))] = True
    else:
        keep = sizes >= int(min_voxels)
    keep[0] = True
    out = labels.copy()
    out[~keep[comp]] = 0
    return out, {"components": n, "removed": int(n - np.count_nonzero(keep[1:]))}


def _ball(radius: int) -> np.ndarray:
    r = int(radius)
    z, y, x = np.ogrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return z * z + y * y + x * x <= r * r


def segment_graphite(labels: np.ndarray, grey: np.ndarray, quantile: float = 0.85, min_graphite_voxels: int = 0,
                     graphite_closing_radius: int = 0) -> tuple[np.ndarray, dict]:
    """Split the additive phase into graphite (grey >= ``quantile`` of ``grey``) and cb (Sec. 2.3.2).

    ``grey``: grey values or graphite probabilities, same shape as ``labels``. Pore stays pore.
    """
    grey = np.asarray(grey)
    if grey.shape != labels.shape:
        raise ValueError(f"grey-value volume has shape {grey.shape}, labels have {labels.shape}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    if not np.all(np.isfinite(grey)):
        raise ValueError("grey-value volume contains NaN or infinite values")
    threshold = float(np.quantile(grey, quantile))
    additive = labels > 0
    graphite = additive & (grey >= threshold)
    info = {"threshold": threshold}
    if min_graphite_voxels > 0:
        comp, n = ndimage.label(graphite, structure=_CUBE26)
        sizes = np.bincount(comp.ravel())
        keep = sizes >= min_graphite_voxels
        keep[0] = False
        graphite = keep[comp]
        info["graphite_components_removed"] = int(n - np.count_nonzero(keep[1:]))
    if graphite_closing_radius > 0:
        r = int(graphite_closing_radius)
        pad = np.pad(graphite, r, mode="symmetric")
        graphite = ndimage.binary_closing(pad, _ball(r))[(slice(r, -r),) * 3]
    out = np.where(additive, np.where(graphite & additive, 2, 1), 0).astype(np.uint8)
    return out, info


def resample(labels: np.ndarray, voxel_nm_zyx, to_voxel_nm: float) -> np.ndarray:
    """Nearest-neighbour resampling from voxels ``voxel_nm_zyx`` [nm] to cubes of ``to_voxel_nm`` [nm].

    Output voxel ``i`` along an axis samples the input voxel containing its centre; for an
    integer ratio ``k`` that keeps voxels ``k // 2, k // 2 + k, ...`` (every k-th slice).
    """
    vox = np.broadcast_to(np.asarray(voxel_nm_zyx, float), (3,))
    if not np.all(vox > 0) or not to_voxel_nm > 0:
        raise ValueError(f"voxel sizes must be > 0 nm, got {tuple(vox)} -> {to_voxel_nm}")
    index = []
    for n, v in zip(labels.shape, vox):
        length = n * v
        m = int(np.floor(length / to_voxel_nm + 1e-9))
        if m < 1:
            raise ValueError(f"an axis of {n} voxels x {v} nm is shorter than one {to_voxel_nm} nm voxel")
        centres = (np.arange(m) + 0.5) * to_voxel_nm
        index.append(np.minimum((centres / v).astype(int), n - 1))
    return labels[np.ix_(*index)]


def preprocess_bytes(shape, voxel_nm_zyx, *, to_voxel_nm: float | None = None, closing_radius: int = 1,
                     graphite_closing_radius: int = 0) -> int:
    """Estimated peak bytes of :func:`preprocess` on a ``shape`` input (uint8 labels): the input and
    a copy, the closing, and the resampled output with its index arrays."""
    n = int(np.prod(shape))
    need = 2 * n + closing_bytes(shape, closing_radius)
    if graphite_closing_radius:
        need = max(need, 2 * n + closing_bytes(shape, graphite_closing_radius))
    if to_voxel_nm is not None:
        out = resample_shape(shape, voxel_nm_zyx, to_voxel_nm)
        need = max(need, 2 * n + 2 * int(np.prod([float(m) for m in out])) + 8 * sum(out))
    return int(need)


def check_preprocess_memory(shape, voxel_nm_zyx, *, to_voxel_nm: float | None = None, closing_radius: int = 1,
                            graphite_closing_radius: int = 0) -> None:
    """``ValueError`` with the estimate and the limit when :func:`preprocess` would not fit in memory."""
    from jaxcba._checks import check_memory

    need = preprocess_bytes(shape, voxel_nm_zyx, to_voxel_nm=to_voxel_nm, closing_radius=closing_radius,
                            graphite_closing_radius=graphite_closing_radius)
    what = f"preprocessing a {'x'.join(map(str, shape))} volume"
    if to_voxel_nm is not None:
        out = resample_shape(shape, voxel_nm_zyx, to_voxel_nm)
        what += f" (resampled to {to_voxel_nm:g} nm: {'x'.join(map(str, out))} voxels)"
    check_memory(need, what, hint="use a coarser --to-voxel-nm, a smaller --closing-radius or --crop")


def downsample_slices(labels: np.ndarray, factor: int) -> np.ndarray:
    """Keep every ``factor``-th slice along each axis (the paper's down-sampling, Section 3.3)."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"down-sampling factor must be an integer >= 1, got {factor}")
    k = int(factor)
    return labels[::k, ::k, ::k]


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """Steps 2 and 3 (paper Section 2.3.1), the clean-up of the additive phase.

    ``closing_radius``: half-size [voxels] of the closing cube (``0``: no closing; at most
    :data:`MAX_CLOSING_RADIUS`); ``remove_components``: step 3 on/off; ``min_component_voxels``:
    remove only the components smaller than this (``None``: all but the largest; only with
    ``remove_components``). ``Cleanup(0, False)`` leaves the labels as they are."""

    closing_radius: int = 1
    remove_components: bool = True
    min_component_voxels: int | None = None

    def __post_init__(self):
        from jaxcba._checks import check_int

        check_int(self.closing_radius, "closing_radius", lo=0, hi=MAX_CLOSING_RADIUS)
        if not isinstance(self.remove_components, bool):
            raise ValueError(f"remove_components must be True or False, got {self.remove_components!r}")
        if self.min_component_voxels is not None:
            check_int(self.min_component_voxels, "min_component_voxels", lo=1)
            if not self.remove_components:
                raise ValueError("min_component_voxels needs remove_components=True (it says which components go)")


@dataclasses.dataclass(frozen=True, eq=False)
class GraphiteFromGrey:
    """Step 4 (paper Section 2.3.2): graphite from a grey-value / probability volume.

    ``grey``: ``(z, y, x)``, the shape of the labels; ``quantile``: additive voxels whose grey value
    is at least this quantile of all grey values become graphite (default 0.85, in (0, 1));
    ``min_voxels``: graphite components below this many voxels dropped (0: none);
    ``closing_radius``: closing of the graphite with a ball of this radius [voxels] (0: none)."""

    grey: np.ndarray = dataclasses.field(repr=False)
    quantile: float = 0.85
    min_voxels: int = 0
    closing_radius: int = 0

    def __post_init__(self):
        from jaxcba._checks import check_fraction, check_int

        object.__setattr__(self, "grey", np.asarray(self.grey))
        object.__setattr__(self, "quantile", check_fraction(self.quantile, "quantile"))
        check_int(self.min_voxels, "min_graphite_voxels", lo=0)
        check_int(self.closing_radius, "graphite_closing_radius", lo=0, hi=MAX_CLOSING_RADIUS)


def _checked_voxels(voxel_nm_zyx, to_voxel_nm):
    """``(vox, to_voxel_nm)``: the input voxel ``(z, y, x)`` [nm] and the checked output side (or ``None``)."""
    from jaxcba._checks import check_voxel_nm

    try:
        vox = tuple(float(v) for v in np.broadcast_to(np.asarray(voxel_nm_zyx, float), (3,)))
    except (TypeError, ValueError):
        raise ValueError(f"voxel size must be one or three positive numbers (z, y, x) [nm], got {voxel_nm_zyx!r}") from None
    if not all(np.isfinite(vox)) or min(vox) <= 0:
        raise ValueError(f"voxel size must be positive numbers [nm], got {vox}")
    vox = tuple(check_voxel_nm(v, "voxel size") for v in vox)
    if to_voxel_nm is not None:
        return vox, check_voxel_nm(to_voxel_nm, "to_voxel_nm")
    if max(vox) != min(vox):
        raise ValueError(f"input voxels {vox[2]:g} x {vox[1]:g} x {vox[0]:g} nm (x, y, z) are not cubic; give the "
                         "cubic output voxel side to resample to (--to-voxel-nm / to_voxel_nm)")
    return vox, None


def preprocess(labels, voxel_nm_zyx, *, to_voxel_nm: float | None = None, box=None, cleanup: Cleanup = Cleanup(),
               graphite: GraphiteFromGrey | None = None, downsample: int = 1,
               check_memory: bool = True) -> tuple[np.ndarray, PreprocessReport]:
    """Run the Section 2.3 pipeline (module docstring) on a labelled volume.

    Args:
        labels: ``(z, y, x)`` labels in {0, 1, 2} (graphite may be absent before step 4).
        voxel_nm_zyx: input voxel size, a number or ``(z, y, x)`` [nm] (e.g. ``(20, 10, 10)``).
        to_voxel_nm: cubic output voxel side [nm]; ``None`` keeps the grid, which must be cubic
            then (anisotropic voxels without ``to_voxel_nm`` are refused).
        box: optional crop ``((z0, z1), (y0, y1), (x0, x1))`` or ``"z0:z1,y0:y1,x0:x1"`` in input voxels.
        cleanup: :class:`Cleanup` (steps 2-3: closing, detached components; default ``Cleanup()``).
        graphite: :class:`GraphiteFromGrey` (step 4), or ``None`` (no graphite detection).
        downsample: final slice-removal factor.
        check_memory: refuse (``ValueError``, before allocating) when the estimated peak memory
            of the closing or the resampling (:func:`preprocess_bytes`) exceeds the available memory.
    Returns ``(labels uint8, report)``; every argument is checked first (``ValueError``).
    """
    from jaxcba._checks import check_int

    vol = check_labels(labels, name="input")
    vox, to_voxel_nm = _checked_voxels(voxel_nm_zyx, to_voxel_nm)
    if not isinstance(cleanup, Cleanup):
        raise ValueError(f"cleanup must be a Cleanup(...), got {cleanup!r}")
    if graphite is not None and not isinstance(graphite, GraphiteFromGrey):
        raise ValueError(f"graphite must be a GraphiteFromGrey(grey, ...) or None, got {graphite!r}")
    downsample = check_int(downsample, "downsample", lo=1)
    if check_memory:
        check_preprocess_memory(vol.shape, vox, to_voxel_nm=to_voxel_nm, closing_radius=cleanup.closing_radius,
                                graphite_closing_radius=0 if graphite is None else graphite.closing_radius)
    grey = None if graphite is None else graphite.grey
    if grey is not None and grey.shape != vol.shape:
        raise ValueError(f"grey-value volume has shape {grey.shape}, labels have {vol.shape}")
    steps = []
    if box is not None:
        b = _box_class().parse(box, vol.shape, what="crop box")
        vol = vol[b.slices]
        grey = None if grey is None else grey[b.slices]
        steps.append(StepReport("crop", 0, vol.shape, {"box": [[b.z0, b.z1], [b.y0, b.y1], [b.x0, b.x1]]}))
    vol = _clean(vol, cleanup, steps)
    if graphite is not None:
        new, info = segment_graphite(vol, grey, graphite.quantile, graphite.min_voxels, graphite.closing_radius)
        steps.append(StepReport("segment_graphite", _changed(vol, new), new.shape,
                                {"quantile": graphite.quantile, **info}))
        vol = new
    if to_voxel_nm is not None:
        new = resample(vol, vox, to_voxel_nm)
        steps.append(StepReport("resample", int(vol.size - new.size), new.shape,
                                {"from_nm": list(vox), "to_nm": to_voxel_nm}))
        vol, vox = new, (float(to_voxel_nm),) * 3
    if downsample != 1:
        new = downsample_slices(vol, downsample)
        steps.append(StepReport("downsample", int(vol.size - new.size), new.shape, {"factor": int(downsample)}))
        vol, vox = new, tuple(v * int(downsample) for v in vox)
    return vol.astype(np.uint8), PreprocessReport(tuple(steps), vox)


def _clean(vol: np.ndarray, cleanup: Cleanup, steps: list) -> np.ndarray:
    """Steps 2-3 of ``cleanup`` on ``vol``, each recorded in ``steps``."""
    if cleanup.closing_radius > 0:
        new = close_additive(vol, cleanup.closing_radius)
        steps.append(StepReport("close_additive", _changed(vol, new), new.shape, {"radius": cleanup.closing_radius}))
        vol = new
    if cleanup.remove_components:
        new, info = remove_detached(vol, cleanup.min_component_voxels)
        steps.append(StepReport("remove_detached", _changed(vol, new), new.shape, info))
        vol = new
    return vol


__all__ = ["MAX_CLOSING_RADIUS", "Cleanup", "GraphiteFromGrey", "PreprocessReport", "StepReport",
           "check_preprocess_memory", "close_additive", "crop", "downsample_slices", "preprocess", "preprocess_bytes",
           "remove_detached", "resample", "resample_shape", "segment_graphite"]
