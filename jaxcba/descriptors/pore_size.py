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
level ``L = 1 + #{i : dt^2 >= t_i}`` (0 off the phase; uint8), so the centres of radius ``r_i``
are ``{L >= i + 2}``. Intrusion needs one widest-path transform ``W(x) = max over 6-paths from
the face of min L`` (in-place plane sweeps until stable): the intruding centres are
``{W >= i + 2}``, and the phase percolates iff ``W >= 1`` somewhere on the far face. The
volume is then processed in z-slabs (``lax.map``) with a halo of the largest ball: for each
radius, the squared distance to its centres on the slab (1D distance along z by scans, windowed
min-plus along y and x, the window the smallest of ``_WINDOWS`` that holds the ball) is compared
with ``t_i`` and the covered voxels are counted. A radius with no centre in reach of a slab, and
intruding centres equal to all centres there, cost a test only. The opening of every radius is
computed, not read off the local thickness: on the voxel grid the openings are not nested
(a voxel can be covered at ``r`` and not at a smaller grid radius). Memory: the level arrays
(1 byte a voxel each) plus one slab's work; cost per radius ``O(r)`` per voxel of the slabs
that hold its centres.

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


def _int_dtype(cap: int):
    return jnp.int16 if 2 * cap < 32767 else jnp.int32


def _level_dtype(n_levels: int):
    return jnp.uint8 if n_levels <= 255 else jnp.uint16


def _min_plus(f, axis: int, w: int, lo: int, n: int):
    """``min_{|k| <= w} f(x + k e_axis) + k^2`` for the ``n`` positions starting at ``lo`` (needs ``lo >= w``)."""
    out = lax.slice_in_dim(f, lo, lo + n, axis=axis)
    for k in range(1, w + 1):
        a = lax.slice_in_dim(f, lo - k, lo - k + n, axis=axis)
        b = lax.slice_in_dim(f, lo + k, lo + k + n, axis=axis)
        out = jnp.minimum(out, jnp.minimum(a, b) + jnp.asarray(k * k, f.dtype))
    return out


def _slab_dt2(mask, s, slab: int, w: int, cap: int):
    """Squared distance [voxel^2] to the nearest non-phase voxel on planes ``[s slab, (s + 1) slab)``
    of ``mask`` (planes outside it count as phase: the border is not a wall), capped at ``cap``; exact below ``min(cap, (w + 1)^2)`` (and everywhere below ``cap`` when ``w`` spans
    the volume). The 1D distance along z by two scans over the slab and ``w`` planes each
    side, then windowed min-plus passes along y and x (integers). Returns it and the slab's mask."""
    nz, ny, nx = mask.shape
    dtype = _int_dtype(cap)
    z = s * slab - w + jnp.arange(slab + 2 * w)  # the slab and w planes each side
    inside = ((z >= 0) & (z < nz))[:, None, None]
    m = jnp.where(inside, jnp.take(mask, jnp.clip(z, 0, nz - 1), axis=0), True)
    d1 = _scan_distance_1d(~m, w + 1)[w : w + slab].astype(dtype)  # w + 1: no site within w planes
    f = jnp.where(d1 > w, jnp.asarray(cap, dtype), jnp.minimum(d1 * d1, jnp.asarray(cap, dtype)))
    for axis, n in ((1, ny), (2, nx)):
        ww = min(w, n - 1)
        if ww > 0:
            pad = [(0, 0)] * 3
            pad[axis] = (ww, ww)
            f = jnp.minimum(_min_plus(jnp.pad(f, pad, constant_values=cap), axis, ww, ww, n), jnp.asarray(cap, dtype))
    return f, m[w : w + slab]


def _levels(mask, thresholds, halo: int, slab: int, n_slabs: int):
    """Radius level of every voxel, z-padded: ``(n_slabs * slab + 2 halo, y, x)``.

    ``level = 0`` off the phase (and in the padding), else ``1 + #{i : dt^2 >= t_i}``, from the
    exact ``dt^2`` below ``(halo + 1)^2 >= max t_i`` (:func:`_slab_dt2`, slab by slab).
    """
    nz, ny, nx = mask.shape
    w = halo
    cap = (w + 1) ** 2
    ldt = _level_dtype(len(thresholds) + 1)
    table = jnp.asarray(1 + np.searchsorted(thresholds, np.arange(cap + 1), side="right"), ldt)  # level of dt^2

    def one(s):
        f, m = _slab_dt2(mask, s, slab, w, cap)
        lev = jnp.take(table, f.astype(jnp.int32), mode="clip")
        inside = (s * slab + jnp.arange(slab) < nz)[:, None, None]
        return jnp.where(m & inside, lev, jnp.zeros((), ldt))

    def put(s, lev):
        return lax.dynamic_update_slice_in_dim(lev, one(s), w + s * slab, 0)

    return lax.fori_loop(0, n_slabs, put, jnp.zeros((n_slabs * slab + 2 * w, ny, nx), ldt))


