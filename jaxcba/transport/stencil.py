"""The finite-volume conduction operator on a voxel grid (matrix-free, 7-point stencil).

Steady conduction ``div(sigma grad u) = 0`` with ``u = 1`` on the inlet plane before the
first layer along axis 0, ``u = 0`` on the outlet plane after the last layer, no flux
through the four other faces. Unknowns are the voxel-centre potentials. Two neighbouring
voxels ``i, j`` exchange the current ``g_ij (u_i - u_j)`` with the harmonic-mean face
conductance ``g_ij = 2 s_i s_j / (s_i + s_j)`` (voxel side = 1, so ``g`` is in the units of
``sigma``). A boundary voxel of conductivity ``s`` is coupled to its Dirichlet plane by

* ``boundary="half_voxel"``: conductance ``2 s`` (the plane is half a voxel away; distance
  between the planes ``n0``) -- TauFactor's ``Solver`` convention;
* ``boundary="ghost_voxel"``: conductance ``s`` (the Dirichlet value sits at the centre of
  a ghost voxel copying the boundary layer; distance ``n0 + 1``) -- TauFactor's
  ``MultiPhaseSolver`` convention.

Layout: every volume-sized array is stored *padded* by one ghost voxel on each side,
``(n0 + 2, n1 + 2, n2 + 2)``; vectors are zero on the ghosts (the homogeneous Dirichlet /
no-flux values), so the stencil needs only slices (no padding in the inner loop, which XLA
compiles to a much slower kernel). ``g[k][i]`` is the conductance of the face between padded
voxels ``i - 1`` and ``i`` along axis ``k``; ``g[0][1]`` and ``g[0][n0 + 1]`` are the
Dirichlet faces. The operator ``A`` (``A u = b``) is symmetric positive definite on every set
of voxels connected to a Dirichlet plane and has zero rows on voxels of zero conductivity.

Two operators share every function here through ``faces(k, start, stop)``:

* :class:`Stencil` stores the three float face arrays (any conductivity field; differentiable);
* :class:`LabelStencil` stores one ``uint8`` class code per voxel (0 = insulating) and a
  table of the class conductivities; each face conductance is looked up from the codes of
  its two voxels when it is used (selects only, so XLA fuses it into the consumer): 1 byte
  per voxel instead of 12.

Everything here is jittable and vmappable.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

BOUNDARIES = {"half_voxel": 2.0, "ghost_voxel": 1.0}
_IN = slice(1, -1)


def harmonic_mean2(a: jax.Array, b: jax.Array) -> jax.Array:
    """``2ab / (a + b)``, 0 where ``a + b <= 1e-18``, with finite gradients everywhere.

    The cut keeps ``(a + b)^2`` in the gradient above float32's underflow (soft fields reach
    ``1e-19``); below it the conductance is < 1e-18 and set to 0 (gradient 0).
    """
    s = a + b
    ok = s > 1e-18
    safe = jnp.where(ok, s, 1)
    return jnp.where(ok, 2 * a * b / safe, 0)


def sum_by_axis(a: jax.Array) -> jax.Array:
    """Sum of all elements, one axis at a time, the last first.

    A jitted XLA:CPU reduction of a fused input may add the elements into one running float32
    sum, whose rounding grows like ``eps sqrt(N)`` (1e-5 relative at 64^3 for sums of positive
    terms); axis by axis, each stage adds at most ``max(shape)`` terms. The barriers keep XLA
    from merging the stages back into one reduction.
    """
    for _ in range(a.ndim):
        a = lax.optimization_barrier(jnp.sum(a, axis=-1))
    return a


def pad(a: jax.Array) -> jax.Array:
    """Interior ``(n0, n1, n2)`` -> padded layout with zero ghosts.

    Written as an update of a zero array (a loop over the interior only): XLA:CPU compiles a
    ``pad`` fused with the computation of ``a`` into a much slower, per-element checked loop.
    """
    out = jnp.zeros(tuple(n + 2 for n in a.shape), a.dtype)
    return out.at[_IN, _IN, _IN].set(a)


def interior(a: jax.Array) -> jax.Array:
    """Padded layout -> interior ``(n0, n1, n2)``."""
    return a[_IN, _IN, _IN]


def _face(k: int, start: int | None, stop: int | None) -> tuple[slice, slice, slice]:
    """Index selecting ``start:stop`` along axis ``k`` and the interior along the others."""
    out = [_IN, _IN, _IN]
    out[k] = slice(start, stop)
    return tuple(out)


class Stencil(eqx.Module):
    """Stored face conductances of the operator, padded layout (see the module docstring)."""

    g: tuple[jax.Array, jax.Array, jax.Array]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Interior shape ``(n0, n1, n2)``."""
        return tuple(n - 2 for n in self.g[0].shape)

    @property
    def dtype(self):
        return self.g[0].dtype

    def faces(self, k: int, start: int | None, stop: int | None) -> jax.Array:
        """``g[k][start:stop]`` along ``k``, interior along the other two axes."""
        return self.g[k][_face(k, start, stop)]

    def full(self, k: int) -> jax.Array:
        """``g[k]`` over the whole padded grid (zeros on faces touching a ghost across ``k``)."""
        return self.g[k]


