"""Exact Euclidean distance transforms in JAX (jittable, vmappable).

Squared distances are computed by three separable *windowed min-plus* passes (one per axis):

    f_{a}(x) = min_{|k| <= W} f_{a-1}(x + k e_a) + k^2,    f_0 = 0 on the sites, +inf elsewhere,

each pass one fused XLA kernel over ``2W + 1`` shifted slices. The result is the exact squared
distance ``D(x) = min_{s in sites} |x - s|^2`` wherever ``D(x) <= W^2`` (the minimising site then
has every coordinate offset ``<= W``, so it is inside every window), and is ``> W^2`` elsewhere
(each pass only restricts the set of candidate sites). With ``W >= max(shape) - 1`` the transform
is exact everywhere. Cost ``3 (2W + 1)`` additions and minima per voxel, memory a few copies of
the volume. Distances are in voxels between voxel centres, as in
``scipy.ndimage.distance_transform_edt`` (the window border is not a site).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["squared_distance_to", "edt", "edt_squared"]


def _min_plus_pass(f: jax.Array, axis: int, window: int, cap=None) -> jax.Array:
    """``min_{|k| <= window} f(x + k e_axis) + k^2`` along one axis; outside the array ``+inf``
    (``cap=None``, float ``f``), or ``cap`` with the result clamped to ``cap`` (integer ``f``)."""
    n = f.shape[axis]
    w = min(int(window), n - 1)
    if w <= 0:
        return f
    pad = [(0, 0)] * f.ndim
    pad[axis] = (w, w)
    fill = jnp.inf if cap is None else jnp.asarray(cap, f.dtype)
    fp = jnp.pad(f, pad, constant_values=fill)
    out = lax.slice_in_dim(fp, w, w + n, axis=axis)  # centre from the padded copy: one fused kernel per pass
    for k in range(1, w + 1):
        lo = lax.slice_in_dim(fp, w - k, w - k + n, axis=axis)
        hi = lax.slice_in_dim(fp, w + k, w + k + n, axis=axis)
        out = jnp.minimum(out, jnp.minimum(lo, hi) + jnp.asarray(k * k, f.dtype))
    return out if cap is None else jnp.minimum(out, fill)


@partial(jax.jit, static_argnames=("window",))
def squared_distance_to(sites: jax.Array, window: int | None = None) -> jax.Array:
    """Squared Euclidean distance [voxel^2] from every voxel centre to the nearest ``True`` voxel.

    Args:
        sites: bool ``(z, y, x)``.
        window: static; exact wherever the distance is ``<= window`` voxels, ``> window^2``
            elsewhere (``+inf`` where no site is within reach). Default ``max(shape) - 1``
            (exact everywhere).

    Returns:
        float32 ``(z, y, x)``; 0 on the sites.
    """
    sites = jnp.asarray(sites, dtype=bool)
    if sites.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got shape {sites.shape}")
    w = max(sites.shape) - 1 if window is None else int(window)
    f = jnp.where(sites, jnp.float32(0), jnp.float32(jnp.inf))
    for axis in (2, 1, 0):  # x (the minor axis) first: the passes commute, and XLA:CPU runs it ~2x faster
        f = _min_plus_pass(f, axis, w)
    return f


def edt_squared(mask: jax.Array, window: int | None = None) -> jax.Array:
    """Squared distance [voxel^2] from each ``mask`` voxel to the nearest non-mask voxel (0 off the mask).

    Same convention as ``scipy.ndimage.distance_transform_edt(mask) ** 2``; ``+inf`` (or, with a
    ``window``, any value ``> window^2``) where no background voxel is within reach.
    """
    mask = jnp.asarray(mask, dtype=bool)
    return squared_distance_to(~mask, window)


def edt(mask: jax.Array, window: int | None = None) -> jax.Array:
    """Euclidean distance transform [voxels] of ``mask``: ``sqrt`` of :func:`edt_squared`."""
    return jnp.sqrt(edt_squared(mask, window))


def _scan_distance_1d(sites: jax.Array, cap: int, dtype=None) -> jax.Array:
    """Distance along axis 0 to the nearest site of the same line, capped at ``cap`` (two ``lax.scan``).

    ``dtype`` default: uint8 for ``cap < 255``, else int16. The backward scan takes the minimum
    with the forward one as it goes, so only one volume-sized result is kept.
    """
    dtype = (jnp.uint8 if cap < 255 else jnp.int16) if dtype is None else dtype
    capv = jnp.asarray(cap, dtype)

    def step(c, s):
        c = jnp.where(s, jnp.zeros_like(c), jnp.minimum(c + 1, capv))
        return c, c

    init = jnp.full(sites.shape[1:], cap, dtype)
    _, fwd = lax.scan(step, init, sites)

    def step_back(c, xs):
        s, f = xs
        c = jnp.where(s, jnp.zeros_like(c), jnp.minimum(c + 1, capv))
        return c, jnp.minimum(c, f)

    _, d = lax.scan(step_back, init, (sites, fwd), reverse=True)
    return d


def capped_squared_distance(sites: jax.Array, window: int) -> jax.Array:
    """``min(D(x), (window + 1)^2)`` with ``D`` the exact squared distance [voxel^2] to the nearest site.

    Integer arithmetic (int16 for ``window <= 100``, else int32), which XLA vectorises twice as
    wide as float32: the first pass is an exact 1D distance by two scans, the other two are
    windowed min-plus passes, every value clamped at the cap. Exact (same argument as the module
    docstring: below the cap every minimising offset lies in the window). ``window`` static.
    """
    w = int(window)
    cap = (w + 1) ** 2
    dtype = jnp.int16 if w <= 100 else jnp.int32
    capv = jnp.asarray(cap, dtype)
    d1 = _scan_distance_1d(jnp.asarray(sites, bool), w + 1, dtype)
    f = jnp.minimum(d1 * d1, capv)
    for axis in (1, 2):
        n = f.shape[axis]
        ww = min(w, n - 1)
        if ww <= 0:
            continue
        pad = [(0, 0)] * 3
        pad[axis] = (ww, ww)
        fp = jnp.pad(f, pad, constant_values=cap)
        out = lax.slice_in_dim(fp, ww, ww + n, axis=axis)
        for k in range(1, ww + 1):
            lo = lax.slice_in_dim(fp, ww - k, ww - k + n, axis=axis)
            hi = lax.slice_in_dim(fp, ww + k, ww + k + n, axis=axis)
            out = jnp.minimum(out, jnp.minimum(lo, hi) + jnp.asarray(k * k, dtype))
        f = jnp.minimum(out, capv)
    return f


def within_distance(sites: jax.Array, r, window: int) -> jax.Array:
    """``|x - s| < r`` for some site ``s``: dilation by the open ball of radius ``r`` [voxels].

    ``window`` (static) must be ``>= ceil(r) - 1``; ``r`` may be traced. Exact.
    """
    return capped_squared_distance(sites, window).astype(jnp.float32) < r * r