@partial(jax.jit, static_argnames=("window", "cap", "slab_planes"))
def _max_dt2(mask, window: int, cap: int, slab_planes=None):
    """Largest ``min(dt^2, cap)`` over the phase [voxel^2] (exact below ``(window + 1)^2``), slab by slab."""
    mask = jnp.asarray(mask, bool)
    nz, ny, nx = mask.shape
    slab, n_slabs = _slab_layout(nz, ny * nx, slab_planes)

    def one(s):
        f, m = _slab_dt2(mask, s, slab, window, cap)
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


def _widest_path(cap, axis: int, face: int, max_sweeps: int = 100_000, z_range: tuple[int, int] | None = None):
    """``w(x) = max over 6-connected paths from the plane ``face`` normal to ``axis`` to x of min cap
    along the path`` (0 if none).

    ``{w >= t}`` is the reconstruction of ``{cap >= t}`` from that face, for every threshold
    ``t`` at once (a bottleneck / widest-path transform): in-place plane-by-plane sweeps forwards
    and backwards along z, then y, then x (on an ``(x, z, y)`` copy, each plane contiguous), until a
    round changes nothing. ``w`` only grows, so a round changed something iff a row sum grew.
    ``z_range``: the planes ``[lo, hi)`` that hold the volume (``cap = 0`` elsewhere).
    """
    lo, hi = (0, cap.shape[0]) if z_range is None else z_range
    cap_x = jnp.transpose(cap, (2, 0, 1))  # (x, z, y)
    w0 = jnp.zeros_like(cap)
    w0 = lax.dynamic_update_index_in_dim(w0, lax.index_in_dim(cap, face, axis, keepdims=False), face, axis)

    def rows(w):
        return jnp.sum(w, axis=2, dtype=jnp.int32)

    def body(state):
        w, sums, _, k = state
        for rev in (False, True):
            w = _line_max_min(w, cap, rev, lo, hi)
        for rev in (False, True):
            w = _line_max_min(w, cap, rev, axis=1)
        wx = jnp.transpose(w, (2, 0, 1))
        for rev in (False, True):
            wx = _line_max_min(wx, cap_x, rev)
        w = jnp.transpose(wx, (1, 2, 0))
        new = rows(w)
        return w, new, jnp.any(new != sums), k + 1

    init = (w0, rows(w0), jnp.array(True), jnp.array(0, jnp.int32))
    return lax.while_loop(lambda s: s[2] & (s[3] < max_sweeps), body, init)[0]


def _covered(sub, level, t, wb: int, slab: int, ny: int, nx: int):
    """Dilation of ``{sub > level}`` by the open ball ``|k|^2 < t`` on the slab's ``slab`` middle planes.

    ``sub``: ``(slab + 2 wb, ny + 2 wb, nx + 2 wb)`` levels (zero outside the volume). The squared
    distance to the set is exact below ``(wb + 1)^2 >= t``: 1D distance along z by scans, then
    windowed min-plus along y and x. Returns bool ``(slab, ny, nx)``."""
    cap = (wb + 1) ** 2
    dtype = _int_dtype(cap)
    dz = _scan_distance_1d(sub > level, wb + 1)[wb : wb + slab].astype(dtype)
    f = dz * dz
    if wb > 0:
        f = jnp.minimum(_min_plus(f, 1, wb, wb, ny), jnp.asarray(cap, dtype))
        f = _min_plus(f, 2, wb, wb, nx)
    else:
        f = f[:, wb : wb + ny, wb : wb + nx]
    return f < t.astype(dtype)