class LabelStencil(eqx.Module):
    """The operator of a class-code volume: face conductances looked up on the fly.

    Attributes:
        codes: ``uint8`` ``(n0 + 2, n1 + 2, n2 + 2)`` padded class codes: 0 = insulating,
            ``1 .. K - 1`` the conducting classes, and ``K`` (:attr:`dirichlet`) on the two
            ghost planes across axis 0, so that the Dirichlet faces are table entries too
            (the other ghosts are 0).
        sigma: ``(K,)`` conductivity of each class, ``sigma[0] = 0``.
        pairs: ``(3, (K + 1)^2)`` face conductance of every ordered pair of codes across each
            axis (:func:`pair_tables`; the boundary convention's Dirichlet factor is in it),
            looked up by one gather per face.
    """

    codes: jax.Array
    sigma: jax.Array
    pairs: jax.Array

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(n - 2 for n in self.codes.shape)

    @property
    def dtype(self):
        return self.sigma.dtype

    @property
    def dirichlet(self) -> int:
        return self.sigma.shape[0]

    def _pair(self, k: int, lo: jax.Array, hi: jax.Array) -> jax.Array:
        """Face conductance between codes ``lo`` and ``hi``: one gather from ``pairs[k]`` (fused
        into the consumer; with two classes 2.6x faster than a chain of selects)."""
        idx = lo.astype(jnp.int32) * (self.dirichlet + 1) + hi.astype(jnp.int32)
        return jnp.take(self.pairs[k], idx, mode="clip")

    def faces(self, k: int, start: int | None, stop: int | None) -> jax.Array:
        n = self.codes.shape[k]
        start = 0 if start is None else (start if start >= 0 else n + start)
        stop = n if stop is None else (stop if stop >= 0 else n + stop)
        if start < 1:
            raise ValueError("faces start at padded index 1")
        lo = self.codes[_face(k, start - 1, stop - 1)]
        hi = self.codes[_face(k, start, stop)]
        return self._pair(k, lo, hi)

    def full(self, k: int) -> jax.Array:
        n = self.codes.shape[k]
        lo = lax.slice_in_dim(self.codes, 0, n - 1, axis=k)
        hi = lax.slice_in_dim(self.codes, 1, n, axis=k)
        g = self._pair(k, lo, hi)
        # faces touching a ghost across the other axes are 0
        for j in range(3):
            if j != k:
                m = g.shape[j]
                idx = lax.broadcasted_iota(jnp.int32, g.shape, j)
                g = jnp.where((idx > 0) & (idx < m - 1), g, 0)
        widths = [(0, 0)] * 3
        widths[k] = (1, 0)
        return jnp.pad(g, widths)


