"""Distributed slab FFTs inside ``shard_map``: z-slabs, transposed by ``all_to_all``.

A 3-D array sharded along z over ``n`` devices (``(nz / n, ny, m)`` per device) is
transformed along y and x locally; for the transform along z the array is transposed to
x-slabs (``(nz, ny, m / n)`` per device) by one ``all_to_all`` and back by another. The
x-columns are zero-padded to a multiple of ``n`` first (:func:`padded`), so only ``nz`` has
to be divisible by the device count.

The local 1-D and 2-D transforms are XLA's own (``jnp.fft``); on the CPU backend a line's
transform does not depend on how many lines are batched with it, so the distributed
inverse transform of :func:`irfftn_z` is bit-identical to the single-device one of
``jaxcba.model.gaussian_field.excursion_labels`` (checked in ``tests/test_sharded.py``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxcba.model.gaussian_field import _SLAB_ELEMS


def padded(m: int, n: int) -> int:
    """``m`` rounded up to a multiple of ``n``."""
    return -(-m // n) * n


def transpose(x, axis_name: str, split_axis: int, concat_axis: int):
    """``all_to_all``: split ``split_axis`` into ``n`` pieces, one to every device, and
    concatenate the received pieces along ``concat_axis`` (in device order)."""
    return lax.all_to_all(x, axis_name, split_axis, concat_axis, tiled=True)


def pad_axis(x, axis: int, size: int):
    """Zero-pad ``x`` along ``axis`` to ``size``."""
    extra = size - x.shape[axis]
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths)


def irfftn_z(x, nx: int, axis_name: str, n: int, *, column_fn=None, out_fn=None, out_dtype=jnp.float32):
    """Inverse real 3-D DFT of a z-sharded half spectrum; the result is z-sharded.

    Args:
        x: local block ``(nz / n, ny, mp)`` complex64 of the half spectrum
            ``(nz, ny, nx // 2 + 1)``, its columns zero-padded to ``mp = padded(nx // 2 + 1, n)``.
        nx: length of the real x axis.
        column_fn: ``f(block, cols)`` applied to every block of x-columns (all kz, all ky;
            ``cols`` their global indices) before its 2-D transform, e.g. to symmetrise the
            Hermitian planes.
        out_fn: applied to every real z-slab after the last transform (e.g. a threshold);
            ``out_dtype`` is its dtype.
    Returns:
        local block ``(nz / n, ny, nx)`` of ``out_fn(irfftn(x))``.

    Working set per device: two copies of the local spectrum (the ``all_to_all`` buffers)
    plus one slab of at most 2^22 complex values per loop step.
    """
    lz, ny, mp = x.shape
    nz = lz * n
    mx = nx // 2 + 1
    wx = mp // n
    d = lax.axis_index(axis_name)
    x = transpose(x, axis_name, 2, 0)  # (nz, ny, wx): all kz, ky; this device's kx columns

    wc = max(1, min(wx, _SLAB_ELEMS // (nz * ny)))
    n_cols = -(-wx // wc)

    def zy_body(i, x):
        c0 = jnp.minimum(i * wc, wx - wc).astype(jnp.int32)  # last block overlaps its predecessor
        zero = jnp.int32(0)
        orig = lax.dynamic_slice(x, (zero, zero, c0), (nz, ny, wc))
        local = c0 + jnp.arange(wc, dtype=jnp.int32)
        block = orig if column_fn is None else column_fn(orig, d * wx + local)
        done = local < i * wc
        out = jnp.fft.ifft2(block, axes=(0, 1)).astype(jnp.complex64)
        return lax.dynamic_update_slice(x, jnp.where(done[None, None, :], orig, out), (zero, zero, c0))

    x = lax.fori_loop(0, n_cols, zy_body, x)
    x = transpose(x, axis_name, 0, 2)  # (lz, ny, mp): this device's z planes

    zc = max(1, min(lz, _SLAB_ELEMS // (ny * nx)))
    n_slabs = -(-lz // zc)
    out = jnp.zeros((lz, ny, nx), out_dtype)
    f = (lambda z: z) if out_fn is None else out_fn

    def x_body(i, out):
        z0 = jnp.minimum(i * zc, lz - zc).astype(jnp.int32)
        zero = jnp.int32(0)
        slab = lax.dynamic_slice(x, (z0, zero, zero), (zc, ny, mx))
        z = jnp.fft.irfft(slab, n=nx, axis=2).astype(jnp.float32)
        return lax.dynamic_update_slice(out, f(z).astype(out_dtype), (z0, zero, zero))

    return lax.fori_loop(0, n_slabs, x_body, out)
