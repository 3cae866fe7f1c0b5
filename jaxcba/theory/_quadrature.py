"""Fixed Gauss-Legendre rules (numpy float64 tables, cast to JAX's default float dtype)."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def _legendre_np(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def gauss_legendre(n: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Nodes and weights of the ``n``-point Gauss-Legendre rule on [-1, 1], shape ``(n,)``.

    The dtype is JAX's default float (float64 when ``jax_enable_x64`` is on).
    """
    x, w = _legendre_np(n)
    dtype = jnp.result_type(float)
    return jnp.asarray(x, dtype=dtype), jnp.asarray(w, dtype=dtype)
