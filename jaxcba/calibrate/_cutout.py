"""Cutouts for stage 2: a user box, or the largest box free of graphite and of large pores.

:func:`find_cutout` (automatic choice, paper Appendix Fig. A1 done by a program):

1. forbidden voxels = graphite (label 2) ∪ "large pores": the opening of the pore phase by a
   ball of radius ``r_L`` (pore voxels covered by a ball of radius ``r_L`` that fits in the
   pore phase; two Euclidean distance transforms). ``r_L`` defaults to the 0.9 quantile of
   the pore depth (distance to the nearest non-pore voxel) over the pore voxels, i.e. the
   widest 10 % of the pore space counts as large pores.
2. the largest cube without forbidden voxels, by bisection on its side with a summed-volume
   table (each test is O(voxels)); then the cube is grown face by face while it stays free.

Selection bias: a box chosen by looking at the pores is not independent of the Gaussian
excursion set Ξ2 (it avoids Ξ2's widest pores too), and it still contains the small balls
of Ξ3. The cb fraction in it is therefore not an unbiased estimate of V2; see
:mod:`jaxcba.calibrate._stage2_excursion` for the unbiased ``"masked"`` estimator that needs
no box.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jaxcba.calibrate._box import Box


def _sat(mask: np.ndarray) -> np.ndarray:
    """Summed-volume table with a zero border: ``T[i, j, k] = mask[:i, :j, :k].sum()``."""
    t = np.zeros(tuple(s + 1 for s in mask.shape), dtype=np.int64)
    t[1:, 1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1).cumsum(2)
    return t


def _box_counts(t: np.ndarray, size) -> np.ndarray:
    """Forbidden counts of every box of ``size`` (all positions), via inclusion-exclusion."""
    a, b, c = size
    n0, n1, n2 = (s - 1 - d + 1 for s, d in zip(t.shape, size))
    if min(n0, n1, n2) <= 0:
        return np.zeros((0, 0, 0), dtype=np.int64)
    hi = (slice(a, a + n0), slice(b, b + n1), slice(c, c + n2))
    lo = (slice(0, n0), slice(0, n1), slice(0, n2))
    out = np.zeros((n0, n1, n2), dtype=np.int64)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                sl = (hi[0] if dz else lo[0], hi[1] if dy else lo[1], hi[2] if dx else lo[2])
                out += (-1) ** (3 - (dz + dy + dx)) * t[sl]
    return out


def largest_free_box(forbidden: np.ndarray) -> Box | None:
    """The largest cube without ``forbidden`` voxels, then grown face by face (``None`` if all forbidden)."""
    forbidden = np.asarray(forbidden, dtype=bool)
    if forbidden.all():
        return None
    t = _sat(forbidden)
    lo, hi = 1, min(forbidden.shape)
    best = None
    while lo <= hi:  # largest free cube side, by bisection (free cubes are nested in side)
        mid = (lo + hi) // 2
        counts = _box_counts(t, (mid, mid, mid))
        hits = np.argwhere(counts == 0)
        if hits.size:
            best = (mid, tuple(int(v) for v in hits[len(hits) // 2]))
            lo = mid + 1
        else:
            hi = mid - 1
    side, (z, y, x) = best
    bounds = [z, z + side, y, y + side, x, x + side]

    def free(b):
        return int(t[b[1], b[3], b[5]] - t[b[0], b[3], b[5]] - t[b[1], b[2], b[5]] - t[b[1], b[3], b[4]]
                   + t[b[0], b[2], b[5]] + t[b[0], b[3], b[4]] + t[b[1], b[2], b[4]] - t[b[0], b[2], b[4]]) == 0

    grown = True
    while grown:
        grown = False
        for i in range(6):
            ax = i // 2
            trial = list(bounds)
            trial[i] += -1 if i % 2 == 0 else 1
            if 0 <= trial[2 * ax] and trial[2 * ax + 1] <= forbidden.shape[ax] and free(trial):
                bounds = trial
                grown = True
    return Box(*bounds)


def large_pore_region(labels: np.ndarray, radius_vox: float | None = None) -> tuple[np.ndarray, float]:
    """Opening of the pore phase by a ball of radius ``radius_vox`` (default: 0.9 quantile of pore depth).

    Returns ``(mask, radius_vox)``.
    """
    pore = np.asarray(labels) == 0
    if not pore.any():
        return np.zeros_like(pore), 0.0
    depth = ndimage.distance_transform_edt(pore)
    if radius_vox is None:
        radius_vox = float(np.quantile(depth[pore], 0.9))
    centres = depth >= radius_vox
    if not centres.any():
        return np.zeros_like(pore), float(radius_vox)
    reach = ndimage.distance_transform_edt(~centres)
    return (reach < radius_vox) & pore, float(radius_vox)


def find_cutout(labels, voxel_nm: float = 1.0, large_pore_nm: float | None = None, min_side: int = 4) -> tuple[Box, dict]:
    """Largest box without graphite and large pores (module docstring); ``(box, info)``.

    Args:
        labels: ``(z, y, x)`` labels 0/1/2.
        voxel_nm: voxel side [nm] (to read ``large_pore_nm``).
        large_pore_nm: radius [nm] from which a pore counts as large (default: see module).
        min_side: smallest acceptable box side [voxels]; a smaller box -> ``ValueError``.

    Returns:
        ``(Box, {"large_pore_radius_nm", "forbidden_fraction"})``.
    """
    labels = np.asarray(labels)
    radius = None if large_pore_nm is None else float(large_pore_nm) / voxel_nm
    large, radius = large_pore_region(labels, radius)
    forbidden = (labels == 2) | large
    box = largest_free_box(forbidden)
    if box is None or min(box.shape) < min_side:
        raise ValueError(
            f"no cutout free of graphite and large pores with sides >= {min_side} voxels was found "
            f"(largest: {None if box is None else box.shape}); give the cutout box explicitly"
        )
    return box, {"large_pore_radius_nm": radius * voxel_nm, "forbidden_fraction": float(forbidden.mean())}
