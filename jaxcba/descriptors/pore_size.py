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
  from outside can reach exactly those centres). ``r_min = Intrusion^-1(0.5)``, the largest
  radius whose intruding balls still cover half of the phase.
* **Constrictivity** ``beta = (r_min / r_max)^2`` in [0, 1] (Neumann et al. 2019, the paper's ref. [55]).
* **Local thickness** ``LT(x) = max{r : x in opening by B_r}`` on the radius grid.

The curves are evaluated on a radius grid ``radii_vox`` (voxels; default ``1, 1.5, 2, ...`` up to
the largest ``dt`` of the phase); ``CPSD^-1(0.5)`` is the linear interpolation where the curve
crosses 0.5 (the grid radius itself where it stays >= 0.5 to the end). ``r_min = 0`` when less
than half of the phase is connected to the inlet face at all.

Algorithm (all exact, integer arithmetic): with ``t_i = ceil(r_i^2)``, every voxel gets a radius
level ``L = 1 + #{i : dt^2 >= t_i}`` (0 off the phase; uint8, uint16 beyond 253 radii), so the
centres of radius ``r_i`` are ``{L >= i + 2}``. Intrusion needs one widest-path transform
``W(x) = max over 6-paths from the face of min L`` (in-place plane sweeps until stable; same
dtype as ``L``): the intruding centres are ``{W >= i + 2}``, and the phase percolates iff
``W >= 1`` somewhere on the far face. Then, one compiled program per window of ``_WINDOWS``
(the smallest that holds the ball), z-slab by z-slab: for each radius, the 1D distance along z
to its centres on the slab (two scans reading ``L`` or ``W`` plane by plane), then plane by plane
the windowed min-plus passes along x and y, compared with ``t_i``, and the covered voxels
counted. A radius with no centre within reach of a slab, and intruding centres equal to all
centres there (from per-plane summaries of ``L`` and ``W``), cost a test only. The opening of
every radius is computed, not read off the local thickness: on the voxel grid the openings are
not nested (a voxel can be covered at ``r`` and not at a smaller grid radius). Cost per radius
``O(r)`` per voxel of the slabs that hold its centres.

Memory (one phase, ``N`` voxels): the level map ``L`` (1 byte a voxel) and, for intrusion, ``W``
(1 byte a voxel), plus two slab-sized uint8 arrays (a slab is about ``max(2^23, N / 16)``
voxels) and one plane's work; the mask's device copy (1 byte a voxel) lives only while ``L`` is
computed. XLA's memory analysis at 400³ (63 radii): at most 3 bytes a voxel of arguments,
results and temporaries in any of the compiled steps.

Jittable and vmappable over a batch of equally shaped masks when ``radii_vox`` is given (it is
static); without it the default grid needs the phase's largest ``dt`` on the host
(:func:`default_radii_vox`, slab-wise capped distances with a doubling window).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcba.descriptors.distance import _scan_distance_1d

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

#: Dilation windows (voxels) the radii are grouped into: one compiled scan body per window used
#: (every window up to 6, then steps of about 25 %).
_WINDOWS = tuple(range(7)) + tuple(sorted({int(round(6 * 1.25**k)) for k in range(1, 40)} - set(range(7))))


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
    limit = max(m.shape[-3:]) - 1
    dt_max = 0.0
    for k in range(m.shape[0]):  # host loop over the batch only
        dt_max = max(dt_max, _largest_dt(m[k], limit))
    return radius_grid(dt_max, step)


def _largest_dt(mask, limit: int) -> float:
    """Largest distance-to-boundary [voxels] of one phase: windows 16, 32, ... until one holds it.

    A window ``w`` gives the exact ``dt^2`` below ``(w + 1)^2``; at ``w = limit`` (every voxel in
    reach) it is exact everywhere, and a phase without any other voxel gets ``limit``."""
    w = min(16, limit)
    while True:
        cap = (w + 1) ** 2 if w < limit else 3 * limit * limit + 1
        d2 = int(_max_dt2(mask, w, cap))
        if d2 < cap:
            return math.sqrt(d2)
        if w >= limit:
            return float(limit)
        w = min(2 * w, limit)


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


def _thresholds(radii: tuple[float, ...]) -> np.ndarray:
    """Integer squared-distance thresholds ``t_i = ceil(r_i^2)`` (``r_i^2`` in float32): for integer ``D``,
    ``D >= r_i^2`` iff ``D >= t_i`` and ``D < r_i^2`` iff ``D < t_i``."""
    r = np.asarray(radii, np.float32)
    return np.ceil((r * r).astype(np.float64)).astype(np.int64)


def _window(t: int) -> int:
    """Largest integer offset ``k`` with ``k^2 < t`` (the ball ``|k|^2 < t`` fits in ``[-k, k]^3``)."""
    return math.isqrt(max(int(t) - 1, 0))


def _buckets(thresholds) -> list[tuple[int, tuple[int, ...]]]:
    """Group radius indices by the smallest window of ``_WINDOWS`` that holds their ball."""
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(thresholds):
        need = _window(t)
        w = next((b for b in _WINDOWS if b >= need), need)
        groups.setdefault(w, []).append(i)
    return sorted((w, tuple(ix)) for w, ix in groups.items())


def _slab_layout(nz: int, plane: int, slab_planes: int | None) -> tuple[int, int]:
    """(planes per z-slab ``T``, number of slabs): about ``max(2^23, N / 16)`` voxels a slab."""
    if slab_planes is None:
        target = max(2**23, (nz * plane) // 16)
        slab_planes = -(-target // plane)
    n = -(-nz // max(1, min(nz, int(slab_planes))))
    return -(-nz // n), n


def _slab_start(s, slab: int, nz: int):
    """First plane of z-slab ``s`` (traced) of :func:`_slab_layout`: ``min(s slab, nz - slab)``, so
    the last slab overlaps its neighbour instead of reaching past the volume."""
    return jnp.minimum(s * slab, nz - slab)


def _int_dtype(cap: int):
    return jnp.int16 if 2 * cap < 32767 else jnp.int32


def _level_dtype(n_levels: int):
    return jnp.uint8 if n_levels <= 255 else jnp.uint16


def _min_plus(f, axis: int, w: int, lo: int, n: int):
    """``min_{|k| <= w} f(x + k e_axis) + k^2`` for the ``n`` positions starting at ``lo`` (needs ``lo >= w``).

    The in-plane passes run along x (the minor axis) first, then along y: the same minimum
    (the passes commute), and on XLA's CPU backend 2.2-2.8x faster for the whole CPSD at 256³
    than y first (an x pass over the y pass's padded output vectorises poorly)."""
    out = lax.slice_in_dim(f, lo, lo + n, axis=axis)
    for k in range(1, w + 1):
        a = lax.slice_in_dim(f, lo - k, lo - k + n, axis=axis)
        b = lax.slice_in_dim(f, lo + k, lo + k + n, axis=axis)
        out = jnp.minimum(out, jnp.minimum(a, b) + jnp.asarray(k * k, f.dtype))
    return out


def _slab_dt2(mask, start, slab: int, w: int, cap: int):
    """Squared distance [voxel^2] to the nearest non-phase voxel on planes ``[start, start + slab)``
    of ``mask`` (planes outside it count as phase: the border is not a wall), capped at ``cap``;
    exact below ``min(cap, (w + 1)^2)`` (and everywhere below ``cap`` when ``w`` spans the
    volume). The 1D distance along z by two scans over the slab and ``w`` planes each side, then
    windowed min-plus passes along x and y (integers). Returns it and the slab's mask (planes
    outside the volume: True)."""
    nz, ny, nx = mask.shape
    dtype = _int_dtype(cap)
    z = start - w + jnp.arange(slab + 2 * w)  # the slab and w planes each side
    inside = ((z >= 0) & (z < nz))[:, None, None]
    m = jnp.where(inside, jnp.take(mask, jnp.clip(z, 0, nz - 1), axis=0), True)
    d1 = _scan_distance_1d(~m, w + 1)[w : w + slab].astype(dtype)  # w + 1: no site within w planes
    f = jnp.where(d1 > w, jnp.asarray(cap, dtype), jnp.minimum(d1 * d1, jnp.asarray(cap, dtype)))
    for axis, n in ((2, nx), (1, ny)):  # x first: see _min_plus
        ww = min(w, n - 1)
        if ww > 0:
            pad = [(0, 0)] * 3
            pad[axis] = (ww, ww)
            f = jnp.minimum(_min_plus(jnp.pad(f, pad, constant_values=cap), axis, ww, ww, n), jnp.asarray(cap, dtype))
    return f, m[w : w + slab]


def _level_table(thresholds, halo: int) -> np.ndarray:
    """Radius level of every capped squared distance ``0 .. (halo + 1)^2``: ``1 + #{i : d^2 >= t_i}``."""
    cap = (halo + 1) ** 2
    ldt = _level_dtype(len(thresholds) + 1)
    return (1 + np.searchsorted(thresholds, np.arange(cap + 1), side="right")).astype(ldt)


@partial(jax.jit, static_argnames=("halo", "slab", "n_slabs"))
def _levels(mask, table, halo: int, slab: int, n_slabs: int):
    """Radius level of every voxel ``(z, y, x)`` (``table``'s dtype, uint8 or uint16) and the phase's voxel count (int32).

    ``level = 0`` off the phase, else ``table[dt^2]`` with the exact ``dt^2`` below
    ``(halo + 1)^2 >= max t_i``: slab by slab (slab ``s`` starts at plane ``min(s slab, nz - slab)``;
    the last one overlaps its neighbour and writes the same levels there), the 1D distance along
    z to the nearest voxel off the phase (:func:`_z_distance`, planes outside the volume are no
    wall), then plane by plane the windowed min-plus passes along x and y, as
    :func:`_slab_dt2`. Memory beside the mask and the levels: two slab-sized uint8 arrays and one
    plane's work.
    """
    mask = jnp.asarray(mask, bool)
    nz, ny, nx = mask.shape
    cap = (halo + 1) ** 2
    dtype = _int_dtype(cap)
    capv = jnp.asarray(cap, dtype)
    ldt = table.dtype

    def wall(z):
        zc = jnp.clip(z, 0, nz - 1)
        return ~lax.dynamic_index_in_dim(mask, zc, 0, keepdims=False) & (z >= 0) & (z < nz)

    def put(s, lev):
        z0 = _slab_start(s, slab, nz)
        dz = _z_distance(wall, z0, slab, halo, (ny, nx))

        def plane(q, lev):
            d = lax.dynamic_index_in_dim(dz, q, 0, keepdims=False).astype(dtype)
            f = jnp.where(d > halo, capv, jnp.minimum(d * d, capv))
            for axis, n in ((1, nx), (0, ny)):  # x first: see _min_plus
                ww = min(halo, n - 1)
                if ww > 0:
                    pad = [(0, 0)] * 2
                    pad[axis] = (ww, ww)
                    f = jnp.minimum(_min_plus(jnp.pad(f, pad, constant_values=cap), axis, ww, ww, n), capv)
            m = lax.dynamic_index_in_dim(mask, z0 + q, 0, keepdims=False)
            one = jnp.where(m, jnp.take(table, f.astype(jnp.int32), mode="clip"), jnp.zeros((), ldt))
            return lax.dynamic_update_index_in_dim(lev, one, z0 + q, 0)

        return lax.fori_loop(0, slab, plane, lev)

    def count(z, c):  # plane by plane: a whole-volume sum would convert the mask to int32 first
        return c + jnp.sum(lax.dynamic_index_in_dim(mask, z, 0, keepdims=False), dtype=jnp.int32)

    lev = lax.fori_loop(0, n_slabs, put, jnp.zeros(mask.shape, ldt))
    return lev, lax.fori_loop(0, nz, count, jnp.int32(0))


@partial(jax.jit, static_argnames=("window", "cap", "slab_planes"))
def _max_dt2(mask, window: int, cap: int, slab_planes=None):
    """Largest ``min(dt^2, cap)`` over the phase [voxel^2] (exact below ``(window + 1)^2``), slab by slab.

    Slabs start at :func:`_slab_start`: none reaches past the volume, whose planes
    :func:`_slab_dt2` counts as phase (their distances, larger than any inside, made the maximum
    too large)."""
    mask = jnp.asarray(mask, bool)
    nz, ny, nx = mask.shape
    slab, n_slabs = _slab_layout(nz, ny * nx, slab_planes)

    def one(s):
        f, m = _slab_dt2(mask, _slab_start(s, slab, nz), slab, window, cap)
        return jnp.max(jnp.where(m, f, 0))

    return jnp.max(lax.map(one, jnp.arange(n_slabs)))


def _line_max_min(w, cap, reverse: bool, lo: int = 0, hi: int | None = None, axis: int = 0):
    """In place along ``axis`` (0 or 1) for ``lo <= j < hi``: ``w[j] = max(w[j], min(w[j -+ 1], cap[j]))``
    (the plane before the first one counts as 0)."""
    hi = w.shape[axis] if hi is None else hi
    n = hi - lo

    def body(k, st):
        w, carry = st
        j = lo + (n - 1 - k if reverse else k)
        out = jnp.maximum(lax.dynamic_index_in_dim(w, j, axis, keepdims=False),
                          jnp.minimum(carry, lax.dynamic_index_in_dim(cap, j, axis, keepdims=False)))
        return lax.dynamic_update_index_in_dim(w, out, j, axis), out

    shape = w.shape[:axis] + w.shape[axis + 1 :]
    return lax.fori_loop(0, n, body, (w, jnp.zeros(shape, w.dtype)))[0]


def _widest_path(cap, axis: int, face: int, max_sweeps: int = 100_000, slab_planes: int | None = None):
    """``w(x) = max over 6-connected paths from the plane ``face`` normal to ``axis`` to x of min cap
    along the path`` (0 if none); same shape and dtype as ``cap`` ``(z, y, x)``.

    ``{w >= t}`` is the reconstruction of ``{cap >= t}`` from that face, for every threshold
    ``t`` at once (a bottleneck / widest-path transform): in-place plane-by-plane sweeps forwards
    and backwards along z, then y, then x, until a round changes nothing. The x sweeps run z-slab
    by z-slab (:func:`_slab_layout`) on an ``(x, z, y)`` copy of the slab, each plane contiguous.
    ``w`` only grows and never exceeds the transform, whose value is the least fixpoint of the
    sweeps, so the order of the sweeps does not change the result; a round changed something iff
    a row sum grew (row sums plane by plane: ``(z, y)`` int32). Memory: ``cap``, ``w`` and two
    transposed slabs.
    """
    nz, ny, nx = cap.shape
    slab, n_slabs = _slab_layout(nz, ny * nx, slab_planes)
    w0 = jnp.zeros_like(cap)
    w0 = lax.dynamic_update_index_in_dim(w0, lax.index_in_dim(cap, face, axis, keepdims=False), face, axis)

    def rows(w):
        def one(z, r):
            plane = lax.dynamic_index_in_dim(w, z, 0, keepdims=False)
            return lax.dynamic_update_index_in_dim(r, jnp.sum(plane, axis=1, dtype=jnp.int32), z, 0)

        return lax.fori_loop(0, nz, one, jnp.zeros((nz, ny), jnp.int32))

    def x_sweeps(s, w):
        z0 = _slab_start(s, slab, nz)
        wx = jnp.transpose(lax.dynamic_slice_in_dim(w, z0, slab, 0), (2, 0, 1))  # (x, slab, y)
        cx = jnp.transpose(lax.dynamic_slice_in_dim(cap, z0, slab, 0), (2, 0, 1))
        for rev in (False, True):
            wx = _line_max_min(wx, cx, rev)
        return lax.dynamic_update_slice_in_dim(w, jnp.transpose(wx, (1, 2, 0)), z0, 0)

    def body(state):
        w, sums, _, k = state
        for rev in (False, True):
            w = _line_max_min(w, cap, rev)
        for rev in (False, True):
            w = _line_max_min(w, cap, rev, axis=1)
        w = lax.fori_loop(0, n_slabs, x_sweeps, w)
        new = rows(w)
        return w, new, jnp.any(new != sums), k + 1

    init = (w0, rows(w0), jnp.array(True), jnp.array(0, jnp.int32))
    return lax.while_loop(lambda s: s[2] & (s[3] < max_sweeps), body, init)[0]


@partial(jax.jit, static_argnames=("axis", "slab_planes"))
def _reach(lev, axis: int, slab_planes=None):
    """Intrusion levels from the face ``index 0`` of ``axis`` (:func:`_widest_path` of the radius
    levels ``(z, y, x)``) and whether the phase percolates (a level >= 1 on the far face)."""
    w = _widest_path(lev, axis, 0, slab_planes=slab_planes)
    return w, jnp.any(lax.index_in_dim(w, -1, axis, keepdims=False) > 0)


def _covered(sub, level, t, wb: int, slab: int, ny: int, nx: int):
    """Dilation of ``{sub > level}`` by the open ball ``|k|^2 < t`` on the slab's ``slab`` middle planes.

    ``sub``: ``(slab + 2 wb, ny + 2 wb, nx + 2 wb)`` levels (zero outside the volume). The squared
    distance to the set is exact below ``(wb + 1)^2 >= t``: 1D distance along z by scans, then
    windowed min-plus along x and y. Returns bool ``(slab, ny, nx)``."""
    cap = (wb + 1) ** 2
    dtype = _int_dtype(cap)
    dz = _scan_distance_1d(sub > level, wb + 1)[wb : wb + slab].astype(dtype)
    f = dz * dz
    if wb > 0:
        f = jnp.minimum(_min_plus(f, 2, wb, wb, nx), jnp.asarray(cap, dtype))  # x first: see _min_plus
        f = _min_plus(f, 1, wb, wb, ny)
    else:
        f = f[:, wb : wb + ny, wb : wb + nx]
    return f < t.astype(dtype)


def _z_distance(site, z0, slab: int, wb: int, plane_shape):
    """Distance along z [planes] to the nearest plane ``z`` with ``site(z)`` true, capped at ``wb + 1``,
    on the planes ``z0 .. z0 + slab - 1``: ``(slab, *plane_shape)`` (uint8, int16 for ``wb >= 254``).

    Two scans reading ``site`` plane by plane (``wb`` planes of warm-up each side, only the slab's
    planes stored); the same values as :func:`jaxcba.descriptors.distance._scan_distance_1d` over
    the slab and ``wb`` planes each side."""
    dtype = jnp.uint8 if wb + 1 < 255 else jnp.int16
    capv = jnp.asarray(wb + 1, dtype)
    full = jnp.full(plane_shape, wb + 1, dtype)

    def step(c, z):
        return jnp.where(site(z), jnp.zeros((), dtype), jnp.minimum(c + 1, capv))

    def fwd(c, q):
        c = step(c, z0 + q)
        return c, c

    def back(c, xs):
        q, f = xs
        c = step(c, z0 + q)
        return c, jnp.minimum(c, f)

    c = lax.fori_loop(0, wb, lambda q, c: step(c, z0 - wb + q), full)
    _, f = lax.scan(fwd, c, jnp.arange(slab))
    c = lax.fori_loop(0, wb, lambda q, c: step(c, z0 + slab + wb - 1 - q), full)
    return lax.scan(back, c, (jnp.arange(slab), f), reverse=True)[1]


@partial(jax.jit, static_argnames=("n_levels",))
def _plane_stats(lev, reach, n_levels: int):
    """Per z-plane summaries of the levels ``(z, y, x)`` for the tests of :func:`_bucket_counts`.

    Returns the largest level of each plane ``(z,)``, the largest intrusion level ``(z,)`` and
    ``differ`` bool ``(z, n_levels)``: whether some voxel of the plane has ``reach <= l < lev``
    (its centre of a radius with level threshold ``l`` does not intrude; ``reach <= lev``
    everywhere), from the largest ``lev`` per ``reach`` value of the plane (a scatter-max) and its
    running maximum. ``reach`` None: ``(top, None, None)``."""
    top = jnp.max(lev, axis=(1, 2))
    if reach is None:
        return top, None, None

    def plane(z):
        r = lax.dynamic_index_in_dim(reach, z, 0, keepdims=False).reshape(-1).astype(jnp.int32)
        v = lax.dynamic_index_in_dim(lev, z, 0, keepdims=False).reshape(-1)
        best = jnp.zeros((n_levels,), lev.dtype).at[r].max(v, mode="drop")
        return lax.cummax(best) > jnp.arange(n_levels, dtype=lev.dtype)

    return top, jnp.max(reach, axis=(1, 2)), lax.map(plane, jnp.arange(lev.shape[0]))


@partial(jax.jit, static_argnames=("wb", "slab", "n_slabs", "opening", "intrude", "thickness"))
def _bucket_counts(lev, reach, stats, lt, idx, t, wb: int, slab: int, n_slabs: int, opening: bool, intrude: bool,
                   thickness: bool):
    """Covered voxel counts of the radii ``idx`` ``(k,)`` (thresholds ``t`` ``(k,)``) of one window ``wb``.

    ``lev``, ``reach``: radius levels and intrusion levels ``(z, y, x)`` (``reach`` None without
    intrusion); the centres of radius ``i`` are ``{lev >= i + 2}``, its intruding centres
    ``{reach >= i + 2}``; ``stats`` = :func:`_plane_stats`. Slab by slab (``fori_loop``; slab
    ``s`` holds the planes ``[min(s slab, nz - slab), +slab)`` and counts those from ``s slab``
    on), for every radius: the dilation of its centres by the open ball ``|k|^2 < t`` (the squared
    distance, exact below ``(wb + 1)^2 >= t``: 1D distance along z read plane by plane from
    ``lev``, then windowed min-plus along x and y plane by plane), and of its intruding centres
    unless they equal the centres within ``wb`` planes of the slab; a radius with no centre
    there costs a test. ``thickness``: ``lt`` ``(z, y, x)`` gets ``i + 1`` where radius ``i``
    covers (radii in increasing order). Returns counts of the openings ``(k,)``, of the
    intrusions ``(k,)`` (int32; zeros for the curve not asked) and ``lt``. Memory beside the
    inputs: two slab-sized uint8 arrays and one plane's work.
    """
    nz, ny, nx = lev.shape
    ldt = lev.dtype
    k = idx.shape[0]
    cap = (wb + 1) ** 2
    dtype = _int_dtype(cap)
    both = opening and intrude
    top_plane, top_r_plane, differ = stats
    zs = jnp.arange(nz)

    def cover(level, tt, z0, j, inside):
        """Coverage of the slab's planes by the balls ``|k|^2 < tt`` centred on ``{src > level}``,
        ``src`` = ``lev`` (``j = 0``) or ``reach`` (``j = 1``; ``j`` may be traced): the count over
        the planes marked ``inside`` (slab,) and, with ``thickness``, the bool ``(slab, ny, nx)``."""

        def site(z):
            zc = jnp.clip(z, 0, nz - 1)
            if isinstance(j, int):
                p = lax.dynamic_index_in_dim(lev if j == 0 else reach, zc, 0, keepdims=False)
            else:
                p = jnp.where(j == 0, lax.dynamic_index_in_dim(lev, zc, 0, keepdims=False),
                              lax.dynamic_index_in_dim(reach, zc, 0, keepdims=False))
            return (p > level) & (z >= 0) & (z < nz)

        def plane(c, xs):
            d, ins = xs
            f = d.astype(dtype)
            f = f * f
            if wb > 0:
                for axis, n in ((1, nx), (0, ny)):  # x first: see _min_plus
                    pad = [(0, 0)] * 2
                    pad[axis] = (wb, wb)
                    f = _min_plus(jnp.pad(f, pad, constant_values=cap), axis, wb, wb, n)
            cov = f < tt.astype(dtype)
            c = c + jnp.where(ins, jnp.sum(cov, dtype=jnp.int32), 0)
            return c, (cov if thickness else None)

        dz = _z_distance(site, z0, slab, wb, (ny, nx))
        return lax.scan(plane, jnp.int32(0), (dz, inside))

    def one_slab(s, carry):
        co, ci, lt = carry
        z0 = _slab_start(s, slab, nz)
        inside = z0 + jnp.arange(slab) >= s * slab
        near = (zs >= z0 - wb) & (zs < z0 + slab + wb)  # the planes within reach of the slab
        top = jnp.max(jnp.where(near, top_plane, 0))
        top_r = jnp.max(jnp.where(near, top_r_plane, 0)) if intrude else None

        def count(level, tt, j):
            return cover(level, tt, z0, j, inside)[0]

        def step(lt_s, xs):
            i, tt = xs
            level = (i + 1).astype(ldt)  # centres of radius i: level >= i + 2
            if thickness:  # opening only
                c, cov = lax.cond(top > level, lambda: cover(level, tt, z0, 0, inside),
                                  lambda: (jnp.int32(0), jnp.zeros((slab, ny, nx), bool)))
                return jnp.where(cov, level, lt_s), (c, jnp.int32(0))
            if not both:
                j, top_s = (0, top) if opening else (1, top_r)
                c = lax.cond(top_s > level, lambda: count(level, tt, j), lambda: jnp.int32(0))
                return lt_s, ((c, jnp.int32(0)) if opening else (jnp.int32(0), c))
            # both curves: one compiled dilation, run for the centres and, unless they are the
            # same within reach of the slab, for the intruding centres
            same = ~jnp.any(near & lax.dynamic_index_in_dim(differ, level.astype(jnp.int32), 1, keepdims=False))
            tops = jnp.stack([top, top_r])

            def job(c_open, j):
                reuse = (j == 1) & same
                c = lax.cond((tops[j] > level) & ~reuse, lambda: count(level, tt, j), lambda: jnp.int32(0))
                c = jnp.where(reuse, c_open, c)
                return c, c

            _, (c_o, c_i) = lax.scan(job, jnp.int32(0), jnp.arange(2))
            return lt_s, (c_o, c_i)

        lt_s = lax.dynamic_slice_in_dim(lt, z0, slab, 0) if thickness else jnp.zeros((), ldt)
        lt_s, (o, c) = lax.scan(step, lt_s, (idx, t))
        if thickness:
            lt = lax.dynamic_update_slice_in_dim(lt, lt_s, z0, 0)
        return co + o, ci + c, lt

    zeros = jnp.zeros((k,), jnp.int32)
    return lax.fori_loop(0, n_slabs, one_slab, (zeros, zeros, lt))


@jax.jit
def _fractions(o, c, n_phase, inv):
    """Counts ``(R,)`` in bucket order -> fractions of the phase ``(R,)`` float32 in radius order."""
    # the barrier keeps XLA from turning the division into a multiplication by 1 / n (not
    # correctly rounded, and not the same with and without vmap)
    denom = lax.optimization_barrier(jnp.broadcast_to(n_phase.astype(jnp.float32), o.shape))
    frac_open = lax.div(o.astype(jnp.float32), denom)
    frac_intr = lax.div(c.astype(jnp.float32), denom)
    return frac_open[inv], frac_intr[inv]


def _curves(mask, radii, axis=0, opening=True, intrude=False, thickness=False, slab_planes=None):
    """Opening / intrusion coverage fractions ``(R,)``, local thickness and percolation for a static radius grid.

    Three kinds of compiled steps, each its own program (so the mask's device copy is gone
    before the intrusion starts, and each compilation stays small): the radius levels
    (:func:`_levels`), the intrusion levels (:func:`_reach`, with ``intrude``) and their per-plane
    summaries (:func:`_plane_stats`), then one call of
    :func:`_bucket_counts` per window of :func:`_buckets`. Returns float32 fractions of the
    openings and of the intrusions ``(R,)`` (zeros for a curve not asked), the local thickness
    [voxels] ``(z, y, x)`` float32 (``thickness``; else a 0-d placeholder) and ``percolates``
    (bool; True without ``intrude``). Traceable under ``jit`` / ``vmap``.
    """
    nz, ny, nx = mask.shape
    thresholds = _thresholds(radii)
    buckets = _buckets(thresholds)
    halo = _window(int(thresholds.max()))  # the levels need dt^2 exact below max t_i only
    slab, n_slabs = _slab_layout(nz, ny * nx, slab_planes)
    lev, n_phase = _levels(mask, _level_table(thresholds, halo), halo=halo, slab=slab, n_slabs=n_slabs)
    reach, perc = _reach(lev, axis, slab_planes) if intrude else (None, jnp.array(True))
    stats = _plane_stats(lev, reach, len(radii) + 2)  # levels 0 .. R + 1
    lt = jnp.zeros(lev.shape, lev.dtype) if thickness else jnp.zeros((), lev.dtype)
    opens, intrs = [], []
    for wb, ix in buckets:
        o, c, lt = _bucket_counts(lev, reach, stats, lt, np.asarray(ix, np.int32), np.asarray(thresholds[list(ix)], np.int32),
                                  wb=wb, slab=slab, n_slabs=n_slabs, opening=opening or thickness, intrude=intrude,
                                  thickness=thickness)
        opens.append(o)
        intrs.append(c)
    del lev, reach
    order = np.concatenate([np.asarray(ix) for _, ix in buckets])  # bucket order -> radius order
    frac_open, frac_intr = _fractions(jnp.concatenate(opens), jnp.concatenate(intrs), n_phase,
                                      np.argsort(order).astype(np.int32))
    if thickness:
        table = jnp.concatenate([jnp.zeros(1, jnp.float32), jnp.asarray(radii, jnp.float32)])
        lt = table[lt]
    return frac_open, frac_intr, lt, perc


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
