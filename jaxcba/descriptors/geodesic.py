"""Geodesic distance transform and mean geodesic tortuosity of a phase (Section 3.3, ref. [55]).

Metric: shortest paths in the **26-neighbourhood graph** of the phase's voxel centres with
Euclidean step lengths 1 (face), sqrt(2) (edge), sqrt(3) (corner neighbours). It is exact for
paths made of straight runs along the 13 lattice directions and overestimates other
directions by at most 8 % (e.g. (2, 1, 0): 1 + sqrt(2) = 2.414 vs sqrt(5) = 2.236).

Algorithm (jittable, vmappable, no Python loop over voxels): iterated *slice sweeps* on one
float32 field ``g`` (``+inf`` off the phase, which cuts every path). A sweep along axis ``a``
visits the slices normal to ``a`` in order (``lax.fori_loop``) and relaxes each slice from the
one just relaxed before it,

    g[i] <- min(g[i], min_{(p, q) in {-1, 0, 1}^2} shift_{p, q}(g[i -+ 1]) + sqrt(1 + p^2 + q^2)),

i.e. the 9 lattice directions with a nonzero component along ``a`` at once, forwards and then
backwards (``jaxcba.morphology.sweep_slices``). The slice is updated in place, and whether any
value decreased is accumulated on the way. One round sweeps axes 0, 1 and 2 (the last on
transposed blocks of axis-0 slices, ``jaxcba.morphology.sweep_round``) and so relaxes every
edge of the graph; rounds repeat until nothing decreases. Their number grows with the number of
turns of the shortest paths, not with their length. Every update is the float32 sum of a path,
evaluated edge by edge from its seed, and every edge is relaxed until stable, so the fixpoint is
the graph distance, each value the float32 sum (in path order) of a shortest path, whatever the
order of the relaxations.

Memory: the field (4 bytes/voxel), updated in place, plus one slice or one block of about 4e6
voxels.

Mean geodesic tortuosity (paper Section 3.3): for every phase voxel on the face ``index 0`` of
``axis`` that is connected to the opposite face, the geodesic distance to that face
(centre to centre) divided by the thickness ``(n - 1)`` voxels; ``tau`` is their mean, 1 for
straight channels.

Connectivity: "connected" and "percolates" follow the one rule of the library - face
neighbours (6-connectivity), as in the constrictivity's intrusion and the transport solver,
whose current can only cross shared faces. The paths are measured inside the phase's
*percolating cluster* (:func:`jaxcba.morphology.percolating_cluster`: the voxels 6-connected to
both faces); within it, steps to edge and corner neighbours of the cluster are allowed (the
26-neighbourhood metric above), so a face-connected staircase is measured by its diagonal. A
phase linked across the window only through shared edges or corners (a 3D checkerboard, a
one-voxel diagonal line) does not percolate.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcba.morphology import percolating_cluster, rounds_until_stable

__all__ = ["GeodesicTortuosity", "geodesic_distance", "geodesic_tortuosity", "METRIC"]

METRIC = ("26-neighbourhood graph, Euclidean step lengths 1, sqrt(2), sqrt(3), inside the phase's face-connected "
          "(6-neighbour) percolating cluster")

#: Value of phase voxels not (yet) reached: finite, so that it passes through the relaxation.
_UNREACHED = np.float32(1e30)  # NumPy, not jnp: importing must not start the XLA backend (jax.distributed)

_INF = np.float32(np.inf)
_STEP = (np.float32(1.0), np.float32(np.sqrt(2.0)), np.float32(np.sqrt(3.0)))


@dataclasses.dataclass(frozen=True)
class GeodesicTortuosity:
    """``mean`` [1]: mean geodesic tortuosity (NaN when nothing percolates); ``percolates``: bool;
    ``n_starts``: number of start voxels connected to the opposite face; ``fraction_connected``:
    that number over the phase voxels on the start face."""

    mean: object
    percolates: object
    n_starts: object
    fraction_connected: object

    def to_dict(self) -> dict:
        return {f.name: np.asarray(getattr(self, f.name)).tolist() for f in dataclasses.fields(self)}


jax.tree_util.register_dataclass(
    GeodesicTortuosity, data_fields=[f.name for f in dataclasses.fields(GeodesicTortuosity)], meta_fields=[]
)


def _shift(c, s: int, ax: int):
    """``out[..., j, ...] = c[..., j - s, ...]`` along axis ``ax`` of a slice, ``+inf`` shifted in."""
    n = c.shape[ax]
    pad = [(0, 0)] * c.ndim
    pad[ax] = (1, 0) if s > 0 else (0, 1)
    c = jnp.pad(c, pad, constant_values=_INF)
    return lax.slice_in_dim(c, 0, n, axis=ax) if s > 0 else lax.slice_in_dim(c, 1, n + 1, axis=ax)


def _from_neighbours(c):
    """``min_{(p, q) in {-1, 0, 1}^2} c[j - p, k - q] + sqrt(1 + p^2 + q^2)`` for a slice ``c`` ``(P, Q)``.

    Grouped by step length; ``min(a, b) + w = min(a + w, b + w)`` in float32, so the values are
    those of the nine separate sums."""
    e1 = jnp.minimum(_shift(c, 1, 1), _shift(c, -1, 1))
    f0 = jnp.minimum(_shift(c, 1, 0), _shift(c, -1, 0))
    f1 = jnp.minimum(_shift(e1, 1, 0), _shift(e1, -1, 0))
    return jnp.minimum(jnp.minimum(c + _STEP[0], e1 + _STEP[1]), jnp.minimum(f0 + _STEP[1], f1 + _STEP[2]))


def _relax(v, prev):
    """Slice ``v`` relaxed from the slice ``prev`` swept before it (``+inf`` off the phase stays ``+inf``)."""
    return jnp.where(v < _INF, jnp.minimum(v, _from_neighbours(prev)), v)


def _distance(g0, max_sweeps: int):
    """Rounds of sweeps on ``g0`` (0 on seeds, ``_UNREACHED`` on the phase, ``+inf`` off it) until stable.

    Returns the distance [voxels], ``+inf`` off the phase and where unreachable."""

    g = rounds_until_stable(g0, _relax, _INF, max_sweeps)
    return jnp.where(g < _UNREACHED, g, _INF)


def _start_field(mask, seeds):
    return jnp.where(seeds, jnp.float32(0), jnp.where(mask, _UNREACHED, _INF))


@partial(jax.jit, static_argnames=("max_sweeps",))
def geodesic_distance(mask: jax.Array, seeds: jax.Array, max_sweeps: int = 1000) -> jax.Array:
    """Geodesic distance [voxels] inside ``mask`` from ``seeds & mask`` (26-neighbourhood, Euclidean steps).

    Args:
        mask: bool ``(z, y, x)``; seeds: bool, same shape. max_sweeps: static bound on the number
            of rounds (each round relaxes every edge at least twice).

    Returns:
        float32 ``(z, y, x)``: distance, ``+inf`` off the mask and where unreachable.
    """
    mask = jnp.asarray(mask, bool)
    seeds = jnp.asarray(seeds, bool) & mask
    if mask.ndim != 3 or seeds.shape != mask.shape:
        raise ValueError(f"mask and seeds must be 3D arrays of equal shape, got {mask.shape} and {seeds.shape}")
    return _distance(_start_field(mask, seeds), max_sweeps)


def geodesic_tortuosity(mask: jax.Array, axis: int = 0) -> GeodesicTortuosity:
    """Mean geodesic tortuosity of a phase from the face ``index 0`` of ``axis`` to the opposite face.

    ``mask``: bool ``(z, y, x)``; jittable and vmappable (``axis`` static). ``mean`` is NaN and
    ``percolates`` False when no start voxel is face-connected (6-connectivity, the rule of the
    constrictivity and the transport solver) to the opposite face; the paths run inside the
    percolating cluster with the 26-neighbourhood metric (module docstring).
    """
    if getattr(mask, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) phase mask, got shape {getattr(mask, 'shape', None)}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis!r}")
    if mask.shape[axis] < 2:
        raise ValueError(f"the volume needs at least 2 voxels along axis {axis}, got shape {mask.shape}")
    if isinstance(mask, np.ndarray) and not mask.any():
        raise ValueError("the phase is empty (no True voxel): its geodesic tortuosity is undefined")
    return _tortuosity(jnp.asarray(mask, bool), axis)


@partial(jax.jit, static_argnames=("axis",))
def _tortuosity(mask, axis):
    n = mask.shape[axis]
    cluster, _ = percolating_cluster(mask, axis, connectivity=6)  # the one rule: face neighbours
    outlet = lax.broadcasted_iota(jnp.int32, mask.shape, axis) == n - 1
    g = _distance(_start_field(cluster, outlet & cluster), 1000)
    start = lax.index_in_dim(g, 0, axis, keepdims=False)
    on_face = lax.index_in_dim(mask, 0, axis, keepdims=False)
    ok = lax.index_in_dim(cluster, 0, axis, keepdims=False) & jnp.isfinite(start)
    count = jnp.sum(ok)
    mean = jnp.sum(jnp.where(ok, start, 0.0)) / jnp.maximum(count, 1) / (n - 1)
    perc = count > 0
    return GeodesicTortuosity(
        mean=jnp.where(perc, mean, jnp.nan),
        percolates=perc,
        n_starts=count,
        fraction_connected=count / jnp.maximum(jnp.sum(on_face), 1),
    )