def harmonic_faces(sp: jax.Array) -> list[jax.Array]:
    """The three face arrays of a padded conductivity field ``sp`` ``(m0, m1, m2)``: ``g[k]`` at
    index ``i`` along ``k`` (``i >= 1``) is the harmonic mean of ``sp`` at ``i - 1`` and ``i``
    along ``k``, and 0 at ``i = 0``; each of shape ``sp.shape``."""
    g = []
    for k in range(3):
        n = sp.shape[k]
        lo = lax.slice_in_dim(sp, 0, n - 1, axis=k)
        hi = lax.slice_in_dim(sp, 1, n, axis=k)
        widths = [(0, 0)] * 3
        widths[k] = (1, 0)
        g.append(jnp.pad(harmonic_mean2(lo, hi), widths))
    return g


def from_conductivity(sigma: jax.Array, boundary: str = "half_voxel") -> Stencil:
    """Stencil of an interior conductivity field ``sigma`` ``(n0, n1, n2)`` (>= 0); differentiable."""
    factor = BOUNDARIES[boundary]
    sp = pad(sigma)
    g = harmonic_faces(sp)
    n0 = sigma.shape[0]
    g[0] = g[0].at[1].set(factor * sp[1]).at[n0 + 1].set(factor * sp[n0])
    return Stencil(g=tuple(g))


def pair_tables(table: jax.Array, factor: float) -> jax.Array:
    """``(3, (K + 1)^2)`` face conductances of code pairs ``(lo, hi)`` at ``lo (K + 1) + hi``.

    ``table``: ``(K,)`` class conductivities, ``table[0] = 0``; code ``K`` is the Dirichlet
    ghost. Two conducting classes meet with the harmonic mean, a class and the ghost (across
    axis 0 only) with ``factor * sigma``; a pair with an insulating voxel is 0.
    """
    n = table.shape[0]
    s = jnp.concatenate([table, jnp.zeros((1,), table.dtype)])  # the ghost code conducts nothing itself
    inner = harmonic_mean2(s[:, None], s[None, :])
    code = jnp.arange(n + 1)
    conducting = (code > 0) & (code < n)
    ghost_lo = (code[:, None] == n) & conducting[None, :]
    ghost_hi = conducting[:, None] & (code[None, :] == n)
    across0 = jnp.where(ghost_lo, factor * s[None, :], jnp.where(ghost_hi, factor * s[:, None], inner))
    return jnp.stack([across0, inner, inner]).reshape(3, -1)


def from_codes(codes: jax.Array, sigma, boundary: str = "half_voxel", dtype=jnp.float32) -> LabelStencil:
    """:class:`LabelStencil` of interior class codes ``(n0, n1, n2)`` (0 = insulating).

    ``sigma``: conductivity of classes ``1 .. K - 1`` (``K - 1`` values > 0, K <= 254).
    """
    table = jnp.concatenate([jnp.zeros((1,), dtype), jnp.asarray(sigma, dtype).reshape(-1)])
    d = table.shape[0]
    cp = pad(jnp.asarray(codes, jnp.uint8))
    ghost = jnp.full(cp.shape[1:], 0, jnp.uint8).at[_IN, _IN].set(d)
    cp = cp.at[0].set(ghost).at[-1].set(ghost)
    return LabelStencil(codes=cp, sigma=table, pairs=pair_tables(table, BOUNDARIES[boundary]))


def _stencil_sum(st, up: jax.Array | None) -> jax.Array:
    """Interior of ``A u`` (or of ``diag(A)`` when ``up`` is None)."""
    c = None if up is None else up[_IN, _IN, _IN]
    out = 0
    for k in range(3):
        g_next = st.faces(k, 2, None)
        g_prev = st.faces(k, 1, -1)
        if up is None:
            out = out + g_next + g_prev
        else:
            out = out + g_next * (c - up[_face(k, 2, None)]) + g_prev * (c - up[_face(k, None, -2)])
    return out


def matvec(st, up: jax.Array) -> jax.Array:
    """``A u`` for padded ``u`` (zero ghosts): net current leaving each voxel; padded result."""
    return pad(_stencil_sum(st, up))


def diagonal(st) -> jax.Array:
    """Diagonal of ``A`` (sum of the conductances around each voxel), padded."""
    return pad(_stencil_sum(st, None))


def inlet(st) -> jax.Array:
    """``(n1, n2)`` conductances of the inlet faces: the right-hand side ``b`` on layer 1."""
    return st.faces(0, 1, 2)[0]


