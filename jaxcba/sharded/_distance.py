"""Exact Euclidean distance transform of a z-sharded volume (a distributed separable EDT).

The squared distance is three separable windowed min-plus passes, one per axis (as in
:mod:`jaxcba.descriptors.distance`):

    f_a(x) = min_{|k| <= W} f_{a-1}(x + k e_a) + k^2,   f_0 = 0 on the sites, +inf elsewhere.

On a volume split along z into ``n`` slabs ``(nz / n, ny, nx)``, the passes along x and y are
local to each device. For the pass along z, one ``all_to_all`` transposes the partial result to
y-slabs (each device then holds whole z-columns, ``(nz, ny_p / n, nx)``; the y-rows are padded
to a multiple ``ny_p`` of ``n`` first, so only ``nz`` has to be divisible), the z pass runs
locally, and a second ``all_to_all`` brings the squared distances back to z-slabs. No halo: any
slab thickness ``>= 1`` plane works.

The passes commute: whatever their order, the result is ``min`` over the sites ``s`` whose every
coordinate offset is ``<= W`` of ``|x - s|^2``, and every partial sum is an integer below
``2^24`` (for sides up to 2364 voxels), exact in float32. So the distributed transform equals
:func:`jaxcba.descriptors.distance.edt_squared` of the gathered volume bit for bit (the single
device runs the passes z, y, x; here x, y, z). Cost per device: ``3 (2W + 1)`` additions and
minima per voxel of its slab, two transposes of the float32 array (each moving ``(n - 1) / n``
of it), memory a few copies of the slab.

A capped integer variant (``cap=``, int16 or int32, each pass clamped at ``cap``) gives
``min(D, cap)`` exactly when ``cap <= (W + 1)^2``; the sharded CPSD uses it with the window of
its largest ball (:mod:`jaxcba.sharded._descriptors`).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxcba._checks import check_int
from jaxcba.descriptors.distance import _min_plus_pass
from jaxcba.descriptors.pore_size import _int_dtype
from jaxcba.sharded import _mesh as M
from jaxcba.sharded._fft import pad_axis, padded, transpose


def local_squared_distance(sites, axis_name: str, n: int, window: int, cap=None):
    """Inside ``shard_map``: squared distance [voxel^2] to the nearest site, on this device's slab.

    Args:
        sites: local block ``(nz / n, ny, nx)`` bool of a z-sharded site mask.
        window: the min-plus window ``W`` [voxels] (static).
        cap: ``None`` (float32, ``+inf`` where no site is within reach) or an int (int16 / int32
            result ``min(D, cap)``, exact when ``cap <= (W + 1)^2`` or ``W`` spans the volume).
    Returns:
        local block ``(nz / n, ny, nx)``.
    """
    lz, ny, nx = sites.shape
    if cap is None:
        f = jnp.where(sites, jnp.float32(0), jnp.float32(jnp.inf))
    else:
        dtype = _int_dtype(int(cap))
        f = jnp.where(sites, jnp.zeros((), dtype), jnp.asarray(cap, dtype))
    f = _min_plus_pass(f, 2, window, cap)
    f = _min_plus_pass(f, 1, window, cap)
    if n == 1:
        return _min_plus_pass(f, 0, window, cap)
    f = transpose(pad_axis(f, 1, padded(ny, n)), axis_name, 1, 0)  # (nz, ny_p / n, nx): whole z-columns
    f = _min_plus_pass(f, 0, window, cap)
    return transpose(f, axis_name, 0, 1)[:, :ny]  # back to z-slabs


@partial(jax.jit, static_argnames=("window", "cap", "mesh"))
def _distance_program(sites, window: int, cap, mesh):
    ax = M.axis_of(mesh)
    local = partial(local_squared_distance, axis_name=ax, n=M.size_of(mesh), window=window, cap=cap)
    return jax.shard_map(local, mesh=mesh, in_specs=P(ax), out_specs=P(ax), check_vma=False)(sites)


@partial(jax.jit, static_argnames=("window", "cap", "mesh"))
def _max_distance_program(mask, window: int, cap: int, mesh):
    """Largest ``min(D, cap)`` over ``mask`` (``D`` to the nearest voxel off it), replicated."""
    ax = M.axis_of(mesh)
    n = M.size_of(mesh)

    def local(m):
        d = local_squared_distance(~m, ax, n, window, cap)
        return jax.lax.pmax(jnp.max(jnp.where(m, d, jnp.zeros((), d.dtype))).astype(jnp.int32), ax)

    return jax.shard_map(local, mesh=mesh, in_specs=P(ax), out_specs=P(), check_vma=False)(mask)


def _prepare(x, window, mesh, what: str):
    """(``x`` as a z-sharded bool array, the window): the shape, the window and the split are
    checked before the volume is moved."""
    from jaxcba.sharded._descriptors import _sharded

    if getattr(x, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got shape {getattr(x, 'shape', None)}")
    limit = max(int(s) for s in x.shape) - 1
    w = limit if window is None else check_int(window, "window", lo=0)
    x = _sharded(x, mesh, 0, what)
    return (x if x.dtype == jnp.bool_ else x.astype(bool)), w


def squared_distance_to(sites, window: int | None = None, *, mesh=None) -> jax.Array:
    """:func:`jaxcba.descriptors.squared_distance_to` of a z-sharded site mask, z-sharded.

    Squared Euclidean distance [voxel^2] from every voxel centre to the nearest ``True`` voxel
    (float32; exact wherever it is ``<= window^2``, ``+inf`` where no site is within reach;
    default ``window = max(shape) - 1``, exact everywhere). Equal to the single-device
    transform bit for bit. ``ValueError`` (before any work) when the device count does not
    divide ``nz``.
    """
    sites, w = _prepare(sites, window, mesh, "the sites")
    return _distance_program(sites, w, None, M.mesh_of(sites))


def edt_squared(mask, window: int | None = None, *, mesh=None) -> jax.Array:
    """:func:`jaxcba.descriptors.edt_squared` of a z-sharded mask (z-sharded float32 [voxel^2]):
    squared distance from each ``mask`` voxel to the nearest voxel off the mask (0 off it), by
    the distributed separable EDT (two ``all_to_all``); bit-identical to the single device."""
    mask, w = _prepare(mask, window, mesh, "the mask")
    return _distance_program(~mask, w, None, M.mesh_of(mask))


def edt(mask, window: int | None = None, *, mesh=None) -> jax.Array:
    """Euclidean distance transform [voxels] of a z-sharded mask: ``sqrt`` of :func:`edt_squared`."""
    return jnp.sqrt(edt_squared(mask, window, mesh=mesh))


def largest_distance(mask, *, mesh=None) -> float:
    """Largest distance [voxels] from a voxel of ``mask`` to the nearest voxel off it (host float).

    As the single device's default radius grid finds it: windows 16, 32, ... until the capped
    maximum is below its cap (each a windowed distributed EDT in integers); ``max(shape) - 1``
    when the mask fills the volume. ``mask`` must hold a ``True`` voxel (not checked here).
    """
    mask, _ = _prepare(mask, None, mesh, "the mask")
    mesh = M.mesh_of(mask)
    limit = max(mask.shape) - 1
    w = min(16, limit)
    while True:
        cap = (w + 1) ** 2 if w < limit else 3 * limit * limit + 1
        d2 = int(np.asarray(_max_distance_program(mask, w, cap, mesh)))
        if d2 < cap:
            return math.sqrt(d2)
        if w >= limit:
            return float(limit)
        w = min(2 * w, limit)
