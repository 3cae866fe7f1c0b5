"""Common random numbers for stage 3: one fixed pool of pore-ball candidates per realization key.

The large-pore balls of Ξ3 are carved out of a fixed realization of Ξ1 ∪ Ξ2 (one
``jaxcba.simulate`` call per key with a negligible ``lambda_Y``). The candidates are a
unit-rate Poisson process on ``W_M x [0, inf)`` (``W_M`` the window dilated by a margin of
``M`` voxels): uniform centres with arrival times ``T_1 < T_2 < ...`` (cumulative Exp(1))
and unit-rate radii ``E_i ~ Exp(1)``. For ``(lambda_Y, theta)`` the balls are the
candidates with ``T_i < lambda_Y |W_M|`` and radii ``E_i / theta`` — exactly the Boolean
model of Eq. 3 in the window — so between two trial ``theta`` the same balls only grow or
shrink and a few join or leave: the CPSD objective varies almost smoothly in ``theta``.

The margin is fixed for all trial ``theta`` (``M = e_max / theta_min``, ``P(E > e_max) = 1e-6``),
so a ball centred outside ``W_M`` that would reach the window is missed with probability
<= ~1e-6 per candidate.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

E_MAX = -math.log(1e-6)


@dataclasses.dataclass(frozen=True)
class BallPool:
    """Candidates in voxel coordinates: ``centres`` (n, 3), ``e`` (n,) Exp(1), ``t`` (n,) increasing."""

    centres: np.ndarray
    e: np.ndarray
    t: np.ndarray
    margin: float
    volume: float  # |W_M| [voxel^3]


def draw_pool(key, window, theta_min_vox: float, lam_max_vox: float) -> BallPool:
    """Enough candidates for every ``lambda_Y <= lam_max_vox`` and ``theta >= theta_min_vox`` (voxel units)."""
    margin = E_MAX / theta_min_vox
    dims = np.asarray(window, float) + 2 * margin
    volume = float(np.prod(dims))
    mean = lam_max_vox * volume
    n = int(mean + 8 * math.sqrt(mean) + 16)
    k1, k2, k3 = jax.random.split(key, 3)
    u = np.asarray(jax.random.uniform(k1, (n, 3), dtype=np.float32), dtype=float)
    e = np.asarray(jax.random.exponential(k2, (n,), dtype=np.float32), dtype=float)
    t = np.cumsum(np.asarray(jax.random.exponential(k3, (n,), dtype=np.float32), dtype=float))
    return BallPool(centres=u * dims - margin, e=e, t=t, margin=margin, volume=volume)


def ball_mask(pool: BallPool, window, lam_vox: float, theta_vox: float) -> np.ndarray:
    """Union of the open balls ``|x - c| < E / theta`` of the candidates with ``T < lam |W_M|``, bool ``window``."""
    if lam_vox * pool.volume > pool.t[-1]:
        raise ValueError("internal: ball pool too small for this lambda_Y")
    k = int(np.searchsorted(pool.t, lam_vox * pool.volume))
    c = pool.centres[:k]
    r = pool.e[:k] / theta_vox
    shape = np.asarray(window)
    lo = np.maximum(np.ceil(c - r[:, None]), 0).astype(int)
    hi = np.minimum(np.floor(c + r[:, None]) + 1, shape).astype(int)
    hit = np.all(hi > lo, axis=1)
    out = np.zeros(tuple(window), bool)
    for ci, ri, a, b in zip(c[hit], r[hit], lo[hit], hi[hit]):
        z, y, x = np.ogrid[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        out[a[0]:b[0], a[1]:b[1], a[2]:b[2]] |= (z - ci[0]) ** 2 + (y - ci[1]) ** 2 + (x - ci[2]) ** 2 < ri * ri
    return out


def first_cover(pool: BallPool, window, theta_vox: float, n: int | None = None) -> np.ndarray:
    """For every voxel the index of the first candidate (in arrival order) whose ball of radius
    ``E / theta`` covers it, or ``n`` if none of the first ``n`` does: int32 ``window``.

    ``first_cover(...) < k`` is the ball union of the first ``k`` candidates, so one pass gives
    the Boolean model for every intensity.
    """
    n = len(pool.t) if n is None else min(int(n), len(pool.t))
    c = pool.centres[:n]
    r = pool.e[:n] / theta_vox
    shape = np.asarray(window)
    lo = np.maximum(np.ceil(c - r[:, None]), 0).astype(int)
    hi = np.minimum(np.floor(c + r[:, None]) + 1, shape).astype(int)
    out = np.full(tuple(window), n, np.int32)
    for i in np.nonzero(np.all(hi > lo, axis=1))[0]:
        a, b, ci, ri = lo[i], hi[i], c[i], r[i]
        z, y, x = np.ogrid[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        view = out[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        view[((z - ci[0]) ** 2 + (y - ci[1]) ** 2 + (x - ci[2]) ** 2 < ri * ri) & (view == n)] = i
    return out


def carve(base_labels: np.ndarray, balls: np.ndarray) -> np.ndarray:
    """Eq. 4: remove carbon black (label 1) inside the balls; graphite (label 2) stays."""
    out = base_labels.copy()
    out[balls & (base_labels == 1)] = 0
    return out
