"""Germs and marks of the two Boolean models, edge margins, and box size classes.

Coordinates are in voxel units; voxel ``(i, j, l)`` of the window has its centre at
``(i + 0.5, j + 0.5, l + 0.5)`` and the window is ``[0, nz] x [0, ny] x [0, nx]``.

* Graphite (Xi1): germs of a Poisson process of intensity ``lambda_x`` [vox^-3]; grain =
  oblate spheroid with half-axes ``(L, L, s)``, ``L = max(A, C)``, ``s = min(A, C)``,
  ``A ~ Gamma(alpha1/voxel_nm, rate gamma)``, ``C ~ Gamma(alpha2/voxel_nm, rate gamma)``,
  symmetry axis ``n`` uniform on the sphere. Marks: ``(n_z, n_y, n_x, L, s)``.
* Pore balls (Xi3): germs of intensity ``lambda_y``; open balls with radii
  ``R ~ Exp(theta)``. Marks: ``(R,)``.

Edge margins (no edge bias): germs are drawn in the window dilated by ``m`` voxels on
every side, ``m`` chosen so that the expected number of grains centred *outside* the
dilated window that still reach the window is at most ``eps`` (default 1e-6):
``lambda * int_m^inf area(dilated box at t) * P(radius bound >= t) dt <= eps``.

Size classes: every grain is rasterised in a cube of side ``b`` (even) that contains
its bounding box, ``b`` rounded up to a ladder of sides growing by ~25 % (small) to ~12.5 % (large); all grains
of one class share one compiled loop, so the cost is ~ sum of box volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special as sps

from jaxcba.model.gamma_icdf import gamma_icdf

# --------------------------------------------------------------------- size classes


def _ladder(limit: int = 1 << 15) -> np.ndarray:
    """Even cube sides: steps of ~25 % below 64 voxels (few classes for the many small
    balls, each class costs one compilation), ~12.5 % above (big grains dominate the cost)."""
    sides = [4]
    while sides[-1] < limit:
        b = sides[-1]
        sides.append(b + max(2, 2 * math.ceil(b / (8 if b < 64 else 16))))
    return np.asarray(sides, dtype=np.int64)


LADDER = _ladder()
#: Coarser ladder (powers of two) for the soft path: fewer classes, fewer compilations.
LADDER_POW2 = 2 ** np.arange(2, 16, dtype=np.int64)


def box_side(half_extent: np.ndarray, ladder: np.ndarray = LADDER) -> np.ndarray:
    """Smallest ladder side ``b`` with ``b / 2 >= half_extent + 1.5`` (covers every voxel centre)."""
    need = 2 * np.ceil(np.asarray(half_extent, dtype=np.float64) + 1.5)
    idx = np.searchsorted(ladder, need)
    if np.any(idx >= ladder.size):
        raise ValueError(f"grain extent {float(np.max(half_extent)):.4g} voxels is too large to rasterise")
    return ladder[idx]


# ----------------------------------------------------------------------- margins


def graphite_sf(shape1: float, shape2: float, rate: float):
    """Survival function of ``L = max(A, C)`` [voxels]."""

    def sf(t):
        t = np.asarray(t, dtype=np.float64)
        return 1.0 - sps.gammainc(shape1, rate * t) * sps.gammainc(shape2, rate * t)

    return sf


def ball_sf(theta: float):
    """Survival function of ``R ~ Exp(theta)`` [voxels]."""
    return lambda t: np.exp(-theta * np.asarray(t, dtype=np.float64))


def margin_vox(lam: float, shape, sf, eps: float = 1e-6) -> float:
    """Edge margin [voxels] so that at most ``eps`` grains are expected to be missed (see module doc)."""
    # radius scale: where sf drops below 1e-30
    hi = 1.0
    while sf(hi) > 1e-30:
        hi *= 2.0
        if hi > 1e9:
            raise ValueError("grain-size distribution has too heavy a tail for a finite margin")
    t = np.linspace(0.0, hi, 4097)
    dims = np.asarray(shape, dtype=np.float64)
    a = dims[:, None] + 2 * t[None, :]
    area = 2 * (a[0] * a[1] + a[1] * a[2] + a[0] * a[2])
    dens = lam * area * sf(t)
    # tail integral from t to hi (trapezoid, cumulative from the right)
    seg = 0.5 * (dens[1:] + dens[:-1]) * np.diff(t)
    tail = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    ok = np.nonzero(tail <= eps)[0]
    return float(t[ok[0]]) if ok.size else float(hi)


# ------------------------------------------------------------------------ drawing


def bucket(n: int, minimum: int = 16) -> int:
    """Pool size for ``n`` items: next power of two (limits recompilation)."""
    return max(minimum, 1 << max(0, int(n - 1).bit_length()))


def pool_size(n: int, mean: float) -> int:
    """Rows for ``n`` drawn items whose mean is ``mean``: a power of two fixed by the mean
    (``mean + 6 sd``) unless ``n`` exceeds it, so repeated draws reuse compilations."""
    return bucket(max(int(n), int(math.ceil(mean + 6.0 * math.sqrt(mean) + 1))))


def _uniform_centres(key, n, shape, margin):
    """Uniform points in the dilated window ``[-m, shape + m]``; ``shape`` may be traced."""
    lo = -jnp.asarray(margin, jnp.float32)
    hi = jnp.asarray(shape, jnp.float32) + jnp.asarray(margin, jnp.float32)
    return jax.random.uniform(key, (n, 3), jnp.float32, lo, hi)


def _uniform_axes(key, n):
    """Uniform directions on the sphere from two uniforms per grain."""
    u = jax.random.uniform(key, (n, 2), jnp.float32)
    return axis_from_uniforms(u[:, 0], u[:, 1])


def axis_from_uniforms(u1, u2):
    """Unit vectors ``(n_z, n_y, n_x)``: ``n_z = 2 u1 - 1`` (Archimedes), azimuth ``2 pi u2``."""
    nz = 2.0 * u1 - 1.0
    r = jnp.sqrt(jnp.maximum(1.0 - nz * nz, 0.0))
    phi = 2.0 * math.pi * u2
    return jnp.stack([nz, r * jnp.sin(phi), r * jnp.cos(phi)], axis=-1)


def spheroid_marks(axes, a, c):
    """Marks ``(n_z, n_y, n_x, L, s)`` from axes ``(n, 3)`` and half-axes ``a, c`` ``(n,)``."""
    return jnp.concatenate([axes, jnp.maximum(a, c)[:, None], jnp.minimum(a, c)[:, None]], axis=1)


@partial(jax.jit, static_argnums=(1,))
def draw_graphite(key, n: int, shape, margin, shape1, shape2, rate):
    """``n`` graphite germs: centres ``(n, 3)`` and marks ``(n, 5) = (n_z, n_y, n_x, L, s)``.

    Half-axes by the gamma inverse CDF of uniforms (as in the soft path).
    """
    kc, ko, ku = jax.random.split(key, 3)
    centres = _uniform_centres(kc, n, shape, margin)
    axes = _uniform_axes(ko, n)
    u = jax.random.uniform(ku, (2, n), jnp.float32)
    k = jnp.stack([jnp.asarray(shape1, jnp.float32), jnp.asarray(shape2, jnp.float32)])[:, None]
    a, c = gamma_icdf(u, k) / rate
    return centres, spheroid_marks(axes, a, c).astype(jnp.float32)


@partial(jax.jit, static_argnums=(1,))
def draw_balls(key, n: int, shape, margin, theta, grow=0.0):
    """``n`` ball germs: centres ``(n, 3)`` and radii ``(n, 1)`` ~ Exp(theta) + grow [voxels]."""
    kc, kr = jax.random.split(key)
    centres = _uniform_centres(kc, n, shape, margin)
    r = jax.random.exponential(kr, (n,), jnp.float32) / theta + grow
    return centres, r[:, None].astype(jnp.float32)


#: Germs are drawn in chunks of this many rows (one compilation for every window).
DRAW_CHUNK = 4096


def draw_rows(draw, key, n: int):
    """Call ``draw(fold_in(key, j), DRAW_CHUNK)`` for chunks ``j`` until ``n`` rows; host arrays."""
    parts = [draw(jax.random.fold_in(key, j), DRAW_CHUNK) for j in range(max(1, -(-n // DRAW_CHUNK)))]
    return tuple(np.concatenate([np.asarray(p[i]) for p in parts])[:n] for i in range(2))


@partial(jax.jit, static_argnums=())
def _poisson(key, mean):
    return jax.random.poisson(key, mean)


def poisson_count(key, mean: float) -> int:
    """Poisson count (host int) drawn from ``key``."""
    if mean > 2.0e9:
        raise ValueError(f"expected number of germs {mean:.3g} is too large")
    return int(_poisson(key, jnp.asarray(mean, jnp.float32)))


# ------------------------------------------------------------------------ packing


def half_extent(kind: str, marks: np.ndarray) -> np.ndarray:
    """Largest half-extent along the three axes [voxels] of each grain (its bounding cube)."""
    marks = np.asarray(marks, dtype=np.float64)
    if kind == "ball":
        return marks[:, 0]
    n2 = marks[:, :3] ** 2
    big, small = marks[:, 3:4] ** 2, marks[:, 4:5] ** 2
    return np.sqrt(np.max(big * (1.0 - n2) + small * n2, axis=1))


@dataclass(frozen=True)
class Packed:
    """Grains sorted by size class (host arrays), ready for the per-class loops.

    ``centres (P, 3)``, ``marks (P, m)`` padded to ``P`` rows; grains of class ``c``
    occupy rows ``lo[c]:hi[c]``; ``sides[c]`` is the cube side of class ``c``.
    """

    centres: np.ndarray
    marks: np.ndarray
    sides: tuple[int, ...]
    lo: np.ndarray
    hi: np.ndarray

    @property
    def count(self) -> int:
        return int(self.hi[-1]) if len(self.sides) else 0


def pack(kind: str, centres: np.ndarray, marks: np.ndarray, shape, sides=None) -> Packed:
    """Drop grains that cannot reach a voxel centre of the window; sort the rest by class.

    With ``sides`` given (e.g. the union over a batch) those classes are used, else the
    classes present.
    """
    centres = np.asarray(centres, dtype=np.float32)
    marks = np.asarray(marks, dtype=np.float32)
    e = half_extent(kind, marks)
    dims = np.asarray(shape, dtype=np.float64)
    c = centres.astype(np.float64)
    hits = np.all((c + e[:, None] >= 0.5) & (c - e[:, None] <= dims - 0.5), axis=1)
    hits &= e > 0
    centres, marks, e = centres[hits], marks[hits], e[hits]
    b = box_side(e) if e.size else np.zeros(0, np.int64)
    b = np.minimum(b, max(shape))  # boxes are clipped to the window: merge the classes beyond it
    if sides is None:
        sides = tuple(int(s) for s in np.unique(b))
    order = np.argsort(b, kind="stable")
    centres, marks, b = centres[order], marks[order], b[order]
    edges = np.searchsorted(b, np.asarray(sides, dtype=np.int64), side="right")
    hi = edges.astype(np.int32)
    lo = np.concatenate([[0], hi[:-1]]).astype(np.int32)
    return Packed(centres, marks, tuple(sides), lo, hi)


def pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


__all__ = [
    "LADDER",
    "box_side",
    "graphite_sf",
    "ball_sf",
    "margin_vox",
    "bucket",
    "pool_size",
    "DRAW_CHUNK",
    "draw_rows",
    "spheroid_marks",
    "axis_from_uniforms",
    "draw_graphite",
    "draw_balls",
    "poisson_count",
    "half_extent",
    "Packed",
    "pack",
    "pad_rows",
]
