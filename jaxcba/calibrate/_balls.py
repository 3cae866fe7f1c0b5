"""Common random numbers for stage 3: one fixed pool of pore-ball candidates per realization key.

The large-pore balls of Ξ3 are carved out of a fixed realization of Ξ1 ∪ Ξ2 (one
``jaxcba.simulate`` call per key with a negligible ``lambda_Y``). The candidates are a Poisson
process on ``R^3 x [0, lam_max] x [0, inf)`` with intensity ``dx dtau exp(-E) dE``: centres ``c``
(voxel coordinates), *arrival intensities* ``tau`` (sorted ascending) and unit-rate radii
``E ~ Exp(1)``. For ``(lambda_Y, theta)`` the balls are the candidates with ``tau < lambda_Y``
and radii ``E / theta`` — exactly the Boolean model of Eq. 3 in the window — so between two
trial ``theta`` the same balls only grow or shrink and a few join or leave: the CPSD objective
varies almost smoothly in ``theta``.

Only candidates that can reach the window for some ``theta >= theta_min`` are kept
(``dist(c, window) < E / theta_min``), and they are drawn directly, without a truncated margin:
with ``a_i`` the window's extents (voxel centres ``0 .. n_i - 1``) and ``s = 1 / theta_min``,
``E`` is drawn from the density ``∝ exp(-E) prod_i (a_i + 2 s E)`` (a mixture of Gamma(1..4)),
the centre uniformly in the window's bounding box dilated by ``s E``, and the centres farther
than ``s E`` from the window are dropped (thinning): the kept points are exactly the Poisson
process restricted to the reaching candidates, for every ``theta >= theta_min``. Their number
is ``~ lam_max (|W| + 2 s |dW| + 8 s^2 sum a_i + 48 s^3)`` (times ~0.5-1 for the thinning), so
a wide range of trial ``theta`` costs no more than the balls themselves.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class BallPool:
    """Candidates in voxel coordinates: ``centres`` (n, 3), ``e`` (n,) Exp(1) radii in units of
    ``1 / theta``, ``t`` (n,) arrival intensities [voxel^-3], increasing, all ``< lam_max``."""

    centres: np.ndarray
    e: np.ndarray
    t: np.ndarray
    theta_min: float  # [voxel^-1]
    lam_max: float  # [voxel^-3]


def draw_pool(key, window, theta_min_vox: float, lam_max_vox: float) -> BallPool:
    """Every candidate with ``tau < lam_max_vox`` that reaches the window for some ``theta >= theta_min_vox``
    (voxel units; module docstring)."""
    if not (theta_min_vox > 0 and lam_max_vox > 0 and math.isfinite(theta_min_vox * lam_max_vox)):
        raise ValueError(f"internal: draw_pool needs theta_min > 0, lam_max > 0, got {theta_min_vox}, {lam_max_vox}")
    a = np.asarray(window, float) - 1.0  # extents of the voxel-centre box [0, n - 1]
    s = 1.0 / theta_min_vox
    # ∫ exp(-E) prod_i (a_i + 2 s E) dE = sum_k k! c_k with c_k the polynomial's coefficients
    w = np.array([a.prod(), 2 * s * (a[0] * a[1] + a[1] * a[2] + a[0] * a[2]), 8 * s * s * a.sum(), 48 * s**3])
    mean = lam_max_vox * w.sum()
    # numpy generator seeded from the key: the candidate count is random, and jax.random would
    # compile its samplers anew for every count
    rng = np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)).tolist())
    n = int(rng.poisson(mean))
    comp = rng.choice(4, size=n, p=w / w.sum())
    e = rng.standard_gamma(comp + 1.0)  # Gamma(k + 1, 1)
    rho = s * e
    centres = -rho[:, None] + rng.uniform(size=(n, 3)) * (a + 2 * rho[:, None])
    gap = np.maximum(np.maximum(-centres, centres - a), 0.0)  # per-axis distance to the box
    keep = np.einsum("ij,ij->i", gap, gap) < rho * rho
    t = rng.uniform(size=n) * lam_max_vox
    order = np.argsort(t[keep], kind="stable")
    return BallPool(centres=centres[keep][order], e=e[keep][order], t=t[keep][order],
                    theta_min=float(theta_min_vox), lam_max=float(lam_max_vox))


def _check(pool: BallPool, theta_vox: float, lam_vox: float | None = None):
    if theta_vox < pool.theta_min * (1 - 1e-9):
        raise ValueError(f"internal: ball pool drawn for theta >= {pool.theta_min}, asked {theta_vox}")
    if lam_vox is not None and lam_vox > pool.lam_max * (1 + 1e-9):
        raise ValueError("internal: ball pool too small for this lambda_Y")


def _boxes(c, r, window):
    shape = np.asarray(window)
    lo = np.maximum(np.ceil(c - r[:, None]), 0).astype(int)
    hi = np.minimum(np.floor(c + r[:, None]) + 1, shape).astype(int)
    return lo, hi, np.all(hi > lo, axis=1)


def ball_mask(pool: BallPool, window, lam_vox: float, theta_vox: float) -> np.ndarray:
    """Union of the open balls ``|x - c| < E / theta`` of the candidates with ``tau < lam``, bool ``window``."""
    _check(pool, theta_vox, lam_vox)
    k = int(np.searchsorted(pool.t, lam_vox))
    c = pool.centres[:k]
    r = pool.e[:k] / theta_vox
    lo, hi, hit = _boxes(c, r, window)
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
    _check(pool, theta_vox)
    n = len(pool.t) if n is None else min(int(n), len(pool.t))
    c = pool.centres[:n]
    r = pool.e[:n] / theta_vox
    lo, hi, hit = _boxes(c, r, window)
    out = np.full(tuple(window), n, np.int32)
    for i in np.nonzero(hit)[0]:
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
