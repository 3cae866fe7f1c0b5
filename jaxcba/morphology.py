"""Connectivity of voxel sets: which voxels of a mask are reached from seeds (jittable, vmappable).

Shared by the descriptors (intrusion from a face, percolation of geodesic paths) and the
transport solver (percolation, clusters isolated from both electrodes).

Algorithm: geodesic reconstruction by *run propagation*. Along one axis, every maximal run
of mask voxels that contains a reached voxel is reached as a whole; this is computed for
all lines at once with two segmented OR-scans (``lax.associative_scan``, forwards and
backwards; a non-mask voxel ends a segment). Sweeping the three axes in turn until nothing
changes reaches every voxel 6-connected to the seeds; the number of sweeps grows with the
number of turns of the paths, not with their length. ``connectivity=26`` adds a 3x3x3
dilation (restricted to the mask) to each sweep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_FACES = {"first": 0, "last": -1}


def _run_or(a, b):
    """Segmented OR: (reached at the segment's end, segment is all mask) of ``a`` then ``b``."""
    reached_a, open_a = a
    reached_b, open_b = b
    return reached_b | (reached_a & open_b), open_a & open_b


def _propagate_runs(reached: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Reach every run of ``mask`` along ``axis`` that holds a reached voxel."""
    pair = (reached & mask, mask)
    forward, _ = lax.associative_scan(_run_or, pair, axis=axis)
    backward, _ = lax.associative_scan(_run_or, pair, axis=axis, reverse=True)
    return mask & (forward | backward)


def _dilate26(reached: jax.Array, mask: jax.Array) -> jax.Array:
    out = reached
    for axis in range(3):  # separable 3x3x3 dilation = three 1D dilations
        padded = jnp.pad(out, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        n = out.shape[axis]
        out = (
            lax.slice_in_dim(padded, 0, n, axis=axis)
            | lax.slice_in_dim(padded, 1, n + 1, axis=axis)
            | lax.slice_in_dim(padded, 2, n + 2, axis=axis)
        )
    return out & mask


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
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity}")
    mask = jnp.asarray(mask, dtype=bool)
    seeds = jnp.asarray(seeds, dtype=bool)
    if mask.ndim != 3 or seeds.shape != mask.shape:
        raise ValueError(f"mask and seeds must be 3D arrays of equal shape, got {mask.shape} and {seeds.shape}")
    limit = int(mask.size) if max_sweeps is None else int(max_sweeps)

    def sweep(reached):
        if connectivity == 26:
            reached = _dilate26(reached, mask)
        for axis in range(3):
            reached = _propagate_runs(reached, mask, axis)
        return reached

    return sweep_until_stable(sweep, seeds & mask, limit)


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
    if side not in _FACES:
        raise ValueError(f"side must be 'first' or 'last', got {side!r}")
    index = jnp.arange(shape[axis]) == (0 if side == "first" else shape[axis] - 1)
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    return jnp.broadcast_to(index.reshape(bshape), shape)


def reachable_from_face(mask: jax.Array, axis: int = 0, side: str = "first", connectivity: int = 6) -> jax.Array:
    """Voxels of ``mask`` connected to its voxels on one face normal to ``axis`` (0=z, 1=y, 2=x)."""
    mask = jnp.asarray(mask, dtype=bool)
    _check_axis(axis, mask.ndim)
    return reconstruct(mask, face_seeds(mask.shape, axis, side), connectivity)


def percolating_cluster(mask: jax.Array, axis: int = 0, connectivity: int = 6) -> tuple[jax.Array, jax.Array]:
    """Voxels connected to both faces normal to ``axis``, and whether any path crosses.

    Returns:
        ``(cluster, percolates)``: bool ``(z, y, x)`` array of voxels reached from the first
        face that are also reached from the last face, and a bool scalar.
    """
    mask = jnp.asarray(mask, dtype=bool)
    _check_axis(axis, mask.ndim)
    from_first = reachable_from_face(mask, axis, "first", connectivity)
    from_last = reconstruct(from_first, face_seeds(mask.shape, axis, "last"), connectivity)
    return from_last, jnp.any(from_last)


def _check_axis(axis: int, ndim: int) -> None:
    if ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got {ndim} dimensions")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis}")
