"""Continuous pore size distribution, simulated intrusion and constrictivity (paper Eq. 26, Section 3.3).

All of a phase ``X`` (a boolean ``(z, y, x)`` mask; the paper's ``Xi^c`` for pores, ``Xi`` for
the solid), voxels as points at their centres, open balls ``B(c, r) = {|x - c| < r}`` (Eq. 26):

* ``dt(c)``: Euclidean distance from ``c`` to the nearest voxel centre *not* in ``X`` (the
  window border is not a wall, as in ``scipy.ndimage.distance_transform_edt``). A ball
  ``B(c, r)`` lies in ``X`` iff ``dt(c) >= r``: the erosion is ``A_r = {dt >= r}``.
* **CPSD(r)** = fraction of ``X`` within distance ``< r`` of ``A_r`` (the opening
  ``(X - B_r) + B_r``, Eq. 26). ``r_max = CPSD^-1(0.5)``.
* **Intrusion(r)** (simulated mercury intrusion from the face ``index 0`` of ``axis``): the same
  with ``A_r`` replaced by its part 6-connected to that face (a ball of radius ``r`` pushed in
  from outside can reach exactly those centres). Computed for all radii at once by a
  widest-path transform ``w(c) = max over 6-paths from the face of min dt^2`` (line sweeps):
  the reachable centres are ``{w >= r^2}``. ``r_min = Intrusion^-1(0.5)``, the largest
  radius whose intruding balls still cover half of the phase.
* **Constrictivity** ``beta = (r_min / r_max)^2`` in [0, 1] (Neumann et al. 2019, the paper's ref. [55]).
* **Local thickness** ``LT(x) = max{r : x in opening by B_r}`` on the radius grid.

The curves are evaluated on a radius grid ``radii_vox`` (voxels; default ``1, 1.5, 2, ...`` up to
the largest ``dt`` of the phase); ``CPSD^-1(0.5)`` is the linear interpolation where the curve
crosses 0.5 (the grid radius itself where it stays >= 0.5 to the end). ``r_min = 0`` when less
than half of the phase is connected to the inlet face at all. All distances are exact (see
:mod:`jaxcba.descriptors.distance`); cost per radius ``r`` is ``O(r)`` per voxel.

Jittable and vmappable over a batch of equally shaped masks when ``radii_vox`` is given (it is
static); without it the default grid needs the phase's largest ``dt`` on the host.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcba.descriptors.distance import capped_squared_distance, edt_squared, within_distance
from jaxcba.morphology import face_seeds, percolating_cluster

__all__ = [
    "Constrictivity",
    "PoreSizeDistribution",
    "constrictivity",
    "cpsd",
    "default_radii_vox",
    "radius_grid",
    "intrusion",
    "local_thickness",
    "radius_at_half",
]

#: Dilation windows (voxels) the radii are grouped into: one compiled scan body per window used.
_WINDOWS = tuple(2**k for k in range(12))


@dataclasses.dataclass(frozen=True)
class PoreSizeDistribution:
    """A coverage curve of one phase: ``r_nm`` ``(R,)`` [nm], ``fraction`` ``(R,)`` [1],
    ``r_half_nm`` [nm] = the curve's inverse at 0.5 (``r_max`` for the CPSD, ``r_min`` for intrusion).
    Leading batch axis on every field under ``vmap``."""

    r_nm: object
    fraction: object
    r_half_nm: object

    @property
    def r_max_nm(self):
        return self.r_half_nm

    def to_dict(self) -> dict:
        return {k: np.asarray(getattr(self, k)).tolist() for k in ("r_nm", "fraction", "r_half_nm")}


@dataclasses.dataclass(frozen=True)
class Constrictivity:
    """Constrictivity of one phase along ``axis``.

    ``r_nm`` ``(R,)`` [nm]; ``cpsd``, ``intrusion`` ``(R,)`` [1]; ``r_max_nm``, ``r_min_nm`` [nm];
    ``beta`` = (r_min / r_max)^2 [1]; ``percolates``: bool, whether the phase connects the two
    faces normal to ``axis`` (6-connectivity). ``r_min_nm`` and ``beta`` are NaN when it does not.
    """

    r_nm: object
    cpsd: object
    intrusion: object
    r_max_nm: object
    r_min_nm: object
    beta: object
    percolates: object

    def to_dict(self) -> dict:
        return {f.name: np.asarray(getattr(self, f.name)).tolist() for f in dataclasses.fields(self)}


for _cls in (PoreSizeDistribution, Constrictivity):
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in dataclasses.fields(_cls)], meta_fields=[])


# ----------------------------------------------------------------------------- helpers


def _check_mask(mask) -> None:
    if getattr(mask, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) phase mask, got shape {getattr(mask, 'shape', None)}")
    if isinstance(mask, np.ndarray) and not mask.any():
        raise ValueError("the phase is empty (no True voxel): its pore size distribution is undefined")


def _check_radii(radii_vox) -> tuple[float, ...]:
    r = np.atleast_1d(np.asarray(radii_vox, dtype=np.float64))
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"radii_vox must be a non-empty 1D sequence of finite radii > 0 [voxels], got {radii_vox!r}")
    if np.any(np.diff(r) <= 0):
        raise ValueError("radii_vox must be strictly increasing")
    return tuple(float(x) for x in r)


def radius_grid(max_radius_vox: float, step: float = 0.5) -> np.ndarray:
    """Radius grid ``1, 1 + step, ...`` [voxels] up to ``max_radius_vox`` (at least ``[1]``)."""
    return np.arange(1.0, max(float(max_radius_vox), 1.0) + 1e-9, step)


def default_radii_vox(mask, step: float = 0.5) -> np.ndarray:
    """Radius grid ``1, 1 + step, ...`` [voxels] up to the largest distance-to-boundary in ``mask`` (host).

    ``mask``: one boolean ``(z, y, x)`` volume or a batch ``(b, z, y, x)`` (the grid then
    covers the largest ``dt`` of the batch)."""
    m = np.asarray(mask, dtype=bool)
    m = m.reshape((-1,) + m.shape[-3:])
    if not m.any():
        raise ValueError("the phase is empty (no True voxel): its pore size distribution is undefined")
    w = max(m.shape[-3:]) - 1
    dt_max = 0.0
    for k in range(m.shape[0]):  # host loop over the batch only
        d2 = np.asarray(edt_squared(m[k], None if w <= 64 else _max_dt_window(m[k])))
        finite = d2[np.isfinite(d2) & m[k]]
        dt_max = max(dt_max, float(np.sqrt(finite.max())) if finite.size else float(w))
    return radius_grid(dt_max, step)


def _max_dt_window(mask) -> int:
    """Smallest window (doubling from 16) in which the distance transform is exact everywhere."""
    w = 16
    limit = max(mask.shape) - 1
    while w < limit:
        d2 = np.asarray(edt_squared(mask, w))
        if np.all(d2[mask] <= w * w):
            return w
        w *= 2
    return limit


def radius_at_half(r, fraction):
    """Largest ``r`` with ``fraction(r) >= 0.5``, linearly interpolated to the crossing (jittable).

    0 when ``fraction < 0.5`` already at ``r[0]``; ``r[-1]`` when it never drops below 0.5."""
    r = jnp.asarray(r)
    f = jnp.asarray(fraction)
    n = f.shape[-1]
    above = f >= 0.5
    idx = jnp.arange(n)
    i = jnp.max(jnp.where(above, idx, -1), axis=-1)
    ic = jnp.clip(i, 0, n - 1)
    jn = jnp.clip(i + 1, 0, n - 1)
    fi = jnp.take_along_axis(f, ic[..., None], -1)[..., 0]
    fj = jnp.take_along_axis(f, jn[..., None], -1)[..., 0]
    ri = jnp.take(r, ic)
    rj = jnp.take(r, jn)
    denom = jnp.where(fi > fj, fi - fj, 1.0)
    interp = jnp.where((i + 1 < n) & (fi > fj), ri + (fi - 0.5) / denom * (rj - ri), ri)
    return jnp.where(i < 0, 0.0, interp)


def _buckets(radii: tuple[float, ...]) -> list[tuple[int, tuple[float, ...]]]:
    """Group radii by the window their dilation needs (offsets ``|k| < r``), rounded up to ``_WINDOWS``."""
    groups: dict[int, list[float]] = {}
    for r in radii:
        need = max(math.ceil(r) - 1, 0)
        w = next((b for b in (0,) + _WINDOWS if b >= need), need)
        groups.setdefault(w, []).append(r)
    return sorted((w, tuple(rs)) for w, rs in groups.items())


def _max_min_lines(w, cap, reverse):
    """Along axis 0: ``out[i] = max(w[i], min(out[i -+ 1], cap[i]))`` (a wall has ``cap = 0``)."""

    def step(carry, xs):
        wi, ci = xs
        out = jnp.maximum(wi, jnp.minimum(carry, ci))
        return out, out

    _, out = lax.scan(step, jnp.zeros(w.shape[1:], w.dtype), (w, cap), reverse=reverse)
    return out


def _widest_path(cap, seeds, max_sweeps: int = 100_000):
    """``w(x) = max over 6-connected paths from a seed to x of min cap along the path`` (0 if none).

    ``{w >= t}`` is the reconstruction of ``{cap >= t}`` from the seeds, for every threshold ``t``
    at once (a bottleneck / widest-path transform), by line sweeps along the three axes.
    """
    w0 = jnp.where(seeds, cap, 0)

    def sweep(w):
        for axis in range(3):
            wa, ca = jnp.moveaxis(w, axis, 0), jnp.moveaxis(cap, axis, 0)
            wa = _max_min_lines(_max_min_lines(wa, ca, False), ca, True)
            w = jnp.moveaxis(wa, 0, axis)
        return w

    def body(state):
        w, _, k = state
        new = sweep(w)
        return new, jnp.any(new != w), k + 1

    w, _, _ = lax.while_loop(lambda s: s[1] & (s[2] < max_sweeps), body, (w0, jnp.array(True), jnp.array(0, jnp.int32)))
    return w


@partial(jax.jit, static_argnames=("radii", "axis", "opening", "intrude", "thickness"))
def _curves(mask, radii, axis=0, opening=True, intrude=False, thickness=False):
    """Opening / intrusion coverage fractions ``(R,)`` and local thickness for a static radius grid."""
    mask = jnp.asarray(mask, dtype=bool)
    n_phase = jnp.sum(mask, dtype=jnp.float32)
    wmax = max(math.ceil(max(radii)), 1)
    dt2 = capped_squared_distance(~mask, wmax).astype(jnp.float32)  # exact below (wmax + 1)^2 > max(radii)^2
    if intrude:  # entry radius^2 of every voxel from the inlet face, all radii at once
        entry2 = _widest_path(jnp.where(mask, dt2, 0.0), face_seeds(mask.shape, axis, "first") & mask)
    lt0 = jnp.zeros(mask.shape, jnp.float32)
    opens, intrs = [], []
    for window, rs in _buckets(radii):

        def step(lt, r, window=window):
            centres = mask & (dt2 >= r * r)
            out_open = out_intr = jnp.float32(0)
            if opening:
                covered = mask & within_distance(centres, r, window)
                out_open = jnp.sum(covered, dtype=jnp.float32) / n_phase
                if thickness:
                    lt = jnp.where(covered, jnp.maximum(lt, r), lt)
            if intrude:
                reach = mask & (entry2 >= r * r)  # = reconstruct(centres, inlet face), 6-connected
                covered_i = mask & within_distance(reach, r, window)
                out_intr = jnp.sum(covered_i, dtype=jnp.float32) / n_phase
            return lt, (out_open, out_intr)

        lt0, (o, i) = lax.scan(step, lt0, jnp.asarray(rs, jnp.float32))
        opens.append(o)
        intrs.append(i)
    perc = percolating_cluster(mask, axis)[1] if intrude else jnp.array(True)
    return jnp.concatenate(opens), jnp.concatenate(intrs), lt0, perc


def _radii(mask, radii_vox) -> tuple[float, ...]:
    return _check_radii(default_radii_vox(mask) if radii_vox is None else radii_vox)


# ----------------------------------------------------------------------------- public API


def cpsd(mask, voxel_nm: float = 1.0, radii_vox=None) -> PoreSizeDistribution:
    """Continuous pore size distribution CPSD(r) of a phase (paper Eq. 26) and ``r_max = CPSD^-1(0.5)``.

    Args:
        mask: bool ``(z, y, x)`` phase (``labels == 0`` for the pore space).
        voxel_nm: voxel side length [nm].
        radii_vox: strictly increasing radii [voxels] (static); default
            :func:`default_radii_vox` (host). Give it to jit / vmap this function.

    Returns:
        :class:`PoreSizeDistribution` with ``r_nm = radii_vox * voxel_nm``, ``fraction`` and
        ``r_half_nm`` (alias ``r_max_nm``).
    """
    _check_mask(mask)
    radii = _radii(mask, radii_vox)
    frac = _curves(mask, radii)[0]
    r_vox = jnp.asarray(radii, jnp.float32)
    return PoreSizeDistribution(r_nm=r_vox * voxel_nm, fraction=frac, r_half_nm=radius_at_half(r_vox, frac) * voxel_nm)


def intrusion(mask, voxel_nm: float = 1.0, radii_vox=None, axis: int = 0) -> PoreSizeDistribution:
    """Simulated intrusion from the face ``index 0`` of ``axis``: covered fraction per radius and ``r_min`` [nm]."""
    _check_mask(mask)
    _check_axis(axis)
    radii = _radii(mask, radii_vox)
    frac = _curves(mask, radii, axis=axis, opening=False, intrude=True)[1]
    r_vox = jnp.asarray(radii, jnp.float32)
    return PoreSizeDistribution(r_nm=r_vox * voxel_nm, fraction=frac, r_half_nm=radius_at_half(r_vox, frac) * voxel_nm)


def constrictivity(mask, voxel_nm: float = 1.0, radii_vox=None, axis: int = 0) -> Constrictivity:
    """Constrictivity ``beta = (r_min / r_max)^2`` of a phase along ``axis`` (Section 3.3, ref. [55]).

    ``r_max`` from the CPSD, ``r_min`` from intrusion through the face ``index 0`` of ``axis``,
    both on the same radius grid. ``percolates`` says whether the phase connects the two faces;
    if not, ``r_min_nm`` and ``beta`` are NaN (the report prints "not percolating").
    """
    _check_mask(mask)
    _check_axis(axis)
    radii = _radii(mask, radii_vox)
    op, intr, _, perc = _curves(mask, radii, axis=axis, opening=True, intrude=True)
    r_vox = jnp.asarray(radii, jnp.float32)
    r_max = radius_at_half(r_vox, op) * voxel_nm
    r_min = jnp.where(perc, radius_at_half(r_vox, intr) * voxel_nm, jnp.nan)
    beta = jnp.where(perc, (r_min / r_max) ** 2, jnp.nan)
    return Constrictivity(
        r_nm=r_vox * voxel_nm, cpsd=op, intrusion=intr, r_max_nm=r_max, r_min_nm=r_min, beta=beta, percolates=perc
    )


def local_thickness(mask, radii_vox=None) -> jax.Array:
    """Local thickness [voxels]: the largest grid radius ``r`` whose opening covers the voxel (0 off the phase).

    Same definition as ``porespy.filters.local_thickness`` (ball radii, not diameters).
    """
    _check_mask(mask)
    radii = _radii(mask, radii_vox)
    return _curves(mask, radii, thickness=True)[2]


def _check_axis(axis) -> None:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis!r}")