@partial(jax.jit, static_argnames=("radii", "axis", "opening", "intrude", "thickness", "slab_planes"))
def _curves(mask, radii, axis=0, opening=True, intrude=False, thickness=False, slab_planes=None):
    """Opening / intrusion coverage fractions ``(R,)``, local thickness and percolation for a static radius grid.

    Work per z-slab (``lax.map``): the slab's radius levels with a halo of the largest window,
    then for every radius the dilation of its centres (and of its intruding centres) on the
    slab, counted; a radius with no centre in reach of the slab costs a test only.
    """
    mask = jnp.asarray(mask, dtype=bool)
    nz, ny, nx = mask.shape
    thresholds = _thresholds(radii)
    buckets = _buckets(thresholds)
    halo = max(w for w, _ in buckets)
    slab, n_slabs = _slab_layout(nz, ny * nx, slab_planes)
    lev = _levels(mask, thresholds, halo, slab, n_slabs)  # (n_slabs * slab + 2 halo, ny, nx)
    n_phase = jnp.sum(mask, dtype=jnp.int32).astype(jnp.float32)
    if intrude:
        reach = _widest_path(lev[halo : halo + nz], axis, 0)
        perc = jnp.any(lax.index_in_dim(reach, -1, axis, keepdims=False) > 0)  # level >= 1: the phase
        reach = jnp.pad(reach, ((halo, lev.shape[0] - nz - halo), (0, 0), (0, 0)))
    else:
        reach, perc = None, jnp.array(True)
    ldt = lev.dtype
    hw = halo

    def one(s):
        region = lax.dynamic_slice_in_dim(lev, s * slab, slab + 2 * hw, 0)
        region = jnp.pad(region, ((0, 0), (hw, hw), (hw, hw)))
        region_r = None
        if intrude:
            region_r = jnp.pad(lax.dynamic_slice_in_dim(reach, s * slab, slab + 2 * hw, 0), ((0, 0), (hw, hw), (hw, hw)))
        both = jnp.stack([region, region_r]) if (intrude and opening) else None
        inside = (s * slab + jnp.arange(slab) < nz)[:, None, None]
        lt = jnp.zeros((slab, ny, nx), ldt)
        opens, intrs = [], []
        for wb, ix in buckets:
            cut = (slice(hw - wb, hw + slab + wb), slice(hw - wb, hw + ny + wb), slice(hw - wb, hw + nx + wb))
            top = jnp.max(region[cut])
            top_r = jnp.max(region_r[cut]) if intrude else None

            def count(c):
                return jnp.sum(c & inside, dtype=jnp.int32)

            def step(lt, xs, top=top, top_r=top_r, wb=wb, cut=cut):
                i, t = xs
                sub = region[cut]
                sub_r = region_r[cut] if intrude else None
                level = (i + 1).astype(ldt)  # centres of radius i: level >= i + 2
                cover = lambda src: _covered(src, level, t, wb, slab, ny, nx)  # noqa: E731
                if thickness:  # opening only
                    cov = lax.cond(top > level, lambda: cover(sub), lambda: jnp.zeros((slab, ny, nx), bool))
                    return jnp.where(cov, level, lt), (count(cov), jnp.int32(0))
                if not (opening and intrude):
                    src, top_s = (sub, top) if opening else (sub_r, top_r)
                    c = lax.cond(top_s > level, lambda: count(cover(src)), lambda: jnp.int32(0))
                    return lt, ((c, jnp.int32(0)) if opening else (jnp.int32(0), c))
                # both curves: one compiled dilation, run for the centres and, unless they are
                # the same within reach of the slab, for the intruding centres
                same = ~jnp.any((sub > level) & (sub_r <= level))
                tops = jnp.stack([top, top_r])

                def job(c_open, j):
                    reuse = (j == 1) & same
                    src = lambda: lax.dynamic_index_in_dim(both, j, 0, keepdims=False)[cut]  # noqa: E731
                    c = lax.cond((tops[j] > level) & ~reuse, lambda: count(cover(src())), lambda: jnp.int32(0))
                    c = jnp.where(reuse, c_open, c)
                    return c, c

                _, (co, ci) = lax.scan(job, jnp.int32(0), jnp.arange(2))
                return lt, (co, ci)

            xs = (jnp.asarray(ix, jnp.int32), jnp.asarray(thresholds[list(ix)], jnp.int32))
            lt, (o, c) = lax.scan(step, lt, xs)
            opens.append(o)
            intrs.append(c)
        return jnp.concatenate(opens), jnp.concatenate(intrs), (lt if thickness else jnp.zeros((), ldt))

    o, c, lt = lax.map(one, jnp.arange(n_slabs))
    # the barrier keeps XLA from turning the division into a multiplication by 1 / n (not
    # correctly rounded, and not the same with and without vmap)
    denom = lax.optimization_barrier(jnp.broadcast_to(n_phase, (len(radii),)))
    frac_open = lax.div(jnp.sum(o, axis=0).astype(jnp.float32), denom)
    frac_intr = lax.div(jnp.sum(c, axis=0).astype(jnp.float32), denom)
    order = np.concatenate([np.asarray(ix) for _, ix in buckets])  # bucket order -> radius order
    inv = np.argsort(order)
    frac_open, frac_intr = frac_open[inv], frac_intr[inv]
    if thickness:
        table = jnp.concatenate([jnp.zeros(1, jnp.float32), jnp.asarray(radii, jnp.float32)])
        lt = table[lt.reshape((n_slabs * slab, ny, nx))[:nz]]
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