def rhs(st) -> jax.Array:
    """Right-hand side ``b`` (padded): the inlet plane held at ``u = 1``."""
    n0, n1, n2 = st.shape
    return jnp.zeros((n0 + 2, n1 + 2, n2 + 2), st.dtype).at[1, _IN, _IN].set(inlet(st))


def _with_inlet(up: jax.Array) -> jax.Array:
    """Potentials with the inlet ghost layer at its Dirichlet value 1."""
    return up.at[0].set(1)


def row_blocks(n0: int, blocks: int = 8) -> tuple[int, int]:
    """``(B, t)``: ``n0`` interior rows cut into ``B`` blocks of ``t`` rows, ``B`` the largest of
    ``blocks, 4, 2`` with ``n0 % 2B == 0`` (so ``t`` is even and blocks meet 2 x 2 x 2
    aggregates), else ``(1, n0)``."""
    nb = next((b for b in (blocks, 4, 2) if b > 1 and n0 % (2 * b) == 0), 1)
    return nb, n0 // nb


def cut_rows(tree, start: int, size: int, rows: int):
    """Rows ``[start, start + size)`` along axis 0 of every 3D leaf of ``tree`` with ``rows`` rows
    (other leaves as they are): a block of padded arrays, stencils included."""
    return jax.tree.map(lambda a: lax.slice_in_dim(a, start, start + size, axis=0) if (a.ndim == 3 and a.shape[0] == rows) else a, tree)


def map_row_blocks(fun, tree, n0: int, halo: int, blocks: int = 8) -> jax.Array:
    """``fun`` on each block of :func:`row_blocks` in a loop (``lax.map``), results stacked ``(B, ...)``.

    Block ``b`` holds padded rows ``[b t, b t + t + halo)`` of every 3D leaf of ``tree`` with
    ``n0 + 2`` rows. A loop, not ``B`` static slices: XLA schedules static blocks side by side,
    keeping every block's temporaries alive at once.
    """
    nb, t = row_blocks(n0, blocks)
    return lax.map(lambda b: fun(row_block(tree, b, t, halo, n0)), jnp.arange(nb))


def row_block(tree, b: jax.Array, t: int, halo: int, n0: int):
    """Padded rows ``[b t, b t + t + halo)`` (``b`` traced) of every 3D leaf of ``tree`` with
    ``n0 + 2`` rows (other leaves as they are)."""
    cut = lambda a: lax.dynamic_slice_in_dim(a, b * t, t + halo, axis=0) if (a.ndim == 3 and a.shape[0] == n0 + 2) else a  # noqa: E731
    return jax.tree.map(cut, tree)


def layer_currents(st, up: jax.Array) -> jax.Array:
    """Total current through each of the ``n0 + 1`` planes normal to axis 0, inlet first.

    Plane ``j`` lies between padded rows ``j`` and ``j + 1``. The planes are summed in blocks
    (:func:`row_blocks`, then the last plane): XLA:CPU stores a reduction's input, here
    ``1 / B`` of the volume.
    """
    n0 = up.shape[0] - 2

    def currents(block):
        sb, ub = block
        drop = ub[:-1, _IN, _IN] - ub[1:, _IN, _IN]
        return jnp.sum(sb.faces(0, 1, None) * drop, axis=(1, 2))

    planes = map_row_blocks(currents, (st, up), n0, 1).reshape(-1)  # planes 0 .. n0 - 1
    last = currents(cut_rows((st, up), n0, 2, n0 + 2))
    return jnp.concatenate([planes.at[0].set(inlet_current(st, up)), last])


def inlet_current(st, up: jax.Array) -> jax.Array:
    """Current through the inlet plane, its ghost at ``u = 1``: ``g (1 - u)`` voxel by voxel
    (summing ``g`` and ``g u`` apart would cancel in float32)."""
    return jnp.sum(inlet(st) * (1 - up[1, _IN, _IN]))


