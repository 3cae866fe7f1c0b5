"""Down-sampling of labelled volumes by an integer factor (paper Section 3.3).

``method="slice"`` (the paper's): keep every ``factor``-th voxel along each axis, i.e. remove
every second slice for ``factor = 2`` (voxels ``0, k, 2k, ...``). ``method="majority"``: the
most frequent label in each ``k^3`` block; ties go to the smallest label (pore < cb <
graphite); trailing voxels that do not fill a block are dropped. Output voxel size is
``factor * voxel_nm``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["downsample"]

_METHODS = ("slice", "majority")


def downsample(labels: jax.Array, factor: int, method: str = "slice") -> jax.Array:
    """Down-sample a ``(..., z, y, x)`` label (or boolean) volume by ``factor`` (2 or 4, any int >= 1).

    Returns an array of the input dtype with spatial shape ``n // factor`` (majority) or
    ``ceil(n / factor)`` (slice). Jittable (``factor``, ``method`` static) and vmappable.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    k = int(factor)
    x = jnp.asarray(labels)
    if x.ndim < 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {x.shape}")
    if method == "slice":
        return x[..., ::k, ::k, ::k]
    nz, ny, nx = (s // k for s in x.shape[-3:])
    if min(nz, ny, nx) == 0:
        raise ValueError(f"factor {k} is larger than an axis of shape {x.shape[-3:]}")
    lead = x.shape[:-3]
    blocks = x[..., : nz * k, : ny * k, : nx * k].reshape(*lead, nz, k, ny, k, nx, k)
    if x.dtype == jnp.bool_:
        count = jnp.sum(blocks, axis=(-5, -3, -1), dtype=jnp.int32)
        return 2 * count > k**3  # tie -> False (the smaller label)
    labels_present = jnp.arange(3, dtype=x.dtype)
    counts = jnp.stack([jnp.sum(blocks == v, axis=(-5, -3, -1), dtype=jnp.int32) for v in labels_present], axis=-1)
    return jnp.argmax(counts, axis=-1).astype(x.dtype)  # argmax picks the first (smallest) label on ties
