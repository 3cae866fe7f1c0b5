"""The single-device multigrid V-cycle (``jaxcba.transport.multigrid``) on a z-sharded operator.

Run inside ``jax.shard_map`` over a 1-D mesh (axis ``ax``, ``n`` devices); every array here is
one device's slab in the padded layout of ``jaxcba.transport.stencil``,
``(lz + 2, ny + 2, nx + 2)``, where the two ghost z-planes of a *vector* hold the border
planes of the neighbouring slabs (the halo; zero at the two ends of the mesh, where the
single-device ghosts are zero) and the face array ``g[0]`` holds the faces to the neighbours
at padded indices ``1`` and ``lz + 1`` (the Dirichlet faces on the first and last device).

Why the cycle is the single-device one, voxel for voxel:

* **Smoother.** The single-device smoother is damped Jacobi, pointwise, so a slab smooths
  its planes alone once its vector ghosts hold the neighbours' planes (no ordering issue,
  as a Gauss-Seidel sweep would have). One sweep before and after the coarse correction
  (``sweeps = 1``, the single-device default): ``x0 = omega D^-1 r`` in a ghost plane is
  the neighbour's ``x0`` there, since ``r`` and ``D^-1`` carry halos.
* **Aggregation.** The single-device levels merge voxel pairs ``(2I, 2I + 1)`` along z.
  While a slab has an even number of planes, no pair straddles two slabs: restriction,
  prolongation and the Galerkin coarse operator (``multigrid.coarsen``) are local, and the
  coarse slab of device ``d`` is exactly rows ``[d lz / 2, (d + 1) lz / 2)`` of the
  single-device coarse level.
* **Coarse levels.** At the first level ``K`` whose slabs have an odd number of planes
  (``lz = 1`` included), or at the coarsest level, the slabs are gathered
  (``all_gather``): the level-``K`` operator once when the hierarchy is built, the
  restricted residual once per cycle. Every device then runs the single-device cycle from
  level ``K`` down (``multigrid.build`` of the gathered operator: the same levels and the
  same Cholesky factor of the coarsest one) and keeps its own rows of the correction,
  halo planes included (the correction is replicated, so they need no exchange).

So the preconditioner is the single-device ``M^-1`` up to float rounding and CG takes the
single-device number of iterations for any device count. Communication per cycle: two
``ppermute`` of one plane for the residual and two for the correction at each sharded
level, one ``all_gather`` of level ``K``'s residual (``1 / 8^K`` of the volume).

With ``nz / n`` odd the gather happens at the finest level (``K = 0``): still the
single-device result, but every device then holds the whole fine residual once per cycle.
Slabs of ``nz / n = 2^k m`` planes (``m`` odd) keep ``k`` levels local.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from jaxcba.transport import multigrid as mg
from jaxcba.transport import stencil as sten

#: Single-device hierarchy settings (``multigrid.build``'s defaults, as ``cg.make_problem`` uses).
COARSE_SIZE, OMEGA, SCALE = 512, 0.8, 1.5


def halos(x, ax: str, n: int):
    """``(prev, next)``: the last plane of the previous shard and the first of the next one
    (zeros at the two ends of the mesh); ``x`` is a ``(lz, ...)`` slab."""
    if n == 1:
        z = jnp.zeros_like(x[:1])
        return z, z
    prev = lax.ppermute(x[-1:], ax, perm=[(d, d + 1) for d in range(n - 1)])
    nxt = lax.ppermute(x[:1], ax, perm=[(d + 1, d) for d in range(n - 1)])
    return prev, nxt


def padded(u, ax: str, n: int):
    """Interior slab ``(lz, ny, nx)`` -> padded ``(lz + 2, ny + 2, nx + 2)``, z-ghosts = halos."""
    prev, nxt = halos(u, ax, n)
    ext = jnp.concatenate([prev, u, nxt], axis=0)
    return jnp.zeros((ext.shape[0], ext.shape[1] + 2, ext.shape[2] + 2), u.dtype).at[:, 1:-1, 1:-1].set(ext)


def fill_halo(a, ax: str, n: int):
    """A padded slab with its two ghost z-planes set to the neighbours' border planes."""
    prev, nxt = halos(a[1:-1], ax, n)
    return a.at[:1].set(prev).at[-1:].set(nxt)


def local_stencil(s, ax: str, n: int, factor: float) -> sten.Stencil:
    """The slab's part of ``sten.from_conductivity`` of the whole field.

    ``s``: the slab's conductivities ``(lz, ny, nx)``; ``g[0]`` at padded indices ``1`` and
    ``lz + 1`` are the faces to the neighbouring slabs (harmonic means across the border),
    the Dirichlet faces ``factor * s`` on the first and last device.
    """
    d = lax.axis_index(ax)
    sp = padded(s, ax, n)
    g = sten.harmonic_faces(sp)
    for k in (1, 2):  # faces across y / x in the halo planes belong to the neighbours (0, as on one device)
        g[k] = g[k].at[0].set(0).at[-1].set(0)
    lz = s.shape[0]
    g[0] = g[0].at[1].set(jnp.where(d == 0, factor * sp[1], g[0][1]))
    g[0] = g[0].at[lz + 1].set(jnp.where(d == n - 1, factor * sp[lz], g[0][lz + 1]))
    return sten.Stencil(g=tuple(g))


