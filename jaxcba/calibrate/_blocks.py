"""Block pseudo-values of the image descriptors the calibration fits: the noise model of the delta method.

The descriptors of one window (graphite ``(V, S, K, N)`` or contact distribution ``y(r)``, the
cb fraction ``q`` and two-point coverage ``C_G(h)`` of the graphite-free region, the pore CPSD,
the fractions ``V`` and ``V1``) are ratios of sums over the voxels (or voxel pairs, 2x2x2 cells)
of the window: ``R = sum_x a(x) / sum_x b(x)``. The window is cut into ``k^3`` blocks (``k`` per
axis; a pair or a cell belongs to the block of its first voxel), each block's sums ``A_b``, ``B_b``
are taken, and its *pseudo-value* is the linearised ratio

    x_b = R + (A_b - R B_b) / mean(B),        mean_b(x_b) = R exactly,

so that ``Cov(R) ~ Cov_b(x_b) / k^3`` (batch means; :func:`covariance`). Block sums partition the
whole window's sums, so the pseudo-values describe the estimator actually used, not a re-measurement
on smaller windows. The estimate assumes blocks much larger than the structure's correlation
length (docs/calibration.md, "Uncertainty"); it has ``k^3 - 1`` degrees of freedom.

The pore CPSD's pseudo-values use the local thickness (``LT(x) >= r``), whose window fraction is
the CPSD up to the voxel grid's non-nested openings; only their deviations from the block mean enter.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxcba.calibrate._measure import axis_pair_counts
from jaxcba.descriptors.minkowski import configuration_weights
from jaxcba.descriptors.pore_size import local_thickness


def block_edges(shape, k: int) -> list[np.ndarray]:
    """Per axis the ``k + 1`` block boundaries [voxels] (``round(i n / k)``)."""
    if not (isinstance(k, (int, np.integer)) and k >= 2):
        raise ValueError(f"blocks per axis must be an integer >= 2, got {k!r}")
    if min(shape) < 2 * k:
        raise ValueError(f"the window {tuple(shape)} is too small for {k} blocks per axis (needs >= {2 * k} voxels a side)")
    return [np.round(np.arange(k + 1) * n / k).astype(int) for n in shape]


def block_sums(a: np.ndarray, edges) -> np.ndarray:
    """Sums of ``a`` over the blocks (by the index of its first voxel), flattened to ``(k^3,)``.

    ``a`` may be shorter than the window along an axis (cells, pairs at a lag): the blocks
    keep the window's boundaries and a block past ``a``'s end sums to 0."""
    out = np.asarray(a, dtype=np.int64 if a.dtype == bool or np.issubdtype(a.dtype, np.integer) else np.float64)
    for axis in range(3):
        starts = edges[axis][:-1]
        ok = starts < out.shape[axis]
        s = np.add.reduceat(out, starts[ok], axis=axis)
        if not ok.all():
            pad = [(0, 0)] * 3
            pad[axis] = (0, int(np.count_nonzero(~ok)))
            s = np.pad(s, pad)
        out = s
    return out.reshape(-1)


def ratio_pseudo(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(R, X)``: the whole-window ratios ``R = sum A / sum B`` ``(m,)`` and the block pseudo-values
    ``X`` ``(n_blocks, m)`` (module docstring). ``A``: ``(n_blocks, m)``; ``B``: ``(n_blocks, m)`` or ``(n_blocks,)``."""
    A = np.asarray(A, dtype=float)
    B = np.broadcast_to(np.asarray(B, dtype=float).reshape(A.shape[0], -1), A.shape)
    R = A.sum(0) / B.sum(0)
    return R, R + (A - R * B) / B.mean(0)


def covariance(X: np.ndarray) -> np.ndarray:
    """Batch-means covariance ``Cov_b(x_b) / n_blocks`` of the window's descriptors ``(m, m)``."""
    X = np.asarray(X, dtype=float)
    return np.atleast_2d(np.cov(X.T, ddof=1)) / X.shape[0]


# ---------------------------------------------------------------------------- descriptors
#: Corner ``(dz, dy, dx)`` of bit ``k`` in a 2x2x2 cell's configuration code, the layout of
#: :mod:`jaxcba.descriptors.minkowski`: ``((k >> 2) & 1, (k >> 1) & 1, k & 1)``.
_CORNERS = tuple(((k >> 2) & 1, (k >> 1) & 1, k & 1) for k in range(8))


