"""Connectivity of voxel sets: which voxels of a mask are reached from seeds (jittable, vmappable).

Shared by the descriptors (intrusion from a face, percolation of geodesic paths) and the
transport solver (percolation, clusters isolated from both electrodes).

Algorithm: geodesic reconstruction by in-place *slice sweeps* on one uint8 state array
(0 off the mask, 1 on the mask, 2 reached). A sweep along axis ``a`` visits the slices normal to
``a`` in order (``lax.fori_loop``) and reaches every mask voxel of a slice that is reached
itself or has a reached neighbour in the slice just swept before it (the voxel behind it for
``connectivity=6``; the 3x3 voxels behind it, i.e. the 9 lattice directions with a nonzero
component along ``a``, for ``connectivity=26``), forwards and then backwards; so one sweep reaches
whole runs along ``a`` and follows paths that advance monotonically along ``a``. A round
sweeps axes 0, 1 and 2 (the last one on transposed blocks of axis-0 slices, so that the slices
are contiguous); rounds repeat until nothing is reached any more. Their number grows with the
number of turns of the paths, not with their length. Memory: the state (1 byte/voxel), updated
in place, plus one slice or block.

:func:`sweep_slices` and :func:`sweep_round` are the engine, generic over the relaxation of a
slice from its predecessor; the geodesic distance transform uses them with (min, +step length).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_FACES = {"first": 0, "last": -1}

#: Voxels per block of the sweeps along the last axis (a transposed block, not the volume, is copied).
_BLOCK = 1 << 22

_WALL, _OPEN, _REACHED = 0, 1, 2


def sweep_slices(x, relax, fill, changed, axis: int, reverse: bool):
    """One in-place sweep of ``x`` along ``axis``: ``x[i] <- relax(x[i], x[i -+ 1])``, in slice order.

    Args:
        x: array ``(n0, n1, n2)``.
        relax: ``(v, prev) -> out`` on slices of the other two axes (in their order): the new
            slice from the current one and the one swept just before it (``fill`` before the
            first); it must never undo a change of its own kind (a monotone update).
        fill: scalar, the predecessor of the first slice.
        changed: bool scalar, or-ed with "some voxel changed".
        axis, reverse: static; the sweep runs from index 0 up (``reverse=False``) or from the end down.

    Returns:
        ``(x, changed)``. The next slice is read after the current one is written, so that the
        loop holds no second copy of ``x``.
    """
    n = x.shape[axis]

    def index(k):
        return n - 1 - k if reverse else k

    def body(k, state):
        x, prev, v, changed = state
        out = relax(v, prev)
        changed = changed | jnp.any(out != v)
        x = lax.dynamic_update_index_in_dim(x, out, index(k), axis)
        v = lax.dynamic_index_in_dim(x, index(jnp.minimum(k + 1, n - 1)), axis, keepdims=False)
        return x, out, v, changed

    v0 = lax.index_in_dim(x, index(0), axis, keepdims=False)
    state = (x, jnp.full(v0.shape, fill, x.dtype), v0, changed)
    x, _, _, changed = lax.fori_loop(0, n, body, state)
    return x, changed


def _sweep_last(x, relax, fill, changed):
    """Sweeps along axis 2, both senses, block by block of axis-0 slices.

    A block ``(k, n1, n2)`` is transposed to ``(n2, k, n1)`` and swept along its axis 0, so that
    the slices are contiguous; ``relax`` then sees slices ``(k, n1)``. Relaxations that would cross
    a block boundary along axis 0 are left to the sweeps along axis 0 (every edge with a nonzero
    axis-0 component is relaxed there)."""
    n0, n1, n2 = x.shape
    k = max(1, min(n0, _BLOCK // max(n1 * n2, 1)))

    def body(b, state):
        x, changed = state
        start = jnp.minimum(b * k, n0 - k)  # the last block overlaps the one before: relaxing twice is harmless
        blk = jnp.transpose(lax.dynamic_slice_in_dim(x, start, k, axis=0), (2, 0, 1))
        for reverse in (False, True):
            blk, changed = sweep_slices(blk, relax, fill, changed, 0, reverse)
        return lax.dynamic_update_slice_in_dim(x, jnp.transpose(blk, (1, 2, 0)), start, axis=0), changed

    return lax.fori_loop(0, -(-n0 // k), body, (x, changed))


def sweep_round(x, relax, fill):
    """Sweeps of ``x`` along axes 0, 1 and 2, each forwards then backwards; returns ``(x, changed)``.

    ``relax`` as in :func:`sweep_slices`; it must treat both axes of a slice alike (the slices of
    the three sweeps have different axes)."""
    changed = jnp.array(False)
    for axis in (0, 1):
        for reverse in (False, True):
            x, changed = sweep_slices(x, relax, fill, changed, axis, reverse)
    return _sweep_last(x, relax, fill, changed)


def _shift(c, s: int, ax: int, fill):
    """``out[..., j, ...] = c[..., j - s, ...]`` along axis ``ax`` of a slice, ``fill`` shifted in."""
    n = c.shape[ax]
    pad = [(0, 0)] * c.ndim
    pad[ax] = (1, 0) if s > 0 else (0, 1)
    c = jnp.pad(c, pad, constant_values=fill)
    return lax.slice_in_dim(c, 0, n, axis=ax) if s > 0 else lax.slice_in_dim(c, 1, n + 1, axis=ax)


def _behind(prev, connectivity: int, combine):
    """What a voxel sees of the slice behind it: ``prev`` itself (6), or its 3x3 filter by
    ``combine`` (26: the 9 directions with a component along the sweep)."""
    if connectivity == 26:
        for ax in (0, 1):
            prev = combine(prev, combine(_shift(prev, 1, ax, _WALL), _shift(prev, -1, ax, _WALL)))
    return prev


def _check_connectivity(connectivity: int) -> None:
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity}")


def _reach_relax(connectivity: int):
    def relax(v, prev):
        return jnp.where(v == _OPEN, jnp.maximum(v, _behind(prev, connectivity, jnp.maximum)), v)

    return relax


def reconstruct(mask: jax.Array, seeds: jax.Array, connectivity: int = 6, max_sweeps: int | None = None) -> jax.Array:
    """Voxels of ``mask`` connected to ``seeds & mask`` (geodesic reconstruction).

    Args:
        mask: bool array ``(z, y, x)``.
        seeds: bool array of the same shape.
        connectivity: 6 (face neighbours) or 26 (face, edge and corner neighbours).
        max_sweeps: safety bound on the number of rounds (default: the number of voxels,
            which can never be reached since each round adds at least one voxel).

    Returns:
        bool array ``(z, y, x)``.
    """
    _check_connectivity(connectivity)
    mask = jnp.asarray(mask, dtype=bool)
    seeds = jnp.asarray(seeds, dtype=bool)
    if mask.ndim != 3 or seeds.shape != mask.shape:
        raise ValueError(f"mask and seeds must be 3D arrays of equal shape, got {mask.shape} and {seeds.shape}")
    limit = int(mask.size) if max_sweeps is None else int(max_sweeps)
    state = jnp.where(seeds & mask, jnp.uint8(_REACHED), mask.astype(jnp.uint8))
    relax = _reach_relax(connectivity)

    return rounds_until_stable(state, relax, _WALL, limit) == _REACHED


def rounds_until_stable(x0, relax, fill, max_rounds: int):
    """Apply :func:`sweep_round` to ``x0`` until a round changes nothing or ``max_rounds`` ran
    (``lax.while_loop``; the change is detected inside the sweeps, no second copy is kept)."""

    def cond(carry):
        _, changed, i = carry
        return changed & (i < max_rounds)

    def body(carry):
        x, _, i = carry
        x, changed = sweep_round(x, relax, fill)
        return x, changed, i + 1

    x, _, _ = lax.while_loop(cond, body, (x0, jnp.array(True), jnp.array(0, jnp.int32)))
    return x


def sweep_until_stable(sweep, x0, max_sweeps: int):
    """Apply ``sweep`` until its output stops changing or ``max_sweeps`` sweeps ran (``lax.while_loop``).

    ``sweep`` maps an array to one of the same shape and dtype (a monotone propagation step).
    """

    def cond(state):
        _, changed, i = state
        return changed & (i < max_sweeps)

    def body(state):
        x, _, i = state
        new = sweep(x)
        return new, jnp.any(new != x), i + 1

    x, _, _ = lax.while_loop(cond, body, (x0, jnp.array(True), jnp.array(0, jnp.int32)))
    return x


def face_seeds(shape: tuple[int, ...], axis: int, side: str) -> jax.Array:
    """Bool array that is True on the ``side`` ('first' or 'last') face normal to ``axis``."""
    return jnp.broadcast_to(_face_planes(shape, axis, side), shape)


def _face_planes(shape: tuple[int, ...], axis: int, side: str) -> jax.Array:
    """:func:`face_seeds` before the broadcast: bool, ``shape[axis]`` along ``axis`` and 1 elsewhere."""
    if side not in _FACES:
        raise ValueError(f"side must be 'first' or 'last', got {side!r}")
    index = jnp.arange(shape[axis]) == (0 if side == "first" else shape[axis] - 1)
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    return index.reshape(bshape)


def reachable_from_face(mask: jax.Array, axis: int = 0, side: str = "first", connectivity: int = 6) -> jax.Array:
    """Voxels of ``mask`` connected to its voxels on one face normal to ``axis`` (0=z, 1=y, 2=x)."""
    mask = jnp.asarray(mask, dtype=bool)
    _check_axis(axis, mask.ndim)
    return reconstruct(mask, face_seeds(mask.shape, axis, side), connectivity)


#: Bits of the state of :func:`percolating_cluster`: on the mask, reached from the first face, from the last.
_ON, _FROM_FIRST, _FROM_LAST = 1, 2, 4


def _both_faces_relax(connectivity: int):
    def relax(v, prev):
        bits = _behind(prev, connectivity, jnp.bitwise_or) & jnp.uint8(_FROM_FIRST | _FROM_LAST)
        return jnp.where(v != _WALL, v | bits, v)

    return relax


def percolating_cluster(mask: jax.Array, axis: int = 0, connectivity: int = 6) -> tuple[jax.Array, jax.Array]:
    """Voxels connected to both faces normal to ``axis``, and whether any path crosses.

    One reconstruction carries both fronts as two bits of the state (reached from the first
    face, from the last), so the rounds of the two run together. A voxel is connected to both
    faces exactly when its connected component touches both: the same set as reconstructing
    from the last face inside the part reached from the first.

    Returns:
        ``(cluster, percolates)``: bool ``(z, y, x)`` array of the voxels reached from both
        faces, and a bool scalar.
    """
    mask = jnp.asarray(mask, dtype=bool)
    _check_axis(axis, mask.ndim)
    _check_connectivity(connectivity)
    # the seed bits per plane, broadcast against the mask: no volume-sized seed arrays
    face = (jnp.where(_face_planes(mask.shape, axis, "first"), _FROM_FIRST, 0)
            | jnp.where(_face_planes(mask.shape, axis, "last"), _FROM_LAST, 0) | _ON).astype(jnp.uint8)
    state = jnp.where(mask, face, jnp.uint8(_WALL))
    state = rounds_until_stable(state, _both_faces_relax(connectivity), _WALL, int(mask.size))
    cluster = state == (_ON | _FROM_FIRST | _FROM_LAST)
    return cluster, jnp.any(cluster)


def _check_axis(axis: int, ndim: int) -> None:
    if ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got {ndim} dimensions")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis}")
