"""Aggregation multigrid V-cycle: a symmetric positive definite preconditioner for CG.

Levels are built by merging 2 x 2 x 2 voxels (piecewise-constant prolongation ``P``). The
coarse operator is the Galerkin product ``P^T A P``, which for this operator is again a
voxel stencil: the conductance between two aggregates is the sum of the fine face
conductances crossing between them, and the Dirichlet conductances add up likewise. So the
hierarchy costs one reshape-and-sum per level and works for any conductivity contrast,
holes included. Smoother: damped Jacobi, the same number of sweeps before and after the
coarse correction, which is over-corrected by a factor ``scale`` (1.5 by default: piecewise-constant
aggregation under-estimates the smooth error; measured ~20 % fewer CG iterations; with a
convergent smoother (``omega < 1``) the cycle stays symmetric positive definite for
``0 < scale < 2``, since ``I - scale * Q`` with ``Q`` the A-orthogonal coarse projector has
A-norm <= 1); the coarsest level (<= ``coarse_size`` voxels) is solved exactly with a
dense Cholesky factor. The cycle is a fixed symmetric linear map, as CG requires.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

from jaxcba.transport import stencil as sten


def _pair_sum(a: jax.Array, axes) -> jax.Array:
    """Sum neighbouring voxel pairs ``(2I, 2I+1)`` along each of ``axes`` of a padded array.

    Those axes lose their ghosts (an odd size pairs its last voxel with the zero ghost);
    strided slices keep this a single cheap elementwise kernel on CPU.
    """
    for ax in axes:
        n = a.shape[ax] - 2
        if n == 1:
            a = jax.lax.slice_in_dim(a, 1, 2, axis=ax)
            continue
        m = (n + 1) // 2
        # padded indices 1, 3, ..., 2m - 1 plus 2, 4, ..., 2m (2m = n + 1, the ghost, when n is odd)
        a = jax.lax.slice_in_dim(a, 1, 2 * m, stride=2, axis=ax) + jax.lax.slice_in_dim(a, 2, 2 * m + 1, stride=2, axis=ax)
    return a


def coarse_shape(shape) -> tuple[int, ...]:
    return tuple((n + 1) // 2 for n in shape)


def coarsen(st) -> sten.Stencil:
    """Galerkin coarse stencil ``P^T A P`` for 2 x 2 x 2 aggregates (padded layout).

    ``st``: a :class:`~jaxcba.transport.stencil.Stencil` or ``LabelStencil``; the result is
    always stored (1/8 of the fine size).

    Coarse face ``J`` along ``k`` (between aggregates ``J - 1`` and ``J``) collects the fine
    faces ``2J``; the last coarse face is the last fine face (the outlet plane) also when
    ``n_k`` is odd. Across ``k`` the faces of paired voxels add up.
    """
    g = []
    for k in range(3):
        if isinstance(st, sten.LabelStencil):
            coarse = _coarse_label_faces(passes((st, jnp.int32(k)))[0], k)
        else:
            n = st.shape[k]
            gk = passes((st, jnp.int32(k)))[0].full(k)  # one face array at a time
            # fine faces 0..n sit at padded indices 1..n + 1
            even = jax.lax.slice_in_dim(gk, 1, n + 1, stride=2, axis=k)
            last = jax.lax.slice_in_dim(gk, n + 1, n + 2, axis=k)
            faces = jnp.concatenate([even, last], axis=k)
            coarse = _pair_sum(faces, tuple(a for a in range(3) if a != k))
        widths = [(1, 1)] * 3
        widths[k] = (1, 0)
        g.append(jnp.pad(coarse, widths))
    return sten.Stencil(g=tuple(g))


def _coarse_label_faces(st: sten.LabelStencil, k: int) -> jax.Array:
    """Unpadded coarse faces along ``k`` of a ``LabelStencil`` (as in :func:`coarsen`), looked up
    from strided slices of the codes: one fused loop, no fine face array is stored.

    Ghosts across the other axes (an odd size pairs its last voxel with one) have code 0 or
    the Dirichlet code, whose faces across those axes are 0 in the pair table.
    """
    n = st.shape[k]
    codes = st.codes
    for j in range(3):  # interior (plus the ghost after an odd size) across the other axes
        if j != k:
            m = st.shape[j]
            codes = jax.lax.slice_in_dim(codes, 1, m + 1 + (m % 2) if m > 1 else 2, axis=j)

    def lookup(start, stop, stride):  # fine faces at padded indices start, start + stride, ... < stop
        lo = jax.lax.slice_in_dim(codes, start - 1, stop - 1, stride=stride, axis=k)
        hi = jax.lax.slice_in_dim(codes, start, stop, stride=stride, axis=k)
        g = st._pair(k, lo, hi)
        for j in range(3):
            if j != k and g.shape[j] > 1:
                g = jax.lax.slice_in_dim(g, 0, None, stride=2, axis=j) + jax.lax.slice_in_dim(g, 1, None, stride=2, axis=j)
        return g

    return jnp.concatenate([lookup(1, n + 1, 2), lookup(n + 1, n + 2, 1)], axis=k)


def restrict(r: jax.Array) -> jax.Array:
    """``P^T r`` (padded in, padded out): sum over each aggregate."""
    return restrict_interior(sten.interior(r))


def restrict_interior(x: jax.Array) -> jax.Array:
    """``P^T x`` for an interior ``(n0, n1, n2)`` array (or expression); padded coarse result.

    Strided slices of ``x`` itself (an odd size first gets a zero appended), so that the
    computation of ``x`` fuses into the sum; the coarse interior is stored before padding.
    """
    for ax in range(3):
        n = x.shape[ax]
        if n == 1:
            continue
        if n % 2:
            widths = [(0, 0)] * 3
            widths[ax] = (0, 1)
            x = jnp.pad(x, widths)
            n += 1
        x = jax.lax.slice_in_dim(x, 0, n, stride=2, axis=ax) + jax.lax.slice_in_dim(x, 1, n, stride=2, axis=ax)
    return sten.pad(passes(x))


def prolong(x: jax.Array, shape) -> jax.Array:
    """``P x`` (padded in, padded out): copy each aggregate value to its fine voxels.

    Fine padded index ``i`` takes coarse padded index ``(i + 1) // 2`` (a repeat and a
    shift: no padding, so it fuses into its consumer). Only a fine ghost after an odd size
    would pick up the last aggregate; across axis 0 (the Dirichlet faces) it is masked.
    """
    for ax in range(3):
        n = shape[ax]
        if n == 1:
            x = jax.lax.slice_in_dim(x, 0, 3, axis=ax)
            continue
        x = jax.lax.slice_in_dim(jnp.repeat(x, 2, axis=ax), 1, n + 3, axis=ax)
    if shape[0] % 2:
        idx = jax.lax.broadcasted_iota(jnp.int32, x.shape, 0)
        x = jnp.where(idx < shape[0] + 1, x, 0)
    return x


def _inverse_diagonal(st, dtype=None) -> jax.Array:
    """``1 / diag(A)`` (0 on inactive voxels), padded, stored as ``dtype`` (default: the operator's).

    ``dtype=jnp.uint16`` stores the bfloat16 rounding of float32 values as raw bits (see
    :func:`expand`): half the memory, and XLA:CPU fuses the integer decoding into its users.
    """
    d = sten._stencil_sum(passes((st, jnp.int32(-1)))[0], None)  # interior: padded last, in the stored dtype
    inv = jnp.where(d > 0, 1 / jnp.where(d > 0, d, 1), 0)
    if dtype is not None and jnp.dtype(dtype) == jnp.uint16:
        bits = jax.lax.bitcast_convert_type(inv.astype(jnp.float32), jnp.uint32)
        return sten.pad(((bits + jnp.uint32(0x8000)) >> 16).astype(jnp.uint16))  # round to nearest
    return sten.pad(inv.astype(dtype or d.dtype))


def expand(dinv: jax.Array, dtype) -> jax.Array:
    """A stored inverse diagonal as ``dtype`` (decodes the ``uint16`` bfloat16 bits)."""
    if dinv.dtype == jnp.uint16:
        return jax.lax.bitcast_convert_type(dinv.astype(jnp.uint32) << 16, jnp.float32).astype(dtype)
    return dinv.astype(dtype)


class Level(eqx.Module):
    """One level: its operator and the (possibly compact) inverse diagonal of the smoother."""

    stencil: sten.Stencil | sten.LabelStencil
    inv_diag: jax.Array


class Hierarchy(eqx.Module):
    """Multigrid levels (finest first) and the Cholesky factor of the coarsest operator."""

    levels: tuple[Level, ...]
    coarse_factor: jax.Array
    coarse_active: jax.Array
    sweeps: int = eqx.field(static=True)
    omega: float = eqx.field(static=True)
    scale: float = eqx.field(static=True, default=1.5)


def _dense(st) -> tuple[jax.Array, jax.Array]:
    n = st.shape[0] * st.shape[1] * st.shape[2]
    eye = jnp.eye(n, dtype=st.dtype).reshape((n,) + st.shape)
    a = jax.vmap(lambda e: sten.interior(sten.matvec(st, sten.pad(e))).reshape(-1))(eye)
    active = jnp.diagonal(a) > 0
    # Rows of inactive voxels are zero: make them identity so the factor exists.
    a = a + jnp.diag(jnp.where(active, 0, 1).astype(a.dtype))
    return a, active


def _size(shape) -> int:
    return shape[0] * shape[1] * shape[2]


def build(st, coarse_size: int = 512, sweeps: int = 1, omega: float = 0.8, scale: float = 1.5, diag_dtype=None) -> Hierarchy:
    """Levels down to at most ``coarse_size`` voxels (a static function of the shape).

    ``diag_dtype``: storage dtype of the finest level's inverse diagonal (e.g. bfloat16, a
    relative rounding of 2^-9: the smoother stays a fixed symmetric positive diagonal map).
    """
    levels = [Level(st, _inverse_diagonal(st, diag_dtype))]
    while _size(levels[-1].stencil.shape) > coarse_size:
        coarse = coarsen(levels[-1].stencil)
        levels.append(Level(coarse, _inverse_diagonal(coarse)))
    a, active = _dense(levels[-1].stencil)
    factor, _ = cho_factor(a, lower=True)
    return Hierarchy(tuple(levels), factor, active, sweeps, omega, scale)


def passes(tree):
    """``lax.optimization_barrier``: ``tree``'s arrays are read as they are by what follows.

    The cycle and CG split their work into passes over the volume, each one loop over the
    voxels that looks the face conductances up and computes its intermediates (``D^-1 r``,
    ``P e``, ``A x``) in place. Each pass reads the operator through a barrier together with
    its vectors: XLA then neither merges equal sub-expressions of two passes nor hoists the
    (loop-invariant) face lookups out of the CG loop, either of which would store them as
    volume-sized arrays.
    """
    return jax.lax.optimization_barrier(tree)


def _coarse_solve(h: Hierarchy, r: jax.Array) -> jax.Array:
    ri = sten.interior(r)
    x = cho_solve((h.coarse_factor, True), ri.reshape(-1)).reshape(ri.shape)
    return sten.pad(jnp.where(h.coarse_active.reshape(ri.shape), x, 0))


def coarse_correction(h: Hierarchy, index: int, r: jax.Array) -> jax.Array:
    """Pre-smoothing of level ``index`` and the coarse-grid solve: the correction ``e`` (coarse, padded).

    With one sweep the fine work is one pass: ``P^T (r - A omega D^-1 r)``.
    """
    if index == len(h.levels) - 1:
        return _coarse_solve(h, r)
    level = h.levels[index]
    st, dinv, r = passes((level.stencil, level.inv_diag, r))
    if h.sweeps > 1:
        return _cycle(h, index + 1, _restricted_residual(h, st, dinv, r))
    # One sweep: block by block along axis 0 (XLA stores omega D^-1 r, read at 7 points, per block)
    n0 = r.shape[0] - 2
    nb, t = sten.row_blocks(n0)
    if nb == 1:
        return _cycle(h, index + 1, _restricted_residual(h, st, dinv, r))
    parts = sten.map_row_blocks(lambda blk: sten.interior(_restricted_residual(h, *blk)), (st, dinv, r), n0, 2)
    return _cycle(h, index + 1, sten.pad(parts.reshape((n0 // 2,) + parts.shape[2:])))


def _restricted_residual(h: Hierarchy, st, dinv: jax.Array, r: jax.Array) -> jax.Array:
    """``P^T (r - A x)`` with ``x`` the pre-smoothed ``omega D^-1 r`` (padded in and out; a
    block of rows with its halo, or the whole level)."""
    dinv = expand(dinv, r.dtype)
    x = h.omega * dinv * r
    for _ in range(h.sweeps - 1):
        x = x + h.omega * dinv * (r - sten.matvec(st, x))
    return restrict_interior(sten.interior(r) - sten._stencil_sum(st, x))


def smooth_interior(st, dinv: jax.Array, r: jax.Array, e: jax.Array, omega: float, scale: float, sweeps: int = 1) -> jax.Array:
    """Interior of ``x0 + s P e`` post-smoothed (``x0`` the pre-smoothed ``omega D^-1 r``).

    ``st, dinv, r`` padded on the fine grid (or on a slab of it, with its halo), ``e`` the
    coarse correction on the matching coarse rows. With one sweep this is one pass
    (``x0`` and ``P e`` recomputed at each of the 7 stencil points).
    """
    dinv = expand(dinv, r.dtype)
    x = omega * dinv * r
    for _ in range(sweeps - 1):
        x = x + omega * dinv * (r - sten.matvec(st, x))
    x = x + scale * prolong(e, st.shape)
    for _ in range(sweeps - 1):
        x = x + omega * dinv * (r - sten.matvec(st, x))
    return sten.interior(x) + omega * sten.interior(dinv) * (sten.interior(r) - sten._stencil_sum(st, x))


def smooth(h: Hierarchy, index: int, r: jax.Array, e: jax.Array, *extra) -> jax.Array:
    """Interior of level ``index``'s cycle result given its coarse correction ``e``.

    ``extra`` arrays only make this pass distinct from another one on the same inputs.
    """
    level = h.levels[index]
    st, dinv, r, e, *_ = passes((level.stencil, level.inv_diag, r, e) + extra)
    return smooth_interior(st, dinv, r, e, h.omega, h.scale, h.sweeps)


def _cycle(h: Hierarchy, index: int, r: jax.Array) -> jax.Array:
    if index == len(h.levels) - 1:
        return _coarse_solve(h, r)
    return sten.pad(passes(smooth(h, index, r, coarse_correction(h, index, r))))


def v_cycle(h: Hierarchy, r: jax.Array) -> jax.Array:
    """One V-cycle from a zero guess: ``x ~= A^{-1} r`` (symmetric in ``r``)."""
    return _cycle(h, 0, r)