def level_shapes(shape, coarse_size: int = COARSE_SIZE) -> list[tuple[int, int, int]]:
    """Global shapes of the single-device levels (``multigrid.build``), finest first."""
    shapes = [tuple(shape)]
    while mg._size(shapes[-1]) > coarse_size:
        shapes.append(mg.coarse_shape(shapes[-1]))
    return shapes


def gather_level(shape, n: int, coarse_size: int = COARSE_SIZE) -> int:
    """``K``: the first level gathered onto every device (the coarsest, or the first whose
    slabs have an odd number of z-planes). Levels ``0 .. K - 1`` are cycled slab by slab."""
    shapes = level_shapes(shape, coarse_size)
    for k, s in enumerate(shapes):
        if k == len(shapes) - 1 or (s[0] // n) % 2:
            return k
    raise AssertionError("unreachable")


class ShardedHierarchy(eqx.Module):
    """The slab levels ``0 .. K - 1`` (operator and inverse diagonal with halos) and the
    replicated single-device hierarchy from level ``K`` on."""

    levels: tuple[mg.Level, ...]
    tail: mg.Hierarchy
    tail_planes: int = eqx.field(static=True)  # z-planes per slab at level K
    axis: str = eqx.field(static=True)
    n: int = eqx.field(static=True)


def _gather_stencil(st: sten.Stencil, ax: str) -> sten.Stencil:
    """The whole level from its slabs (padded layout of one device)."""
    lz = st.shape[0]
    g0 = st.g[0]
    inner = lax.all_gather(g0[1:lz + 1], ax, axis=0, tiled=True)
    outlet = lax.all_gather(g0[lz + 1:lz + 2], ax, axis=0, tiled=True)[-1:]
    g = [jnp.concatenate([jnp.zeros_like(outlet), inner, outlet], axis=0)]
    for k in (1, 2):
        body = lax.all_gather(st.g[k][1:lz + 1], ax, axis=0, tiled=True)
        z = jnp.zeros_like(body[:1])
        g.append(jnp.concatenate([z, body, z], axis=0))
    return sten.Stencil(g=tuple(g))


def build(st: sten.Stencil, shape, ax: str, n: int, coarse_size: int = COARSE_SIZE, omega: float = OMEGA,
          scale: float = SCALE) -> ShardedHierarchy:
    """The hierarchy of the slab operator ``st`` (:func:`local_stencil`) of a global ``shape``."""
    k_gather = gather_level(shape, n, coarse_size)
    levels = []
    for _ in range(k_gather):
        levels.append(mg.Level(st, fill_halo(mg._inverse_diagonal(st), ax, n)))
        st = mg.coarsen(st)
    tail = mg.build(_gather_stencil(st, ax), coarse_size, 1, omega, scale)
    return ShardedHierarchy(tuple(levels), tail, st.shape[0], ax, n)


def _tail(h: ShardedHierarchy, r):
    """Level ``K``: gather the residual, the single-device cycle on every device, own rows
    (with the halo planes) of the padded correction."""
    lz = h.tail_planes
    whole = sten.pad(lax.all_gather(sten.interior(r), h.axis, axis=0, tiled=True))
    e = mg.v_cycle(h.tail, whole)
    return lax.dynamic_slice_in_dim(e, lax.axis_index(h.axis) * lz, lz + 2, axis=0)


def _cycle(h: ShardedHierarchy, index: int, r):
    """Padded correction of level ``index`` (ghost planes: the neighbours' values) for the
    padded residual ``r`` whose ghost planes hold the neighbours' residual."""
    if index == len(h.levels):
        return _tail(h, r)
    lv = h.levels[index]
    rc = mg._restricted_residual(h.tail, lv.stencil, lv.inv_diag, r)
    if index + 1 < len(h.levels):
        rc = fill_halo(rc, h.axis, h.n)
    e = _cycle(h, index + 1, rc)
    z = sten.pad(mg.smooth_interior(lv.stencil, lv.inv_diag, r, e, h.tail.omega, h.tail.scale, 1))
    return z if index == 0 else fill_halo(z, h.axis, h.n)


def v_cycle(h: ShardedHierarchy, r):
    """``z = M^-1 r`` for the interior residual slab ``r`` ``(lz, ny, nx)``: the single-device
    V-cycle (``multigrid.v_cycle``) of the whole residual, this device's rows."""
    return sten.interior(_cycle(h, 0, padded(r, h.axis, h.n)))
