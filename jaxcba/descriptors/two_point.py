"""Two-point coverage probability C(h) = P(x in X, x + h in X) of a phase (paper Eq. 20, Fig. 7).

Estimator (ref. [49], Sec. 6.2.3): the non-periodic autocorrelation of the indicator, by FFT
of the volume zero-padded to ``n + max_lag`` along each axis (enough to rule out any wrap for
lags up to ``max_lag``), divided for every lag vector ``h`` by the number of voxel pairs
``(x, x + h)`` that lie inside the window, ``prod_i (n_i - |h_i|)``. This is the unbiased
(minus-sampling) estimator; no periodic continuation is assumed.

Memory: the 3D transform is done as 2D transforms of the z-slices, then 1D transforms along z
over chunks of rows, keeping only the ``L + 1`` lag planes ``h_z = 0..L`` (``C(-h) = C(h)``);
each plane is transformed back and binned on its own. The slice spectra are made in
:data:`PASSES` passes, one share of the x frequencies each, so only a share is held at a time:
the working set is about ``(n0 / PASSES + L) * (n1 + L) * (n2 + L) / 2`` complex64 values
(:func:`two_point_bytes`), not the padded volume three times over. The default largest lag is ``min(shape) // 2`` capped at
:data:`DEFAULT_MAX_LAG_VOX` = 100 voxels (2 µm at 20 nm); pass ``max_lag_vox`` for more.

Reported along the three axes and radially averaged: radial bin ``k`` is the plain mean of
``C(h)`` over all lag vectors with ``k - 1/2 <= |h| < k + 1/2`` (voxel units), ``k = 0..max_lag``,
reported at the mean ``|h|`` of those lags (``h_nm = mean|h| * voxel_nm``; e.g. 1.28 voxels
for ``k = 1``, which mixes the 6 axis and 12 face-diagonal neighbours). Along the axes
``h_nm = k * voxel_nm`` exactly. The centered version is ``C(h) - V^2`` with ``V`` the point count.
"""

from __future__ import annotations

import dataclasses
import functools
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import scipy.fft

__all__ = ["DEFAULT_MAX_LAG_VOX", "TwoPointCoverage", "autocorrelation", "two_point_bytes", "two_point_coverage"]


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


#: Largest default lag [voxels]: the FFT works on the volume padded by the lag along each axis,
#: so the default is capped to keep it near the volume's size (800^3 -> 900^3 instead of 1200^3).
DEFAULT_MAX_LAG_VOX = 100


