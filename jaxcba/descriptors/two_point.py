"""Two-point coverage probability C(h) = P(x in X, x + h in X) of a phase (paper Eq. 20, Fig. 7).

Estimator (ref. [49], Sec. 6.2.3): the non-periodic autocorrelation of the indicator, by FFT
of the volume zero-padded to ``n + max_lag`` along each axis (enough to rule out any wrap for
lags up to ``max_lag``), divided for every lag vector ``h`` by the number of voxel pairs
``(x, x + h)`` that lie inside the window, ``prod_i (n_i - |h_i|)``. This is the unbiased
(minus-sampling) estimator; no periodic continuation is assumed.

Reported along the three axes and radially averaged: radial bin ``k`` is the plain mean of
``C(h)`` over all lag vectors with ``k - 1/2 <= |h| < k + 1/2`` (voxel units), ``k = 0..max_lag``,
reported at the mean ``|h|`` of those lags (``h_nm = mean|h| * voxel_nm``; e.g. 1.28 voxels
for ``k = 1``, which mixes the 6 axis and 12 face-diagonal neighbours). Along the axes
``h_nm = k * voxel_nm`` exactly. The centered version is ``C(h) - V^2`` with ``V`` the point count.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

__all__ = ["TwoPointCoverage", "autocorrelation", "two_point_coverage"]


@dataclasses.dataclass(frozen=True)
class TwoPointCoverage:
    """Two-point coverage of one phase.

    ``h_nm``: mean lag length of each radial bin ``(L + 1,)`` [nm]; ``C``: radially averaged
    C(h) ``(L + 1,)``; ``C_axes``: C along the z, y, x axes at lags ``k * voxel_nm``, ``(3, L + 1)``; ``volume_fraction``: V (point count).
    Batched under ``vmap`` (leading batch axis on every field).
    """

    h_nm: object
    C: object
    C_axes: object
    volume_fraction: object

    @property
    def centered(self):
        """C(h) - V^2, radially averaged (the paper's Fig. 7)."""
        v = jnp.asarray(self.volume_fraction)
        return self.C - (v**2)[..., None]

    def to_dict(self) -> dict:
        return {
            "h_nm": np.asarray(self.h_nm).tolist(),
            "C": np.asarray(self.C).tolist(),
            "centered": np.asarray(self.centered).tolist(),
            "C_axes": np.asarray(self.C_axes).tolist(),
            "volume_fraction": np.asarray(self.volume_fraction).tolist(),
        }


jax.tree_util.register_dataclass(
    TwoPointCoverage, data_fields=["h_nm", "C", "C_axes", "volume_fraction"], meta_fields=[]
)


def _default_max_lag(shape) -> int:
    return int(min(shape) // 2)


def autocorrelation(mask: jax.Array, max_lag_vox: int) -> jax.Array:
    """C(h) for every lag vector ``|h_i| <= max_lag_vox``: array ``(2L+1, 2L+1, 2L+1)`` float32.

    Index ``L + h_i`` along axis ``i`` holds lag ``h_i`` (``h`` in voxels, any sign).
    """
    shape = mask.shape
    L = int(max_lag_vox)
    padded = tuple(scipy.fft.next_fast_len(n + L, real=True) for n in shape)
    m = jnp.asarray(mask).astype(jnp.float32)
    f = jnp.fft.rfftn(m, s=padded)
    corr = jnp.fft.irfftn(f.real**2 + f.imag**2, s=padded)
    idx = [np.r_[np.arange(p - L, p), np.arange(0, L + 1)] for p in padded]
    corr = corr[np.ix_(*idx)]
    lags = np.arange(-L, L + 1)
    counts = [(n - np.abs(lags)).astype(np.float32) for n in shape]
    overlap = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    return corr / jnp.asarray(overlap)


def two_point_coverage(mask: jax.Array, voxel_nm: float = 1.0, max_lag_vox: int | None = None) -> TwoPointCoverage:
    """Two-point coverage C(h) of a boolean ``(z, y, x)`` mask (paper Eq. 20), h in nm.

    ``max_lag_vox`` (static; default ``min(shape) // 2``) must be < every axis length.
    Jittable (``max_lag_vox`` static) and vmappable.
    """
    if getattr(mask, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) phase mask, got shape {getattr(mask, 'shape', None)}")
    L = _default_max_lag(mask.shape) if max_lag_vox is None else int(max_lag_vox)
    if not 0 <= L < min(mask.shape):
        raise ValueError(f"max_lag_vox must be in [0, {min(mask.shape) - 1}] for shape {mask.shape}, got {L}")
    c = autocorrelation(mask, L)
    axes = jnp.stack([c[L:, L, L], c[L, L:, L], c[L, L, L:]])
    g = np.arange(-L, L + 1, dtype=np.float64)
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    k = np.floor(r + 0.5).astype(np.int32)
    inside = k <= L
    seg = np.where(inside, k, L + 1).ravel()
    n_per = np.bincount(seg, minlength=L + 2)[: L + 1].astype(np.float32)
    sums = jax.ops.segment_sum(c.ravel(), jnp.asarray(seg), num_segments=L + 2)[: L + 1]
    radial = sums / jnp.asarray(n_per)
    r_mean = np.bincount(seg, weights=r.ravel(), minlength=L + 2)[: L + 1] / n_per
    h_nm = jnp.asarray(r_mean, jnp.float32) * jnp.asarray(voxel_nm, jnp.float32)
    vf = jnp.mean(jnp.asarray(mask).astype(jnp.float32))
    return TwoPointCoverage(h_nm=h_nm, C=radial, C_axes=axes, volume_fraction=vf)