def dissipation(st, up: jax.Array) -> jax.Array:
    """``sum_faces g (du)^2`` including the Dirichlet faces = total current for a unit drop.

    Stationary in ``u`` at the solution, so its gradient in the conductances needs no
    adjoint solve (paper Eq. 27's sigma_eff is this quadratic form times length / area).
    Faces touching a ghost across the other two axes have ``g = 0`` and are left out.
    Summed block by block along axis 0 (:func:`row_blocks`; XLA:CPU stores a reduction's
    input, here ``1 / B`` of the volume per axis instead of three whole-volume arrays), the
    inlet and outlet planes apart (the inlet ghost at ``u = 1``).
    """
    n0 = up.shape[0] - 2
    nb, t = row_blocks(n0)

    def block(b):
        # padded rows [b t, b t + t + 2): interior rows b t + 1 .. b t + t and their two neighbours
        sb, ub = row_block((st, up), b, t, 2, n0)
        d0 = ub[1:-1, _IN, _IN] - ub[:-2, _IN, _IN]  # faces b t + 1 .. b t + t across axis 0
        first = (lax.broadcasted_iota(jnp.int32, (t, 1, 1), 0) + b * t) == 0  # the inlet face: apart
        total = jnp.sum(jnp.where(first, 0, sb.faces(0, 1, -1) * jnp.square(d0)))
        for k in (1, 2):
            d = ub[_face(k, 1, None)] - ub[_face(k, None, -1)]
            total = total + jnp.sum(sb.faces(k, 1, None) * jnp.square(d))
        return total

    inner = jnp.sum(lax.map(block, jnp.arange(nb)))
    inlet_term = jnp.sum(st.faces(0, 1, 2)[0] * jnp.square(1 - up[1, _IN, _IN]))
    outlet_term = jnp.sum(st.faces(0, n0 + 1, n0 + 2)[0] * jnp.square(up[n0, _IN, _IN]))
    return inner + inlet_term + outlet_term


def guess_start(st, guess: str, boundary: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(r, D, J_0)`` of the initial guess ``u0`` without ``u0``: its residual ``b - A u0``
    (padded), dissipation and inlet current, from face conductances alone.

    ``guess="zero"``: ``u0 = 0``, so ``r = b`` and ``D = J_0 = sum(b)``. ``guess="linear"``:
    the straight-channel profile on the conducting voxels, whose drop across an axis-0 face
    between two of them is ``h = 1 / L`` (``w = 1 / 2`` of it across a Dirichlet face with
    ``"half_voxel"``) and 0 across the other faces; so ``r = h (w_prev g_prev - w_next g_next)``
    (current in minus current out), ``D = h^2 sum g w^2`` and ``J_0 = h w sum(b)``. Sums of
    conductances only: no float32 differences of nearly equal potentials, whose rounding
    (relative ``eps L``) the tracked dissipation of a solve without ``u`` would carry.
    """
    n0 = st.shape[0]
    g_in = sum_by_axis(inlet(st))
    if guess == "zero":
        return rhs(st), g_in, g_in
    h = 1.0 / (n0 if boundary == "half_voxel" else n0 + 1)
    w_end = 0.5 if boundary == "half_voxel" else 1.0
    row = lax.broadcasted_iota(jnp.int32, (n0, 1, 1), 0)
    w_prev = jnp.where(row == 0, w_end, 1.0).astype(st.dtype)
    w_next = jnp.where(row == n0 - 1, w_end, 1.0).astype(st.dtype)
    r = pad(h * (w_prev * st.faces(0, 1, -1) - w_next * st.faces(0, 2, None)))
    nb, t = row_blocks(n0)

    def block(k):  # the inner axis-0 faces of padded rows [k t, k t + t + 2), the inlet face apart
        sb = row_block(st, k, t, 2, n0)
        first = (lax.broadcasted_iota(jnp.int32, (t, 1, 1), 0) + k * t) == 0
        return sum_by_axis(jnp.where(first, 0, sb.faces(0, 1, -1)))

    g_inner = jnp.sum(lax.map(block, jnp.arange(nb)))
    g_out = sum_by_axis(st.faces(0, n0 + 1, n0 + 2)[0])
    d = h * h * (g_inner + w_end * w_end * (g_in + g_out))
    return r, d, h * w_end * g_in