def _default_max_lag(shape) -> int:
    return int(min(min(shape) // 2, DEFAULT_MAX_LAG_VOX))


def _padded_shape(shape, L: int) -> tuple[int, ...]:
    return tuple(scipy.fft.next_fast_len(int(n) + L, real=True) for n in shape)


#: Passes over the volume of :func:`_z_correlation_spectra`, each for a 1/PASSES share of the x
#: frequencies: the slice spectra are held for one share at a time (their memory / PASSES), at the
#: cost of PASSES real FFTs of every slice along x.
PASSES = 4


def two_point_bytes(shape, max_lag_vox: int | None = None) -> int:
    """Estimated peak working memory [bytes] of :func:`two_point_coverage` on a ``shape`` mask (the
    mask itself not counted).

    The z-correlations of the ``L + 1`` lag planes (complex64, ``(L + 1) x N1 x (N2/2 + 1)``) and
    one pass's slice spectra (``n0 x N1 x (N2/2 + 1) / PASSES``) are alive together, with a few
    padded planes of temporaries.
    """
    L = _default_max_lag(shape) if max_lag_vox is None else int(max_lag_vox)
    _, N1, N2 = _padded_shape(shape, L)
    half = N1 * (N2 // 2 + 1) * 8
    return int((L + 1) * half + int(shape[0]) * half / PASSES + 4 * N1 * N2 * 8)


def _lag_indices(N: int, L: int) -> np.ndarray:
    """Indices of lags ``-L..L`` on a circular axis of length ``N``."""
    return np.r_[np.arange(N - L, N), np.arange(0, L + 1)]


def _overlap(n: int, L: int) -> np.ndarray:
    """Number of voxel pairs ``(x, x + h)`` inside an axis of ``n`` voxels, ``h = -L..L`` (float32)."""
    return (n - np.abs(np.arange(-L, L + 1))).astype(np.float32)


def _z_correlation_spectra(mask: jax.Array, L: int) -> jax.Array:
    """``Q[dz] = sum_z conj(F[z]) F[z + dz]``, ``dz = 0..L``, with ``F[z]`` the 2D half spectrum of slice ``z``.

    ``F`` is zero-padded to ``(N1, N2) >= (n1 + L, n2 + L)`` and the z-correlation to
    ``N0 >= n0 + L`` (no wrap-around for lags up to ``L``). The inverse 2D FFT of ``Q[dz]``
    is the plane ``h_z = dz`` of the autocorrelation. Returns ``(L + 1, N1, K)`` complex64 with
    ``K >= N2 // 2 + 1`` (columns past ``N2 // 2 + 1`` are padding, cropped by ``irfft2``).

    Working set: the result and, in each of :data:`PASSES` passes over the slices, the spectra
    ``F[z]`` of one share of the x frequencies ``(n0, N1, K / PASSES)``; the z-transforms run over
    chunks of ``ky`` rows (``lax.scan``).
    """
    N0, N1, N2 = _padded_shape(mask.shape, L)
    K2 = N2 // 2 + 1
    cols = -(-K2 // PASSES)  # x frequencies per pass
    target = max(1, 2**22 // max(N0 * cols, 1))  # ky rows per chunk: ~32 MB of complex64 per FFT
    rows = max(d for d in range(1, min(N1, target) + 1) if N1 % d == 0)

    def share(sl, j):  # the 2D half spectrum of one slice, x frequencies j * cols ... (j + 1) * cols - 1
        f = jnp.fft.rfft(sl.astype(jnp.float32), n=N2, axis=1)
        f = jnp.pad(f, ((0, 0), (0, cols * PASSES - K2)))
        return jnp.fft.fft(lax.dynamic_slice_in_dim(f, j * cols, cols, axis=1), n=N1, axis=0)

    def one_pass(out, j):
        spectra = lax.map(lambda sl: share(sl, j), mask)  # (n0, N1, cols)

        def chunk(out, i):
            col = lax.dynamic_slice_in_dim(spectra, i * rows, rows, axis=1)
            f = jnp.fft.fft(col, n=N0, axis=0)
            q = jnp.fft.ifft(f.real**2 + f.imag**2, axis=0)[: L + 1].astype(jnp.complex64)
            return lax.dynamic_update_slice(out, q, (0, i * rows, j * cols)), None

        out, _ = lax.scan(chunk, out, jnp.arange(N1 // rows))
        return out, None

    out = jnp.zeros((L + 1, N1, cols * PASSES), jnp.complex64)
    out, _ = lax.scan(one_pass, out, jnp.arange(PASSES))
    return out


def _point_count(mask: jax.Array) -> jax.Array:
    """Number of voxels in ``mask`` (int32 counts per slice: no whole-volume convert), as float32."""
    return jnp.sum(lax.map(lambda sl: jnp.sum(sl, dtype=jnp.int32), mask)).astype(jnp.float32)


def _lag_plane(q_dz: jax.Array, N1: int, N2: int, L: int) -> jax.Array:
    """Pair sums ``sum_x m(x) m(x + h)`` of one plane ``h_z = dz``, lags ``(h_y, h_x)`` in ``-L..L`` ``(2L+1, 2L+1)``."""
    plane = jnp.fft.irfft2(q_dz, s=(N1, N2))
    return plane[_lag_indices(N1, L)][:, _lag_indices(N2, L)]


def autocorrelation(mask: jax.Array, max_lag_vox: int) -> jax.Array:
    """C(h) for every lag vector ``|h_i| <= max_lag_vox``: array ``(2L+1, 2L+1, 2L+1)`` float32.

    Index ``L + h_i`` along axis ``i`` holds lag ``h_i`` (``h`` in voxels, any sign).
    """
    L = int(max_lag_vox)
    _, N1, N2 = _padded_shape(mask.shape, L)
    q = _z_correlation_spectra(mask, L)
    half = jax.vmap(lambda qd: _lag_plane(qd, N1, N2, L))(q)  # h_z = 0..L
    full = jnp.concatenate([half[:0:-1, ::-1, ::-1], half])  # C(-h) = C(h)
    c = [_overlap(n, L) for n in mask.shape]
    return full / jnp.asarray(c[0][:, None, None] * c[1][None, :, None] * c[2][None, None, :])


@functools.lru_cache(maxsize=16)
def _radial_geometry(L: int) -> tuple[np.ndarray, np.ndarray]:
    """Lag vectors per radial bin ``(L + 1,)`` and their mean length [voxels], plane by plane (host, float64)."""
    g = np.arange(-L, L + 1, dtype=np.float64)
    plane = g[:, None] ** 2 + g[None, :] ** 2
    counts = np.zeros(L + 2, np.int64)
    r_sum = np.zeros(L + 2, np.float64)
    for dz in g:
        r = np.sqrt(dz * dz + plane)
        k = np.minimum(np.floor(r + 0.5).astype(np.int64), L + 1).ravel()
        counts += np.bincount(k, minlength=L + 2)
        r_sum += np.bincount(k, weights=r.ravel(), minlength=L + 2)
    return counts[: L + 1].astype(np.float32), r_sum[: L + 1] / counts[: L + 1]


@partial(jax.jit, static_argnames=("L",))
def _coverage_sums(mask: jax.Array, L: int):
    """Radial sums of C(h) over the lag vectors of each bin ``(L + 1,)`` and C along the axes ``(3, L + 1)``.

    The lag planes ``h_z = 0..L`` are made and binned one at a time (``lax.scan``); the plane
    ``-h_z`` has the same radial sums (``C(-h) = C(h)``), so planes ``h_z > 0`` count twice.
    The per-plane sums are added up by a pairwise reduction (float32 rounding ~1e-7).
    """
    n0, n1, n2 = mask.shape
    _, N1, N2 = _padded_shape(mask.shape, L)
    q = _z_correlation_spectra(mask, L)
    cz, cy, cx = (_overlap(n, L) for n in mask.shape)
    g = jnp.arange(-L, L + 1, dtype=jnp.float32)
    plane_r2 = g[:, None] ** 2 + g[None, :] ** 2
    plane_overlap = jnp.asarray(cy[:, None] * cx[None, :])

    def bin_plane(sums, dz):
        c = _lag_plane(q[dz], N1, N2, L) / (plane_overlap * jnp.asarray(cz[L:])[dz])
        k = jnp.minimum(jnp.floor(jnp.sqrt(dz.astype(jnp.float32) ** 2 + plane_r2) + 0.5), L + 1).astype(jnp.int32)
        weight = jnp.where(dz > 0, 2.0, 1.0).astype(jnp.float32)
        return None, (weight * jax.ops.segment_sum(c.ravel(), k.ravel(), num_segments=L + 2), c[L, L], c[L:, L], c[L, L:])

    _, (sums, c_z, c_y, c_x) = lax.scan(bin_plane, None, jnp.arange(L + 1))
    vf = _point_count(mask) / float(n0 * n1 * n2)
    return jnp.sum(sums, axis=0)[: L + 1], jnp.stack([c_z, c_y[0], c_x[0]]), vf


def checked_max_lag(shape, max_lag_vox) -> int:
    """The largest lag [voxels] for a mask of ``shape``: ``max_lag_vox`` checked to be an integer in
    ``[0, min(shape) - 1]``, or the default ``min(min(shape) // 2, DEFAULT_MAX_LAG_VOX)`` for None."""
    L = _default_max_lag(shape) if max_lag_vox is None else max_lag_vox
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)):
        raise ValueError(f"max_lag_vox must be an integer number of voxels, got {max_lag_vox!r}")
    L = int(L)
    if not 0 <= L < min(shape):
        raise ValueError(f"max_lag_vox must be in [0, {min(shape) - 1}] for shape {tuple(shape)}, got {L}")
    return L


def two_point_coverage(mask: jax.Array, voxel_nm: float = 1.0, max_lag_vox: int | None = None) -> TwoPointCoverage:
    """Two-point coverage C(h) of a boolean ``(z, y, x)`` mask (paper Eq. 20), h in nm.

    ``max_lag_vox`` (static; default ``min(min(shape) // 2, DEFAULT_MAX_LAG_VOX)``) must be <
    every axis length. Working memory about :func:`two_point_bytes`. Jittable
    (``max_lag_vox`` static) and vmappable.
    """
    if getattr(mask, "ndim", None) != 3:
        raise ValueError(f"expected a 3D (z, y, x) phase mask, got shape {getattr(mask, 'shape', None)}")
    L = checked_max_lag(mask.shape, max_lag_vox)
    sums, axes, vf = _coverage_sums(mask, L)
    n_per, r_mean = _radial_geometry(L)
    h_nm = jnp.asarray(r_mean, jnp.float32) * jnp.asarray(voxel_nm, jnp.float32)
    return TwoPointCoverage(h_nm=h_nm, C=sums / jnp.asarray(n_per), C_axes=axes, volume_fraction=vf)