def intrinsic_blocks(mask, voxel_nm: float, edges, *, euler: str, curvature: str) -> tuple[np.ndarray, np.ndarray]:
    """``(R, X)`` of ``(V_V, S_V [nm^-1], M_V [nm^-2], chi_V [nm^-3])`` of ``mask`` (the
    descriptors layer's estimator, its 2x2x2 cells counted per block)."""
    m = np.asarray(mask, dtype=np.uint8)
    code = np.zeros(tuple(s - 1 for s in m.shape), np.uint8)
    for bit, (dz, dy, dx) in enumerate(_CORNERS):
        code |= m[dz : dz + code.shape[0], dy : dy + code.shape[1], dx : dx + code.shape[2]] << bit
    k3 = int(np.prod([len(e) - 1 for e in edges]))
    block = np.zeros(code.shape, np.int64)
    stride = 1
    for axis in (2, 1, 0):
        idx = np.searchsorted(edges[axis], np.arange(code.shape[axis]), side="right") - 1
        shape = [1, 1, 1]
        shape[axis] = -1
        block = block + idx.reshape(shape) * stride
        stride *= len(edges[axis]) - 1
    hist = np.bincount((block * 256 + code).ravel(), minlength=k3 * 256).reshape(k3, 256).astype(float)
    w = np.asarray(configuration_weights(euler, curvature), dtype=float)  # (4, 256): rows V, S, M, chi
    cells = hist.sum(1)
    scale = np.array([voxel_nm**-1, voxel_nm**-2, voxel_nm**-3])
    A_dens = (hist @ w[1:].T) * scale  # (k3, 3)
    _, X_dens = ratio_pseudo(A_dens, cells)
    R_v, X_v = ratio_pseudo(block_sums(m.astype(bool), edges)[:, None], block_sums(np.ones(m.shape, bool), edges))
    R = np.concatenate([R_v, A_dens.sum(0) / cells.sum()])
    return R, np.concatenate([X_v, X_dens], axis=1)


def fraction_blocks(mask, edges, region=None) -> tuple[np.ndarray, np.ndarray]:
    """``(R, X)`` of the fraction of ``region`` (default the window) in ``mask``, shape ``(1,)`` / ``(k^3, 1)``."""
    mask = np.asarray(mask, bool)
    region = np.ones(mask.shape, bool) if region is None else np.asarray(region, bool)
    return ratio_pseudo(block_sums(mask & region, edges)[:, None], block_sums(region, edges))


def two_point_blocks(phase, region, max_lag: int, edges) -> tuple[np.ndarray, np.ndarray]:
    """``(R, X)`` of the masked axis two-point coverage ``C(k)``, ``k = 1..max_lag`` [voxels] (the estimator of
    :func:`jaxcba.calibrate._measure.masked_axis_two_point`, its pair sums taken per block of the first voxel)."""
    A, B = axis_pair_counts(phase, region, max_lag, count=lambda pairs: block_sums(pairs, edges))
    return ratio_pseudo(A.T, B.T)


def cpsd_blocks(pore, radii_vox, edges) -> tuple[np.ndarray, np.ndarray]:
    """``(R, X)`` of the pore CPSD at ``radii_vox`` [voxels] from the local thickness (module docstring)."""
    pore = np.asarray(pore, bool)
    radii = np.asarray(radii_vox, dtype=float)
    lt = np.asarray(local_thickness(jnp.asarray(pore), radii_vox=tuple(float(r) for r in radii)))
    A = np.stack([block_sums(pore & (lt >= r - 1e-6), edges) for r in radii], axis=1)
    return ratio_pseudo(A, block_sums(pore, edges))


def contact_blocks(survive_at, region_at, radii_vox, edges) -> tuple[np.ndarray, np.ndarray]:
    """``(R, X)`` of ``y(r) = -ln(1 - H_s(r))``: ``survive_at(r)``, ``region_at(r)`` give the boolean
    maps of the survivors and of the minus-sampled region at radius ``r`` [voxels]."""
    A = np.stack([block_sums(survive_at(r), edges) for r in radii_vox], axis=1)
    B = np.stack([block_sums(region_at(r), edges) for r in radii_vox], axis=1)
    S, XS = ratio_pseudo(A, B)
    y = -np.log(S)
    return y, y - (XS - S) / S
