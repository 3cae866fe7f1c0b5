"""Intrinsic volumes of one oblate spheroid (paper Eqs. 14-16 without the expectation).

A spheroid is given by two half-axes ``a, c`` (same length unit); its third half-axis is
``max(a, c)``, so it is oblate with equatorial radius ``R = max(a, c)``, polar half-axis
``min(a, c)`` and aspect ratio ``delta = min(a, c) / max(a, c)`` in ``[0, 1]``. With
``e = sqrt(1 - delta**2)``:

* volume (Eq. 14)                    ``V = 4/3 pi delta R^3``
* surface area (Eq. 15)              ``S = 2 pi R^2 (1 + delta^2 artanh(e) / e)``
* integral of mean curvature (16)    ``K = 2 pi R (delta + arccos(delta) / e)``

(Eq. 15 uses ``ln((1 - e) / delta) = -artanh(e)``, Eq. 16 ``arcsin(e) = arccos(delta)``.)
A ball of radius ``r`` gives ``4/3 pi r^3``, ``4 pi r^2`` and ``K = 4 pi r`` (mean
curvature ``(k1 + k2) / 2``).

Numerics: ``artanh(e)/e`` and ``arcsin(e)/e`` are power series in ``x = 1 - delta^2``
(used for ``x < 0.1``, 20 terms, error < 1e-20), the closed forms elsewhere behind
gradient-safe double ``where``; the ``delta -> 0`` end is written without
cancellation (``artanh(e) = ln((1 + e) / delta)``). Values and gradients are finite for
``0 <= delta <= 1`` including both ends. At ``a == c`` exactly the functions of
``(a, c)`` have a kink (the roles of equatorial and polar axis swap); JAX's min/max
split the gradient equally there, which equals the central finite difference, i.e.
the average of the two one-sided derivatives.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

_SERIES_X = 0.1  # use the series for x = 1 - delta^2 below this
_N_TERMS = 20

# artanh(sqrt(x))/sqrt(x) = sum x^n / (2n+1);  arcsin(sqrt(x))/sqrt(x) = sum binom(2n,n)/4^n x^n/(2n+1)
_ATANH_COEF = np.array([1.0 / (2 * n + 1) for n in range(_N_TERMS)])
_ASIN_COEF = np.array([math.comb(2 * n, n) / 4.0**n / (2 * n + 1) for n in range(_N_TERMS)])


def _horner(coef: np.ndarray, x):
    out = jnp.zeros_like(x) + coef[-1]
    for c in coef[-2::-1]:
        out = out * x + c
    return out


def shape_factors(delta):
    """Dimensionless factors ``(f_S, f_K)`` with ``S = 2 pi R^2 f_S``, ``K = 2 pi R f_K``.

    ``delta`` in ``[0, 1]`` (any shape); ``f_S = 1 + delta^2 artanh(e)/e`` and
    ``f_K = delta + arccos(delta)/e`` with ``e = sqrt(1 - delta^2)``; both equal 2 at
    ``delta = 1`` and 1, pi/2 at ``delta = 0``.
    """
    delta = jnp.asarray(delta, dtype=jnp.result_type(delta, float))
    x = (1.0 - delta) * (1.0 + delta)
    use_series = x < _SERIES_X
    # series branch (x small: near a ball)
    xs = jnp.where(use_series, x, 0.0)
    g_series = _horner(_ATANH_COEF, xs)
    h_series = _horner(_ASIN_COEF, xs)
    # closed-form branch, with safe arguments where the series is used
    xc = jnp.where(use_series, 1.0, x)
    e = jnp.sqrt(xc)
    dpos = delta > 0
    dc = jnp.where(use_series | ~dpos, 1.0, delta)
    d2g_closed = jnp.where(dpos, delta * delta * (jnp.log1p(e) - jnp.log(dc)) / e, 0.0)
    h_closed = jnp.arccos(jnp.where(use_series, 0.0, delta)) / e
    f_s = 1.0 + jnp.where(use_series, delta * delta * g_series, d2g_closed)
    f_k = delta + jnp.where(use_series, h_series, h_closed)
    return f_s, f_k


def _axes(a, c):
    a = jnp.asarray(a, dtype=jnp.result_type(a, float))
    c = jnp.asarray(c, dtype=jnp.result_type(c, float))
    r_max = jnp.maximum(a, c)
    r_min = jnp.minimum(a, c)
    pos = r_max > 0
    delta = jnp.where(pos, r_min / jnp.where(pos, r_max, 1.0), 1.0)
    return r_min, r_max, delta


def spheroid_volume(a, c):
    """Volume ``4/3 pi min(a,c) max(a,c)^2`` of the spheroid with half-axes a, c (Eq. 14).

    ``a, c``: half-axes (broadcasting arrays, any length unit L). Returns ``[L^3]``.
    """
    r_min, r_max, _ = _axes(a, c)
    return (4.0 * math.pi / 3.0) * r_min * r_max * r_max


def spheroid_surface(a, c):
    """Surface area of the oblate spheroid with half-axes a, c (Eq. 15), ``[L^2]``."""
    _, r_max, delta = _axes(a, c)
    f_s, _ = shape_factors(delta)
    return 2.0 * math.pi * r_max * r_max * f_s


def spheroid_mean_curvature(a, c):
    """Integral of mean curvature of the spheroid with half-axes a, c (Eq. 16), ``[L]``.

    Normalised so that a ball of radius r gives ``4 pi r``.
    """
    _, r_max, delta = _axes(a, c)
    _, f_k = shape_factors(delta)
    return 2.0 * math.pi * r_max * f_k


def spheroid_functionals(a, c):
    """``(V, S, K)`` of the spheroid with half-axes a, c in one pass (Eqs. 14-16)."""
    r_min, r_max, delta = _axes(a, c)
    f_s, f_k = shape_factors(delta)
    two_pi = 2.0 * math.pi
    return (
        (2.0 * two_pi / 3.0) * r_min * r_max * r_max,
        two_pi * r_max * r_max * f_s,
        two_pi * r_max * f_k,
    )


__all__ = [
    "spheroid_volume",
    "spheroid_surface",
    "spheroid_mean_curvature",
    "spheroid_functionals",
    "shape_factors",
]
